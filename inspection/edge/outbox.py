"""Store and forward: the edge's durable outbox and the forwarder that empties it.

The edge decides at line speed whether or not the cloud answers. Each part's
:class:`~inspection.edge.payload.EdgePayload` goes into an :class:`Outbox` (one SQLite
file in WAL mode, ``synchronous=FULL``: a ``put`` that returned survives ``kill -9`` and
a power cut) and a :class:`Forwarder` sends what is due to the cloud report service
(``POST {url}/v1/reports``), with exponential backoff and jitter while the service is
unreachable. Delivery is at least once; the service keeps the first report for a part
id and answers a re-sent payload with that same report, so every report exists exactly
once.

What each answer does to a payload:

==================================  ===========================================
2xx (a duplicate part id included)  ``delivered``, the service's answer stored
413, 422                            ``rejected``: never retried, kept with the reason
401, 403                            stays ``pending``; logged as an error (the key,
                                    not the payload, is wrong); the forwarder backs off
no connection                       stays ``pending``; the forwarder backs off
429, 503 (loading, busy)            stays ``pending``; the forwarder backs off, at
                                    least ``Retry-After`` (at most ``max_backoff``)
other 5xx, timeout, other 4xx       stays ``pending``; this payload and the forwarder
                                    back off (a payload that always fails cannot hold
                                    up the ones behind it)
==================================  ===========================================

Torch-free: the standard library and ``httpx``.

>>> outbox = Outbox("/var/lib/inspection/outbox.sqlite")  # doctest: +SKIP
>>> outbox.put(payload)  # doctest: +SKIP
True
>>> forwarder = Forwarder(outbox, "https://reports.example", token)  # doctest: +SKIP
>>> forwarder.start()  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from inspection.edge.payload import EdgePayload
from inspection.errors import UserError

__all__ = [
    "DEFAULT_MAX_PENDING",
    "DELIVERED",
    "PENDING",
    "REJECTED",
    "Forwarder",
    "Outbox",
    "OutboxEntry",
    "OutboxFull",
    "OutboxStats",
    "backoff_delay",
]

logger = logging.getLogger(__name__)

PENDING, DELIVERED, REJECTED = "pending", "delivered", "rejected"
STATES = (PENDING, DELIVERED, REJECTED)
# Days of a line's output while the cloud is away, far short of an edge box's disk: a
# fused payload of the default model takes ~7 KB on disk (100,000: ~0.7 GB); a "tokens"
# payload ~1.3 MB, so there the byte bound holds first (~1,600 parts).
DEFAULT_MAX_PENDING = 100_000
DEFAULT_MAX_BYTES = 2 * 1024**3
# Answers that are the payload's fault: sending it again cannot succeed.
REJECTED_STATUS = frozenset({413, 422})
# Answers that are the credentials' fault: the payload is fine, the key is not.
AUTH_STATUS = frozenset({401, 403})
# Answers that say the service is loading or busy: come back later (``Retry-After``).
BUSY_STATUS = frozenset({429, 503})
_SCHEMA_VERSION = 1
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    part_id TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT '{PENDING}'
        CHECK (state IN ('{PENDING}', '{DELIVERED}', '{REJECTED}')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    answer TEXT,
    created_at TEXT NOT NULL,
    finished_at TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt, id);
PRAGMA user_version = {_SCHEMA_VERSION};
"""


class OutboxFull(RuntimeError):
    """The outbox holds ``max_pending`` undelivered payloads: the payload was not stored.

    The edge keeps deciding (its verdict never waits on the outbox); the caller logs the
    error and counts the payloads it could not store, so that a cloud that stays away
    for days cannot fill the disk silently.
    """


@dataclass(frozen=True)
class OutboxEntry:
    """One part in the outbox.

    Attributes
    ----------
    state : str
        ``"pending"``, ``"delivered"`` or ``"rejected"``.
    attempts : int
        How many times it was sent.
    last_error : str or None
        Why the last attempt failed (or why it was rejected).
    answer : dict or None
        The cloud's answer once delivered.
    """

    part_id: str
    state: str
    attempts: int
    next_attempt: float
    last_error: str | None
    answer: dict[str, Any] | None
    bytes: int
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class OutboxStats:
    """How many parts are in each state, and since when the oldest one waits."""

    pending: int
    delivered: int
    rejected: int
    max_pending: int
    max_bytes: int
    oldest_pending: datetime | None
    pending_bytes: int


@dataclass(frozen=True)
class _Due:
    part_id: str
    payload: str
    attempts: int


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


