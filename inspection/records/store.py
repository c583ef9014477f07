"""The record of every part, written through a spool so that an outage loses none.

:class:`RecordStore` writes one inspection per part (idempotent by station and part id),
its defects, and later its cloud reports and operator reviews, to any SQLAlchemy
database; evidence images go to disk named by content hash. When the database is
unavailable (locked past its timeout, a server down, the file gone), a record goes to a
durable :class:`~inspection.spool.Spool` and :meth:`RecordStore.replay` writes it once
the database is back: nothing is lost and nothing is written twice.

Torch-free: the edge daemon records parts with it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, delete, func, insert, select, tuple_
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, selectinload

from inspection.errors import UserError
from inspection.records.db import (
    DEFAULT_BUSY_TIMEOUT_S,
    create_records_engine,
    head_revision,
    normalize_url,
    open_records,
    safe_url,
    sqlite_path,
    writer,
)
from inspection.records.evidence import EvidenceStore
from inspection.records.models import (
    Defect,
    Inspection,
    Part,
    Question,
    ReportRecord,
    Review,
    Station,
)
from inspection.spool import Spool, retry_delay
from inspection.types import InspectionResult, Verdict

log = logging.getLogger(__name__)

NOT_INSPECTED = "NOT_INSPECTED"
"""The key :meth:`RecordStore.counts` gives parts captured but never decided."""

_CHUNK = 400  # ids per IN (...) query: under SQLite's variable limit with room to spare


class DatabaseUnavailable(RuntimeError):
    """The database cannot take a write now (the record is spooled)."""


def software_version() -> str:
    """The installed ``inspection`` package's version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("inspection")
    except PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class RecordedPart:
    """One recorded part as the console shows it."""

    part_id: str
    station: str
    verdict: str | None  # None: not inspected
    not_inspected: str | None
    severity: str | None
    action: str | None
    reasons: tuple[str, ...]
    scores: Mapping[str, float]
    timings_ms: Mapping[str, float]
    standard_id: str | None
    standard_version: str | None
    model_version: str | None
    calibration_version: str | None
    software_version: str | None
    path: str | None
    captured_at: datetime
    decided_at: datetime | None
    evidence: tuple[str, ...]
    defects: tuple[dict[str, Any], ...] = ()
    product: str | None = None