class Outbox:
    """A durable queue of edge payloads, one row per part id, in a SQLite file.

    Parameters
    ----------
    path : str or Path
        The SQLite file (created with its folder if missing). One process writes it; other
        processes may read it (``inspection edge status``) while it runs.
    max_pending : int
        The most undelivered payloads it holds; past it :meth:`put` raises
        :class:`OutboxFull` rather than filling the disk.
    max_bytes : int
        The most bytes of undelivered payload JSON it holds (the same refusal).

    Notes
    -----
    Thread-safe: one connection behind a lock. The edge's request threads ``put`` while
    the forwarder sends; the forwarder holds no lock while a request is in flight.
    Delivered payloads drop their tensors (the cloud has them) and keep the answer;
    :meth:`prune` deletes old delivered rows.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        if max_pending < 1 or max_bytes < 1:
            raise UserError(
                f"max_pending and max_bytes must be >= 1, not {max_pending}, {max_bytes}"
            )
        self.path = Path(path)
        self.max_pending = max_pending
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        # Set by every stored payload: a forwarder waiting for work wakes at once.
        self.changed = threading.Event()
        self._db = self._connect(self.path)
        # Kept in memory (one process writes): put checks its bounds without a COUNT.
        self._pending, self._pending_bytes = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM outbox WHERE state = ?", (PENDING,)
        ).fetchone()

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # isolation_level=None: autocommit, each statement its own transaction, committed
            # (and with synchronous=FULL, synced) before it returns.
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA busy_timeout = 10000")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, _SCHEMA_VERSION):
                raise UserError(f"{path}: outbox schema {version}, this version reads 1")
            db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise UserError(f"{path}: not a usable outbox ({exc})") from None
        if mode.lower() != "wal":
            db.close()
            raise UserError(
                f"{path}: SQLite refused WAL mode (journal mode {mode!r}); "
                "put the outbox on a local filesystem"
            )
        # FULL: the WAL is synced at every commit, so a put that returned is on disk.
        db.execute("PRAGMA synchronous = FULL")
        return db

    # ------------------------------------------------------------------ writing

    def put(self, payload: EdgePayload) -> bool:
        """Store ``payload`` durably; it is sent when due.

        Returns
        -------
        bool
            ``True`` when stored; ``False`` when its part id is already in the outbox
            (pending, delivered or rejected): the first payload of a part id wins.

        Raises
        ------
        OutboxFull
            ``max_pending`` payloads (or ``max_bytes``) wait already; this one was not
            stored. The caller logs it and keeps deciding.
        """
        if not isinstance(payload, EdgePayload):
            raise TypeError(f"put takes an EdgePayload, not {type(payload).__name__}")
        text = payload.model_dump_json(by_alias=True)
        with self._lock:
            full = self._pending >= self.max_pending
            if full or self._pending_bytes + len(text) > self.max_bytes:
                known = self._db.execute(
                    "SELECT 1 FROM outbox WHERE part_id = ?", (payload.part_id,)
                ).fetchone()
                if known:
                    return False
                raise OutboxFull(
                    f"{self.path}: {self._pending} payloads ({self._pending_bytes:,} bytes) "
                    f"wait for the cloud (max_pending={self.max_pending}, "
                    f"max_bytes={self.max_bytes:,}); part {payload.part_id!r} was not "
                    "stored. Is the report service reachable?"
                )
            cursor = self._db.execute(
                "INSERT INTO outbox (part_id, payload, bytes, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (part_id) DO NOTHING",
                (payload.part_id, text, len(text), _now_iso()),
            )
            stored = cursor.rowcount == 1
            if stored:
                self._pending += 1
                self._pending_bytes += len(text)
        if stored:
            self.changed.set()
        return stored

    def _due(self, now: float, limit: int) -> list[_Due]:
        with self._lock:
            rows = self._db.execute(
                "SELECT part_id, payload, attempts FROM outbox "
                "WHERE state = ? AND next_attempt <= ? ORDER BY next_attempt, id LIMIT ?",
                (PENDING, now, limit),
            ).fetchall()
        return [_Due(*row) for row in rows]

    def _finish(self, part_id: str, state: str, answer: str | None, error: str | None) -> None:
        with self._lock:
            cursor = self._db.execute(
                "UPDATE outbox SET state = ?, answer = ?, last_error = ?, attempts = attempts + 1,"
                " finished_at = ?, payload = CASE WHEN ? THEN '' ELSE payload END "
                "WHERE part_id = ? AND state = ? RETURNING bytes",
                (state, answer, error, _now_iso(), state == DELIVERED, part_id, PENDING),
            )
            for (size,) in cursor.fetchall():
                self._pending -= 1
                self._pending_bytes -= size

    def _retry(self, part_id: str, error: str, next_attempt: float | None) -> None:
        """Record a failed attempt; ``next_attempt`` None keeps the payload due."""
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, "
                "next_attempt = COALESCE(?, next_attempt) WHERE part_id = ? AND state = ?",
                (error, next_attempt, part_id, PENDING),
            )

    def _clamp_schedule(self, latest: float) -> None:
        """No payload waits past ``latest``: a schedule written under another clock (a
        reboot restarts ``time.monotonic``) must not hold payloads back."""
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET next_attempt = ? WHERE state = ? AND next_attempt > ?",
                (latest, PENDING, latest),
            )

    def _next_due(self) -> float | None:
        with self._lock:
            row = self._db.execute(
                "SELECT MIN(next_attempt) FROM outbox WHERE state = ?", (PENDING,)
            ).fetchone()
        return row[0]

    def prune(self, before: datetime) -> int:
        """Delete delivered parts finished before ``before``; returns how many.

        A pruned part id may be put again; the service then answers it as a duplicate.
        Pending and rejected parts are never pruned.
        """
        with self._lock:
            cursor = self._db.execute(
                "DELETE FROM outbox WHERE state = ? AND finished_at < ?",
                (DELIVERED, before.astimezone(UTC).isoformat()),
            )
        return cursor.rowcount

    # ------------------------------------------------------------------ reading

    def pending(self) -> int:
        """How many payloads wait to be delivered."""
        with self._lock:
            return self._pending

    def db_mode(self) -> tuple[str, int]:
        """SQLite's journal mode and synchronous level (``("wal", 2)``: WAL, FULL)."""
        with self._lock:
            mode = self._db.execute("PRAGMA journal_mode").fetchone()[0]
            sync = self._db.execute("PRAGMA synchronous").fetchone()[0]
        return mode, sync

    def report(self, part_id: str) -> dict[str, Any] | None:
        """The cloud's answer for ``part_id`` once delivered (``None`` before, or for a
        part id never put)."""
        entry = self.get(part_id)
        return entry.answer if entry is not None and entry.state == DELIVERED else None

    def get(self, part_id: str) -> OutboxEntry | None:
        """Everything the outbox knows about ``part_id``; ``None`` for an unknown one."""
        rows = self._select("WHERE part_id = ?", (part_id,))
        return rows[0] if rows else None

    def entries(self, state: str | None = None, limit: int = 1000) -> list[OutboxEntry]:
        """Parts in the order they were put, those in ``state`` only when given."""
        if state is not None and state not in STATES:
            raise UserError(f"state must be one of {STATES}, not {state!r}")
        if state is None:
            return self._select("ORDER BY id LIMIT ?", (limit,))
        return self._select("WHERE state = ? ORDER BY id LIMIT ?", (state, limit))

    def _select(self, where: str, args: tuple[Any, ...]) -> list[OutboxEntry]:
        with self._lock:
            rows = self._db.execute(
                "SELECT part_id, state, attempts, next_attempt, last_error, answer, bytes,"
                f" created_at, finished_at FROM outbox {where}",
                args,
            ).fetchall()
        return [
            OutboxEntry(
                part_id=r[0],
                state=r[1],
                attempts=r[2],
                next_attempt=r[3],
                last_error=r[4],
                answer=json.loads(r[5]) if r[5] else None,
                bytes=r[6],
                created_at=datetime.fromisoformat(r[7]),
                finished_at=datetime.fromisoformat(r[8]) if r[8] else None,
            )
            for r in rows
        ]

    def stats(self) -> OutboxStats:
        """Counts per state, the oldest pending part's time and the pending bytes."""
        with self._lock:
            counts = dict(
                self._db.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall()
            )
            oldest, size = self._db.execute(
                "SELECT MIN(created_at), COALESCE(SUM(bytes), 0) FROM outbox WHERE state = ?",
                (PENDING,),
            ).fetchone()
        return OutboxStats(
            pending=counts.get(PENDING, 0),
            delivered=counts.get(DELIVERED, 0),
            rejected=counts.get(REJECTED, 0),
            max_pending=self.max_pending,
            max_bytes=self.max_bytes,
            oldest_pending=datetime.fromisoformat(oldest) if oldest else None,
            pending_bytes=size,
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------- forwarding


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (the delta form; a date or garbage is ignored)."""
    try:
        return max(float(response.headers.get("Retry-After", "")), 0.0)
    except ValueError:
        return None


def backoff_delay(failures: int, base: float, cap: float, rng: random.Random) -> float:
    """Seconds to wait after ``failures`` failures in a row: ``base * 2**(failures - 1)``
    capped at ``cap``, of which the upper half is random ("equal jitter": edge boxes that
    lost the cloud together do not all come back in the same second)."""
    delay = min(cap, base * 2.0 ** max(failures - 1, 0))
    return delay / 2 + rng.uniform(0.0, delay / 2)


@dataclass(frozen=True)
class _Outcome:
    state: str  # DELIVERED, REJECTED or PENDING
    error: str | None = None
    answer: str | None = None
    payload_fault: bool = False  # back this payload off too (it may be why it failed)
    auth: bool = False
    retry_after: float | None = None  # the service said when to come back


class Forwarder:
    """Sends the outbox's due payloads to the cloud report service.

    Parameters
    ----------
    outbox : Outbox
        Where the payloads wait. One forwarder per outbox.
    url : str
        The service's base URL (``http://host:port``); payloads go to ``{url}/v1/reports``.
    token : str
        The API key, sent as ``Authorization: Bearer TOKEN``.
    clock : callable
        Seconds, monotonic; the schedule in the outbox is kept on it (tests inject one).
    sleep : callable or None
        How :meth:`start`'s thread waits; ``None`` waits on an event that a new payload
        and :meth:`stop` set, so that neither waits out a backoff.
    timeout : float
        Seconds for each request.
    batch : int
        The most payloads one :meth:`send_due` pass sends.
    concurrency : int
        Requests in flight at once: the service batches concurrent parts on its
        decoder, so a backlog drains several times faster than one at a time.
    base_backoff, max_backoff : float
        The first retry waits about ``base_backoff`` seconds, doubling per failure in a
        row up to ``max_backoff``.
    rng : random.Random or None
        The jitter's source (tests seed one).
    transport : httpx.BaseTransport or None
        For tests and proxies; the default is httpx's own.
    """

    def __init__(
        self,
        outbox: Outbox,
        url: str,
        token: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
        timeout: float = 10.0,
        batch: int = 32,
        concurrency: int = 4,
        base_backoff: float = 0.5,
        max_backoff: float = 60.0,
        rng: random.Random | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if batch < 1 or concurrency < 1:
            raise UserError(f"batch and concurrency must be >= 1, not {batch}, {concurrency}")
        if not 0 < base_backoff <= max_backoff:
            raise UserError(
                f"need 0 < base_backoff <= max_backoff, got {base_backoff}, {max_backoff}"
            )
        if not url.startswith(("http://", "https://")):
            raise UserError(f"the report service URL must start with http:// or https://: {url!r}")
        self.outbox = outbox
        self.endpoint = url.rstrip("/") + "/v1/reports"
        self.clock = clock
        self.sleep = sleep
        self.batch = batch
        self.concurrency = concurrency
        self._pool: ThreadPoolExecutor | None = None
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self.rng = rng or random.Random()
        self.failures = 0  # failed attempts in a row, all payloads together
        self.resume_at = 0.0  # no attempt before this (clock seconds)
        self.last_error: str | None = None
        self._client = httpx.Client(
            timeout=timeout,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            transport=transport,
        )
        self._stop = threading.Event()
        self._pass = threading.Lock()
        self._thread: threading.Thread | None = None
        outbox._clamp_schedule(self.clock() + max_backoff)

    # ------------------------------------------------------------------ one pass

    def send_due(self) -> int:
        """Send what is due now, oldest first, ``concurrency`` at a time, until ``batch``
        are sent or an attempt fails (the forwarder then backs off).

        Returns
        -------
        int
            How many payloads were delivered in this pass.
        """
        with self._pass:  # one pass at a time: two would send the same payloads
            return self._send_due()

    def _send_due(self) -> int:
        now = self.clock()
        if now < self.resume_at:
            return 0
        due = self.outbox._due(now, self.batch)
        delivered = 0
        for start in range(0, len(due), self.concurrency):
            group = due[start : start + self.concurrency]
            outcomes = self._send_all(group)
            failed = [(d, o) for d, o in zip(group, outcomes, strict=True) if o.state == PENDING]
            for d, o in zip(group, outcomes, strict=True):
                if o.state != PENDING:
                    self.outbox._finish(d.part_id, o.state, o.answer, o.error)
                    delivered += o.state == DELIVERED
            if failed:
                self._failed(failed)
                break
            self.failures, self.last_error = 0, None
        return delivered

    def _send_all(self, group: list[_Due]) -> list[_Outcome]:
        if len(group) == 1:
            return [self._send(group[0])]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="outbox-send")
        return list(self._pool.map(self._send, group))

    def _send(self, due: _Due) -> _Outcome:
        try:
            response = self._client.post(self.endpoint, content=due.payload.encode("utf-8"))
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # Nothing reached the service: not this payload's doing.
            return _Outcome(PENDING, f"{type(exc).__name__}: {exc} ({self.endpoint})")
        except httpx.TransportError as exc:
            # It may have arrived (the service then keeps it and answers the re-send as a
            # duplicate); it may also be what breaks the service.
            return _Outcome(PENDING, f"{type(exc).__name__}: {exc}", payload_fault=True)
        status, body = response.status_code, response.text[:2000]
        if 200 <= status < 300:
            return self._answer(due, status, body, response)
        error = f"HTTP {status}: {body}"
        if status in REJECTED_STATUS:
            logger.error("the report service rejected part %s: %s", due.part_id, error)
            return _Outcome(REJECTED, error)
        if status in AUTH_STATUS:
            return _Outcome(PENDING, error, auth=True)
        if status in BUSY_STATUS:  # loading or busy: the service's state, not the payload's
            return _Outcome(PENDING, error, retry_after=_retry_after(response))
        return _Outcome(PENDING, error, payload_fault=True)

    def _answer(self, due: _Due, status: int, body: str, response: httpx.Response) -> _Outcome:
        # A 2xx that is not the service's answer (a captive portal, a proxy's page) must
        # not mark a payload delivered.
        try:
            answer = response.json()
        except ValueError:
            return _Outcome(PENDING, f"HTTP {status} without JSON: {body}", payload_fault=True)
        if not isinstance(answer, dict) or answer.get("part_id") != due.part_id:
            error = f"HTTP {status}: not an answer for part {due.part_id!r}: {body}"
            return _Outcome(PENDING, error, payload_fault=True)
        return _Outcome(DELIVERED, answer=json.dumps(answer))

    def _failed(self, failed: list[tuple[_Due, _Outcome]]) -> None:
        """Back the forwarder off once for the pass, and each payload that may be the
        cause on its own schedule."""
        now = self.clock()
        self.failures += 1
        outcome = failed[0][1]
        self.last_error = outcome.error
        wait = backoff_delay(self.failures, self.base_backoff, self.max_backoff, self.rng)
        retry_after = [o.retry_after for _, o in failed if o.retry_after is not None]
        if retry_after:
            wait = min(max(wait, *retry_after), self.max_backoff)
        self.resume_at = now + wait
        for due, o in failed:
            own = None
            if o.payload_fault:
                attempts = due.attempts + 1
                own = now + backoff_delay(attempts, self.base_backoff, self.max_backoff, self.rng)
            self.outbox._retry(due.part_id, o.error or "", own)
        if any(o.auth for _, o in failed):
            logger.error(
                "the report service refused the API key (%s); %d payloads wait. Check the "
                "token given to the edge against `inspection serve keys list`.",
                outcome.error,
                self.outbox.pending(),
            )
        else:
            logger.warning(
                "sending part %s failed (%s); retrying in %.1f s",
                failed[0][0].part_id,
                outcome.error,
                wait,
            )

    # ------------------------------------------------------------------ background

    def start(self) -> None:
        """Send in a daemon thread until :meth:`stop`."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="outbox-forwarder", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread (an attempt in flight finishes) and close the HTTP client."""
        self._stop.set()
        self.outbox.changed.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.outbox.changed.clear()
            try:
                sent = self.send_due()
            except Exception:  # a full disk, a locked file: log it, keep the thread alive
                logger.exception("the outbox forwarder failed; retrying")
                self.failures += 1
                self.resume_at = self.clock() + backoff_delay(
                    self.failures, self.base_backoff, self.max_backoff, self.rng
                )
                sent = 0
            if sent >= self.batch:
                continue
            self._wait(self._idle_seconds())

    def _idle_seconds(self, poll: float = 1.0) -> float:
        """Until the next payload is due (at most ``poll``: another process may put)."""
        now = self.clock()
        due = self.outbox._next_due()
        wake = max(self.resume_at, due if due is not None else now + poll)
        return min(max(wake - now, 0.0), poll) if wake > now else 0.0

    def _wait(self, seconds: float) -> None:
        if self.sleep is not None:
            self.sleep(seconds)
        elif seconds > 0:
            self.outbox.changed.wait(seconds)