@dataclass(frozen=True)
class PartHistory:
    """What happened to a part after its verdict: cloud reports, reviews, questions."""

    reports: tuple[dict[str, Any], ...] = ()
    reviews: tuple[dict[str, Any], ...] = ()
    questions: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class PruneCounts:
    """What :meth:`RecordStore.prune` removed (or, in a dry run, would remove)."""

    cutoff: datetime
    parts: int = 0
    inspections: int = 0
    defects: int = 0
    reports: int = 0
    reviews: int = 0
    questions: int = 0
    evidence_files: int = 0
    evidence_bytes: int = 0
    dry_run: bool = False

    def summary(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        return (
            f"{verb} records captured before {self.cutoff.isoformat()}: "
            f"{self.parts} parts, {self.inspections} inspections, {self.defects} defects, "
            f"{self.reports} reports, {self.reviews} reviews, {self.questions} questions, "
            f"{self.evidence_files} evidence "
            f"files ({self.evidence_bytes / 1e6:.1f} MB)"
        )


@dataclass(frozen=True)
class RecordEntry:
    """One part to record with :meth:`RecordStore.record_many`."""

    part_id: str
    station: str
    result: InspectionResult | None = None  # None: not inspected, with ``reason``
    reason: str | None = None
    images: Sequence[np.ndarray | bytes] = ()
    captured_at: datetime | None = None
    decided_at: datetime | None = None
    product: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise UserError(f"naive datetime {value.isoformat()}: give a timezone (UTC)")
    return value.astimezone(UTC).isoformat()


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def default_paths(url: str | Path) -> tuple[Path, Path]:
    """``(evidence_dir, spool_path)`` by convention: next to a SQLite file
    (``evidence/`` and ``records-outbox.db``), else in the working folder."""
    path = sqlite_path(normalize_url(url))
    base = path.parent if path is not None else Path.cwd()
    return base / "evidence", base / "records-outbox.db"


def spool_key(station: str, part_id: str) -> str:
    """The spool key of a part's record: one record per part and station."""
    return f"record/{station}/{part_id}"


class RecordStore:
    """Records of every part: a database, an evidence folder and a spool for outages.

    Parameters
    ----------
    url : str
        SQLAlchemy URL (or a SQLite file path). The schema is created or upgraded to the
        newest migration when the database is reachable; when it is not, the store still
        opens and spools until it is.
    evidence_dir : str | Path | None
        Folder of the evidence images (content-addressed); default: see
        :func:`default_paths`.
    spool_path : str | Path | None
        SQLite file of the spool (keep it on local disk; on another disk than a SQLite
        database if the station has one); default: see :func:`default_paths`.
    busy_timeout_s : float
        How long a write waits for a lock before the record is spooled.
    clock : Callable[[], float]
        Wall clock in seconds (injected by tests); the spool's retry times use it.

    Examples
    --------
    >>> store = RecordStore("sqlite:///records.db", "evidence", "outbox.db")  # doctest: +SKIP
    >>> store.record("P-0001", "station-1", result, images=[frame.image])  # doctest: +SKIP
    True
    """

    def __init__(
        self,
        url: str | Path,
        evidence_dir: str | Path | None = None,
        spool_path: str | Path | None = None,
        *,
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
        clock: Callable[[], float] = time.time,
        max_spooled: int = 1_000_000,
    ) -> None:
        self.url = normalize_url(url)
        default_evidence, default_spool = default_paths(self.url)
        evidence_dir = default_evidence if evidence_dir is None else evidence_dir
        spool_path = default_spool if spool_path is None else spool_path
        self.busy_timeout_s = busy_timeout_s
        self.evidence = EvidenceStore(evidence_dir)
        self.spool = Spool(spool_path, name="records", max_items=max_spooled)
        self.software_version = software_version()
        self._clock = clock
        self._sqlite_file = sqlite_path(self.url)
        self._file_id: tuple[int, int] | None = None
        self._engine: Engine | None = None
        self._state = threading.Lock()
        self._engine_lock = threading.RLock()
        self._replaying = threading.Lock()
        self._failures = 0
        self._down_until = 0.0
        self._connect()

    # ------------------------------------------------------------------ the database

    def _connect(self) -> Engine | None:
        """The engine, opened (schema at head) when the database is reachable."""
        with self._engine_lock:
            return self._connect_locked()

    def _connect_locked(self) -> Engine | None:
        if self._engine is not None:
            return self._engine
        if self._file_id is not None and not self._sqlite_file.exists():
            # The SQLite file vanished after it was opened: do not create a fresh empty
            # one in its place, which would hide that the records were lost. Spool until
            # it is restored or recreated (`inspection records migrate`).
            return None
        try:
            engine = open_records(self.url, self.busy_timeout_s)
        except (DBAPIError, PoolTimeoutError) as error:
            self._failed(error)
            return None
        self._engine = engine
        self._file_id = self._stat_file()
        return engine

    def _stat_file(self) -> tuple[int, int] | None:
        if self._sqlite_file is None:
            return None
        try:
            stat = os.stat(self._sqlite_file)
        except FileNotFoundError:
            return None
        return stat.st_dev, stat.st_ino

    def _writer(self) -> Engine:
        """The engine to write with, or :class:`DatabaseUnavailable`."""
        engine = self._connect()
        if engine is None:
            raise DatabaseUnavailable(f"records database {safe_url(self.url)} cannot be opened")
        if self._sqlite_file is not None:
            # An open SQLite connection keeps writing into a file removed under it (the
            # records would vanish with the inode): check the file is still the one opened.
            now = self._stat_file()
            if now is None:
                self._drop_engine()
                raise DatabaseUnavailable(f"records database {self._sqlite_file} is gone")
            if now != self._file_id:
                self._drop_engine()
                raise DatabaseUnavailable(f"records database {self._sqlite_file} was replaced")
        return writer(engine)

    def _drop_engine(self) -> None:
        with self._engine_lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None

    @property
    def engine(self) -> Engine:
        """The database engine (raises :class:`DatabaseUnavailable` when unreachable)."""
        engine = self._connect()
        if engine is None:
            raise DatabaseUnavailable(f"records database {safe_url(self.url)} cannot be opened")
        return engine

    def _failed(self, error: BaseException) -> None:
        with self._state:
            self._failures += 1
            self._down_until = self._clock() + retry_delay(self._failures, cap_s=30.0)
            failures = self._failures
        log.warning("records database unavailable (%d in a row): %s", failures, error)

    def _succeeded(self) -> None:
        with self._state:
            self._failures = 0
            self._down_until = 0.0

    def _is_down(self) -> bool:
        with self._state:
            return self._clock() < self._down_until

    # ------------------------------------------------------------------ recording

    def record(
        self,
        part_id: str,
        station: str,
        result: InspectionResult,
        images: Sequence[np.ndarray | bytes] = (),
        captured_at: datetime | None = None,
        decided_at: datetime | None = None,
        product: str | None = None,
    ) -> bool:
        """Record the decision on a part, once.

        Evidence images are stored first (on disk, by content hash); the record goes to
        the database, or to the spool when the database cannot take it now.

        Returns
        -------
        bool
            ``True``: recorded (or spooled, to be recorded by :meth:`replay`). ``False``:
            this station already recorded this part (nothing changed). While records are
            spooled, a part recorded before the outage is only found out at replay: the
            call returns ``True`` and the replay skips it.

        Raises
        ------
        UserError
            When ``result`` is for another part id, or a time has no time zone.
        SpoolFullError
            When the database is unavailable and the spool is full (nothing recorded).
        """
        entry = RecordEntry(
            part_id, station, result, None, images, captured_at, decided_at, product
        )
        return self.record_many([entry])[0]

    def record_not_inspected(
        self,
        part_id: str,
        station: str,
        reason: str,
        images: Sequence[np.ndarray | bytes] = (),
        captured_at: datetime | None = None,
        product: str | None = None,
    ) -> bool:
        """Record a part captured but never decided (camera lost, cycle time, a crash).

        Never a PASS: the inspection has no verdict and ``not_inspected`` says why.
        Returns as :meth:`record` does.
        """
        if not reason:
            raise UserError(f"part {part_id!r}: a not-inspected record needs its reason")
        entry = RecordEntry(part_id, station, None, reason, images, captured_at, None, product)
        return self.record_many([entry])[0]

    def record_many(self, entries: Iterable[RecordEntry]) -> list[bool]:
        """Record many parts in one transaction (as :meth:`record`, one answer per entry)."""
        bodies = [self._body(entry) for entry in entries]
        if not bodies:
            return []
        if self._is_down() or self.spool.pending():
            # A backlog is written first, in order: queue behind it, then try to replay.
            answers = [self.spool.put(body["key"], body) for body in bodies]
            if not self._is_down():
                self.replay()
            return answers
        try:
            try:
                answers = self._write(bodies)
            except IntegrityError:
                # Another writer recorded one of these parts between our check and our
                # insert (a server database): check again.
                answers = self._write(bodies)
        except (DBAPIError, PoolTimeoutError, DatabaseUnavailable) as error:
            self._failed(error)
            return [self.spool.put(body["key"], body) for body in bodies]
        self._succeeded()
        return answers

    def _body(self, entry: RecordEntry) -> dict[str, Any]:
        """The JSON a record is spooled as, and written from."""
        if not entry.part_id or not entry.station:
            raise UserError("a record needs a part id and a station")
        if entry.result is not None and entry.result.part_id != entry.part_id:
            raise UserError(
                f"the result is for part {entry.result.part_id!r}, not {entry.part_id!r}"
            )
        if entry.result is None and not entry.reason:
            raise UserError(f"part {entry.part_id!r}: no result and no not-inspected reason")
        now = datetime.fromtimestamp(self._clock(), UTC)
        evidence = [self.evidence.put(image) for image in entry.images]
        decided_at = entry.decided_at or (now if entry.result is not None else None)
        return {
            "key": spool_key(entry.station, entry.part_id),
            "part_id": entry.part_id,
            "station": entry.station,
            "product": entry.product,
            "result": entry.result.to_json() if entry.result is not None else None,
            "not_inspected": entry.reason if entry.result is None else None,
            "captured_at": _iso(entry.captured_at or now),
            "decided_at": _iso(decided_at),
            "recorded_at": _iso(now),
            "software_version": self.software_version,
            "evidence": evidence,
        }

    def _write(self, bodies: list[dict[str, Any]]) -> list[bool]:
        """Write what is new among ``bodies`` in one transaction; which were new."""
        engine = self._writer()
        with Session(engine) as session, session.begin():
            stations = self._stations(session, {b["station"] for b in bodies})
            pairs = {(stations[b["station"]], b["part_id"]) for b in bodies}
            existing = self._existing_parts(session, pairs)
            answers, new = [], []
            for body in bodies:
                pair = (stations[body["station"]], body["part_id"])
                answers.append(pair not in existing)
                if pair not in existing:
                    existing.add(pair)
                    new.append((pair[0], body))
            if new:
                _insert(session, new)
        return answers

    @staticmethod
    def _stations(session: Session, names: set[str]) -> dict[str, int]:
        rows = session.execute(select(Station.name, Station.id).where(Station.name.in_(names)))
        ids = {name: station_id for name, station_id in rows}
        for name in sorted(names - ids.keys()):
            station = Station(name=name)
            session.add(station)
            session.flush()
            ids[name] = station.id
        return ids

    @staticmethod
    def _existing_parts(session: Session, pairs: set[tuple[int, str]]) -> set[tuple[int, str]]:
        found: set[tuple[int, str]] = set()
        ordered = sorted(pairs)
        for start in range(0, len(ordered), _CHUNK):
            chunk = ordered[start : start + _CHUNK]
            rows = session.execute(
                select(Part.station_id, Part.part_id).where(
                    tuple_(Part.station_id, Part.part_id).in_(chunk)
                )
            )
            found.update((station_id, part_id) for station_id, part_id in rows)
        return found

    # ------------------------------------------------------------------ the spool

    def replay(self, limit: int = 10_000, batch: int = 200) -> int:
        """Write spooled records to the database, oldest first; how many were new.

        Stops at the first failure of the database (the items stay, due again after a
        backoff). A record the database already holds is skipped, never written twice.
        Safe to call from several threads (one replays, the others return 0).
        """
        if not self._replaying.acquire(blocking=False):
            return 0
        written = 0
        try:
            remaining = limit
            while remaining > 0:
                items = self.spool.due(self._clock(), min(batch, remaining))
                if not items:
                    break
                try:
                    answers = self._write([item.body for item in items])
                except (DBAPIError, PoolTimeoutError, DatabaseUnavailable) as error:
                    self._failed(error)
                    retry_at = self._clock() + retry_delay(items[0].attempts + 1, cap_s=30.0)
                    for item in items:
                        self.spool.retry(item.key, retry_at, f"{type(error).__name__}: {error}")
                    break
                self._succeeded()
                for item in items:
                    self.spool.done(item.key)
                written += sum(answers)
                remaining -= len(items)
        finally:
            self._replaying.release()
        if written:
            log.info("replayed %d spooled records (%d still spooled)", written, self.pending())
        return written

    def pending(self) -> int:
        """Records spooled, not yet in the database."""
        return self.spool.pending()

    # ------------------------------------------------------------------ reports, reviews

    def _inspection_id(self, session: Session, part_id: str, station: str) -> int:
        inspection_id = session.scalar(
            select(Inspection.id)
            .join(Part, Inspection.part_ref == Part.id)
            .join(Station, Part.station_id == Station.id)
            .where(Station.name == station, Part.part_id == part_id)
        )
        if inspection_id is None:
            raise UserError(f"no record of part {part_id!r} at station {station!r}")
        return inspection_id

    def add_report(
        self,
        part_id: str,
        station: str,
        report: Mapping[str, Any] | Any,
        decoder_version: str | None = None,
        adapter_version: str | None = None,
        agreed: bool | None = None,
    ) -> int:
        """Attach a cloud report (its JSON, or an object with ``to_json()``) to a part.

        Returns the report's id. Raises :class:`UserError` when the part has no record and
        :class:`DatabaseUnavailable` (or the driver's error) when the database is down:
        reports come from the cloud, which retries; they are not spooled here.
        """
        body = dict(report) if isinstance(report, Mapping) else _report_json(report)
        with Session(self._writer()) as session, session.begin():
            row = ReportRecord(
                inspection_id=self._inspection_id(session, part_id, station),
                body=body,
                decoder_version=decoder_version,
                adapter_version=adapter_version,
                agreed=agreed,
            )
            session.add(row)
            session.flush()
            return row.id

    def add_review(
        self,
        part_id: str,
        station: str,
        reviewer: str,
        decision: Verdict | str,
        reason: str | None = None,
        defect_class: str | None = None,
        mask: np.ndarray | bytes | None = None,
    ) -> int:
        """Record an operator's decision on a part; returns the review's id.

        ``defect_class`` names the defect the reviewer saw; ``mask`` (a 2-D array, nonzero
        where the defect is, or PNG bytes) is the region they drew or accepted, kept in the
        evidence folder. Both are what ``inspection datasets export-reviews`` exports.
        """
        try:
            decision = Verdict(str(decision).upper())
        except ValueError:
            raise UserError(
                f"review decision must be PASS, REJECT or REVIEW, not {decision!r}"
            ) from None
        if not reviewer:
            raise UserError("a review needs its reviewer")
        with Session(self._writer()) as session, session.begin():
            row = Review(
                inspection_id=self._inspection_id(session, part_id, station),
                reviewer=reviewer,
                decision=decision.value,
                reason=reason,
                defect_class=defect_class,
                mask=None if mask is None else self.evidence.put(_mask_image(mask)),
            )
            session.add(row)
            session.flush()
            return row.id

    def add_question(
        self,
        part_id: str,
        station: str,
        asker: str,
        question: str,
        *,
        answer: str | None = None,
        error: str | None = None,
        agreed: bool | None = None,
        transcript: str | None = None,
        audio: bytes | None = None,
    ) -> int:
        """Record a question asked about a part and its answer; a spoken question's clip
        (WAV bytes) is kept in the evidence folder. Returns the question's id."""
        if not asker:
            raise UserError("a question needs who asked it")
        with Session(self._writer()) as session, session.begin():
            row = Question(
                inspection_id=self._inspection_id(session, part_id, station),
                asker=asker,
                question=question,
                audio=None if audio is None else self.evidence.put(audio),
                transcript=transcript,
                answer=answer,
                error=error,
                agreed=agreed,
            )
            session.add(row)
            session.flush()
            return row.id

    # ------------------------------------------------------------------ queries

    def _query(self, where: Sequence[Any], limit: int | None) -> list[RecordedPart]:
        stmt = (
            select(Inspection, Part.part_id, Station.name, Part.product)
            .join(Part, Inspection.part_ref == Part.id)
            .join(Station, Inspection.station_id == Station.id)
            .where(*where)
            .order_by(Inspection.captured_at.desc(), Inspection.id.desc())
            .options(selectinload(Inspection.defects))
            .limit(limit)
        )
        with Session(self.engine) as session:
            return [_recorded(i, p, s, product) for i, p, s, product in session.execute(stmt)]

    def _station_filter(self, station: str | None) -> list[Any]:
        if station is None:
            return []
        station_id = select(Station.id).where(Station.name == station).scalar_subquery()
        return [Inspection.station_id == station_id]

    @staticmethod
    def _product_filter(product: str | None) -> list[Any]:
        if product is None:
            return []
        return [Inspection.part_ref.in_(select(Part.id).where(Part.product == product))]

    def latest(self, n: int = 50, station: str | None = None) -> list[RecordedPart]:
        """The ``n`` parts captured last, newest first."""
        return self._query(self._station_filter(station), n)

    def by_verdict(
        self,
        verdict: Verdict | str,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        station: str | None = None,
    ) -> list[RecordedPart]:
        """Parts with ``verdict`` (or ``"NOT_INSPECTED"``) captured in ``[since, until)``."""
        where = self._station_filter(station) + _window(since, until)
        return self._query([*where, _verdict_filter(verdict)], limit)

    def unreviewed(
        self,
        verdict: Verdict | str,
        limit: int = 100,
        station: str | None = None,
        every: int = 1,
    ) -> list[RecordedPart]:
        """The newest parts with ``verdict`` that no one has reviewed yet.

        ``every`` > 1 takes a fixed sample, every ``every``-th record: a sample that stays
        the same between page loads, taken in the query (on the verdict's index).
        """
        reviewed = select(Review.id).where(Review.inspection_id == Inspection.id).exists()
        where = [*self._station_filter(station), Inspection.verdict == _verdict(verdict), ~reviewed]
        if every > 1:
            where.append(Inspection.id % every == 0)
        return self._query(where, limit)

    def iter_parts(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        station: str | None = None,
        verdict: Verdict | str | None = None,
        batch: int = 500,
        product: str | None = None,
    ) -> Iterator[list[RecordedPart]]:
        """Every part captured in ``[since, until)`` (at ``station``, of ``product``, with
        ``verdict`` or ``"NOT_INSPECTED"``), in the order they were recorded, ``batch``
        parts at a time: memory stays bounded whatever the database holds."""
        where = self._station_filter(station) + self._product_filter(product)
        where += _window(since, until)
        if verdict is not None:
            where.append(_verdict_filter(verdict))  # an unknown one refused here, not later
        return self._batches(where, batch)

    def _batches(self, where: list[Any], batch: int) -> Iterator[list[RecordedPart]]:
        last = 0
        while True:
            stmt = (
                select(Inspection, Part.part_id, Station.name, Part.product)
                .join(Part, Inspection.part_ref == Part.id)
                .join(Station, Inspection.station_id == Station.id)
                .where(*where, Inspection.id > last)
                .order_by(Inspection.id)
                .options(selectinload(Inspection.defects))
                .limit(batch)
            )
            with Session(self.engine) as session:
                rows = list(session.execute(stmt))
                parts = [_recorded(i, p, s, product) for i, p, s, product in rows]
            if not parts:
                return
            last = rows[-1][0].id
            yield parts

    def latest_reviews(self, parts: Sequence[RecordedPart]) -> dict[tuple[str, str], dict]:
        """The latest review of each of ``parts`` that has one, by ``(station, part_id)``."""
        keys = sorted({(p.station, p.part_id) for p in parts})
        found: dict[tuple[str, str], dict] = {}
        with Session(self.engine) as session:
            for start in range(0, len(keys), _CHUNK):
                stmt = (
                    select(Station.name, Part.part_id, Review)
                    .join(Inspection, Review.inspection_id == Inspection.id)
                    .join(Part, Inspection.part_ref == Part.id)
                    .join(Station, Inspection.station_id == Station.id)
                    .where(tuple_(Station.name, Part.part_id).in_(keys[start : start + _CHUNK]))
                    .order_by(Review.id)  # ids grow with insertion: the last is the latest
                )
                for station, part_id, review in session.execute(stmt):
                    found[(station, part_id)] = _fields(review, _REVIEW_FIELDS)
        return found

    def history(self, part_id: str, station: str) -> PartHistory:
        """The reports, reviews and questions of one part, oldest first."""
        with Session(self.engine) as session:
            inspection_id = self._inspection_id(session, part_id, station)

            def rows(model: Any) -> list[Any]:
                stmt = select(model).where(model.inspection_id == inspection_id)
                return list(session.scalars(stmt.order_by(model.created_at, model.id)))

            return PartHistory(
                reports=tuple(_fields(r, _REPORT_FIELDS) for r in rows(ReportRecord)),
                reviews=tuple(_fields(r, _REVIEW_FIELDS) for r in rows(Review)),
                questions=tuple(_fields(q, _QUESTION_FIELDS) for q in rows(Question)),
            )

    def get(self, part_id: str, station: str) -> RecordedPart | None:
        """The record of one part, or ``None``."""
        where = [Part.part_id == part_id, Station.name == station]
        found = self._query(where, 1)
        return found[0] if found else None

    def counts(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        station: str | None = None,
        product: str | None = None,
    ) -> dict[str, int]:
        """Parts by verdict captured in ``[since, until)`` (at ``station``, of
        ``product``): PASS, REJECT, REVIEW and NOT_INSPECTED, each present (0 when none)."""
        where = self._station_filter(station) + self._product_filter(product)
        stmt = (
            select(Inspection.verdict, func.count())
            .where(*where, *_window(since, until))
            .group_by(Inspection.verdict)
        )
        with Session(self.engine) as session:
            rows = [(verdict, count) for verdict, count in session.execute(stmt)]
        counts = {v.value: 0 for v in Verdict} | {NOT_INSPECTED: 0}
        for verdict, count in rows:
            counts[verdict or NOT_INSPECTED] = int(count)
        return counts

    # ------------------------------------------------------------------ retention

    def prune(self, older_than: timedelta, dry_run: bool = False) -> PruneCounts:
        """Delete the records of parts captured more than ``older_than`` ago, and the
        evidence files older than that which no remaining record (nor a spooled one)
        refers to. Logged, and counted in the answer; ``dry_run`` only counts.
        """
        if older_than <= timedelta(0):
            raise UserError(f"retention must be a positive period, not {older_than}")
        cutoff = datetime.fromtimestamp(self._clock(), UTC) - older_than
        old = select(Inspection.id).where(Inspection.captured_at < cutoff)
        engine = self._writer() if not dry_run else self.engine
        with Session(engine) as session, session.begin():

            def count(model: Any, column: Any) -> int:
                stmt = select(func.count()).select_from(model).where(column.in_(old))
                return int(session.scalar(stmt) or 0)

            counts = {
                "inspections": count(Inspection, Inspection.id),
                "defects": count(Defect, Defect.inspection_id),
                "reports": count(ReportRecord, ReportRecord.inspection_id),
                "reviews": count(Review, Review.inspection_id),
                "questions": count(Question, Question.inspection_id),
            }
            old_parts = select(Inspection.part_ref).where(Inspection.captured_at < cutoff)
            counts["parts"] = int(
                session.scalar(select(func.count()).where(Part.id.in_(old_parts))) or 0
            )
            if not dry_run:
                # Children first: a database without ON DELETE CASCADE still prunes.
                for model in (Defect, ReportRecord, Review, Question):
                    session.execute(delete(model).where(model.inspection_id.in_(old)))
                part_ids = session.scalars(old_parts).all()
                session.execute(delete(Inspection).where(Inspection.captured_at < cutoff))
                for start in range(0, len(part_ids), _CHUNK):
                    chunk = part_ids[start : start + _CHUNK]
                    session.execute(delete(Part).where(Part.id.in_(chunk)))
            referenced = self._referenced(session, cutoff)
        files = [
            f
            for f in self.evidence.files()
            if f.mtime < cutoff.timestamp() and f.sha256 not in referenced
        ]
        freed = 0
        for f in files:
            freed += f.size if dry_run else self.evidence.remove(f.sha256)
        result = PruneCounts(
            cutoff=cutoff,
            evidence_files=len(files),
            evidence_bytes=freed,
            dry_run=dry_run,
            **counts,
        )
        if not dry_run:
            # Replayed keys are remembered to refuse a second record; past the retention
            # period the record itself is gone, so the key may go too.
            self.spool.forget_done(cutoff.timestamp())
        log.info("prune %s", result.summary())
        return result

    def _referenced(self, session: Session, cutoff: datetime) -> set[str]:
        """Evidence hashes still referred to (by records kept, and by the spool)."""
        # Kept records only: in a dry run the old ones are still there.
        stmt = select(Inspection.evidence).where(Inspection.captured_at >= cutoff)
        referenced: set[str] = set()
        for hashes in session.scalars(stmt.execution_options(yield_per=2000)):
            referenced.update(hashes or ())
        # Reviewers' masks and spoken questions of the records kept.
        for column, owner in ((Review.mask, Review), (Question.audio, Question)):
            kept = (
                select(column)
                .join(Inspection, owner.inspection_id == Inspection.id)
                .where(Inspection.captured_at >= cutoff, column.is_not(None))
            )
            referenced.update(session.scalars(kept))
        for item in self.spool.due(float("inf"), limit=10**9):
            referenced.update(item.body.get("evidence", ()))
        return referenced

    # ------------------------------------------------------------------ lifetime

    def schema_revision(self) -> str:
        return head_revision()

    def close(self) -> None:
        """Close the database and the spool (spooled records stay for the next run)."""
        self._drop_engine()
        self.spool.close()

    def __enter__(self) -> RecordStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------- rows


def _verdict_filter(verdict: Verdict | str) -> Any:
    """Inspections with ``verdict``, or never decided for ``"NOT_INSPECTED"``."""
    if str(verdict).upper() == NOT_INSPECTED:
        return Inspection.verdict.is_(None)
    return Inspection.verdict == _verdict(verdict)


def _verdict(value: Verdict | str) -> str:
    try:
        return Verdict(str(value).upper()).value
    except ValueError:
        raise UserError(
            f"verdict must be PASS, REJECT, REVIEW or {NOT_INSPECTED}, not {value!r}"
        ) from None


# What a part's history shows of each row (see :meth:`RecordStore.history`).
_REPORT_FIELDS = ("body", "decoder_version", "adapter_version", "agreed", "created_at")
_REVIEW_FIELDS = ("reviewer", "decision", "reason", "defect_class", "mask", "created_at")
_QUESTION_FIELDS = (
    "asker", "question", "transcript", "audio", "answer", "error", "agreed", "created_at"
)  # fmt: skip


def _fields(row: Any, names: Sequence[str]) -> dict[str, Any]:
    return {name: getattr(row, name) for name in names}


def _mask_image(mask: np.ndarray | bytes) -> np.ndarray | bytes:
    """A reviewer's mask as stored: PNG bytes as given, an array as 0/255 ``uint8``."""
    if isinstance(mask, bytes):
        return mask
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.size == 0:
        raise UserError(f"a review mask must be a 2-D image, not shape {mask.shape}")
    return np.where(mask > 0, 255, 0).astype(np.uint8)


def _window(since: datetime | None, until: datetime | None) -> list[Any]:
    where = []
    if since is not None:
        where.append(Inspection.captured_at >= since)
    if until is not None:
        where.append(Inspection.captured_at < until)
    return where


def _report_json(report: Any) -> dict[str, Any]:
    to_json = getattr(report, "to_json", None)
    if to_json is not None:
        return dict(to_json())
    from dataclasses import asdict, is_dataclass

    if is_dataclass(report) and not isinstance(report, type):
        import json

        return json.loads(json.dumps(asdict(report), default=str))
    raise UserError(f"a report must be a JSON mapping or a dataclass, not {type(report).__name__}")


def _insert(session: Session, new: list[tuple[int, dict[str, Any]]]) -> None:
    """Insert the parts, inspections and defects of new records.

    Core executemany without RETURNING, then the new ids read back by their unique keys:
    ORM objects cost ~10x more for 10,000 records, and RETURNING in a stable order makes
    SQLite run one statement per row.
    """
    session.execute(
        insert(Part),
        [
            {"station_id": sid, "part_id": body["part_id"], "product": body.get("product")}
            for sid, body in new
        ],
    )
    part_ids = _ids(
        session,
        select(Part.station_id, Part.part_id, Part.id),
        (Part.station_id, Part.part_id),
        [(sid, body["part_id"]) for sid, body in new],
    )
    refs = [part_ids[(sid, body["part_id"])] for sid, body in new]
    session.execute(
        insert(Inspection),
        [_inspection_row(body, sid, ref) for (sid, body), ref in zip(new, refs, strict=True)],
    )
    inspection_ids = _ids(
        session, select(Inspection.part_ref, Inspection.id), (Inspection.part_ref,), refs
    )
    defects = [
        row
        for (_, body), ref in zip(new, refs, strict=True)
        for row in _defect_rows(body, inspection_ids[ref])
    ]
    if defects:
        session.execute(insert(Defect), defects)


def _ids(session: Session, stmt: Any, key: tuple[Any, ...], wanted: list[Any]) -> dict[Any, int]:
    """``{key: id}`` of rows just inserted, read back in chunks by their unique key."""
    column = tuple_(*key) if len(key) > 1 else key[0]
    found: dict[Any, int] = {}
    for start in range(0, len(wanted), _CHUNK):
        for *k, row_id in session.execute(stmt.where(column.in_(wanted[start : start + _CHUNK]))):
            found[tuple(k) if len(k) > 1 else k[0]] = row_id
    return found


def _inspection_row(body: dict[str, Any], station_id: int, part_ref: int) -> dict[str, Any]:
    """The inspection row of a record, from its JSON."""
    result = body.get("result") or {}
    return {
        "part_ref": part_ref,
        "station_id": station_id,
        "verdict": result.get("verdict"),
        "severity": result.get("severity"),
        "action": result.get("action"),
        "not_inspected": body.get("not_inspected"),
        "reasons": list(result.get("reasons", ())),
        "scores": dict(result.get("scores", {})),
        "timings_ms": dict(result.get("timings_ms", {})),
        "standard_id": result.get("standard_id"),
        "standard_version": result.get("standard_version"),
        "model_version": result.get("model_version"),
        "calibration_version": result.get("calibration_version"),
        "software_version": body.get("software_version"),
        "path": result.get("path"),
        "captured_at": _time(body["captured_at"]),
        "decided_at": _time(body.get("decided_at")),
        "recorded_at": _time(body.get("recorded_at")) or datetime.now(UTC),
        "evidence": list(body.get("evidence", ())),
    }


def _defect_rows(body: dict[str, Any], inspection_id: int) -> list[dict[str, Any]]:
    rows = []
    for decision in (body.get("result") or {}).get("decisions", ()):
        defect = decision.get("defect", {})
        rows.append(
            {
                "inspection_id": inspection_id,
                "defect_class": defect.get("defect_class", "unknown"),
                "attributes": dict(defect.get("attributes", {})),
                "zone": decision.get("zone", defect.get("zone")),
                "clause_id": decision.get("clause_id"),
                "severity": decision.get("severity"),
                "action": decision.get("action", "review"),
                "reason": decision.get("reason"),
                "score": defect.get("score"),
                "frame_index": int(defect.get("frame_index", 0)),
                "bbox": defect.get("bbox"),
                "footprint_bbox": defect.get("footprint_bbox"),
            }
        )
    return rows


def _recorded(
    inspection: Inspection, part_id: str, station: str, product: str | None
) -> RecordedPart:
    defects = tuple(
        {
            "defect_class": d.defect_class,
            "attributes": dict(d.attributes or {}),
            "zone": d.zone,
            "clause_id": d.clause_id,
            "severity": d.severity,
            "action": d.action,
            "reason": d.reason,
            "score": d.score,
            "frame_index": d.frame_index,
            "bbox": d.bbox,
            "footprint_bbox": d.footprint_bbox,
        }
        for d in inspection.defects
    )
    return RecordedPart(
        part_id=part_id,
        station=station,
        verdict=inspection.verdict,
        not_inspected=inspection.not_inspected,
        severity=inspection.severity,
        action=inspection.action,
        reasons=tuple(inspection.reasons or ()),
        scores=dict(inspection.scores or {}),
        timings_ms=dict(inspection.timings_ms or {}),
        standard_id=inspection.standard_id,
        standard_version=inspection.standard_version,
        model_version=inspection.model_version,
        calibration_version=inspection.calibration_version,
        software_version=inspection.software_version,
        path=inspection.path,
        captured_at=inspection.captured_at,
        decided_at=inspection.decided_at,
        evidence=tuple(inspection.evidence or ()),
        defects=defects,
        product=product,
    )


__all__ = [
    "NOT_INSPECTED",
    "DatabaseUnavailable",
    "PartHistory",
    "PruneCounts",
    "RecordEntry",
    "RecordStore",
    "RecordedPart",
    "create_records_engine",
    "default_paths",
    "spool_key",
]
