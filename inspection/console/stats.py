"""Line KPIs and statistics for the console: this shift's numbers, a defect Pareto, the
yield over time and the false-reject rate by shift.

Everything reads the records database (:mod:`inspection.records.models`) through a
SQLAlchemy engine (``RecordStore.engine``). Counts are aggregated in SQL (``GROUP BY``,
``COUNT``) on the indexes the console relies on (``captured_at``, ``verdict`` and
``captured_at``, ``defects.inspection_id``); time bucketing fetches only the needed
columns of the window and buckets them with numpy, which works the same on SQLite and
PostgreSQL. Times are timezone-aware and stored as UTC; shifts are wall-clock times in the
plant's zone (``tz``).

A *false reject* is a part the edge rejected and an operator passed: a REJECT inspection
whose latest review decided PASS. Only the latest review counts (a REJECT reviewed PASS,
then REJECT again, is not overridden).

Torch-free and gradio-free; the figures use matplotlib's object API (no pyplot), so
nothing global is touched and nothing leaks in a long-running console.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Engine, bindparam, func, select

from inspection.errors import UserError
from inspection.records.models import Defect, Inspection, Review, Station, UTCDateTime

if TYPE_CHECKING:
    from matplotlib.figure import Figure

VERDICTS = ("PASS", "REJECT", "REVIEW")
NOT_INSPECTED = "NOT_INSPECTED"  # the key of parts captured but never decided
MAX_BUCKETS = 10_000  # a trend longer than this is a mistake (a 1 s bucket over a week)
ROWS_PER_QUERY = 200  # above this many parts per bucket, yield_trend aggregates in SQL
TOP_DEFECTS = 5


@dataclass(frozen=True)
class Shift:
    """A shift: its name and the wall-clock time it starts; it runs until the next starts."""

    name: str
    start: time


DEFAULT_SHIFTS: tuple[Shift, ...] = (
    Shift("A", time(6, 0)),
    Shift("B", time(14, 0)),
    Shift("C", time(22, 0)),
)


@dataclass(frozen=True)
class LineKpis:
    """The line's numbers for the shift so far (parts captured from its start to ``now``).

    ``counts`` has PASS, REJECT, REVIEW and NOT_INSPECTED, each present. ``yield_rate`` is
    PASS over decided parts (first-pass, the edge's verdicts; ``None`` when nothing was
    decided); ``parts_per_min`` counts every part, decided or not (``None`` at the very
    start of the shift). ``overrides`` are this shift's REJECTs an operator passed.
    """

    shift: str
    shift_start: datetime
    shift_end: datetime
    now: datetime
    station: str | None
    parts: int
    counts: dict[str, int]
    yield_rate: float | None
    parts_per_min: float | None
    top_defects: tuple[tuple[str, int], ...]
    overrides: int


@dataclass(frozen=True)
class TrendPoint:
    """One time bucket of the yield trend: parts captured in ``[start, start + bucket)``."""

    start: datetime
    parts: int  # every part, decided or not
    decided: int
    yield_rate: float | None  # PASS / decided; None when nothing was decided


@dataclass(frozen=True)
class ShiftPoint:
    """One shift of the false-reject trend (REJECTs captured in it, within the window)."""

    start: datetime
    shift: str
    rejects: int
    overridden: int  # REJECTs whose latest review decided PASS
    rate: float | None  # overridden / rejects; None when there was no REJECT


# ---------------------------------------------------------------------------------------
# shifts


def shift_window(
    now: datetime, shifts: Sequence[Shift] = DEFAULT_SHIFTS, tz: tzinfo = UTC
) -> tuple[str, datetime, datetime]:
    """The shift running at ``now``: ``(name, start, end)``, start and end in UTC.

    Each shift runs until the next one starts; the last one of the day runs past midnight
    into the first. Shift times are wall-clock times in ``tz`` (a ``zoneinfo.ZoneInfo`` of
    the plant), so a shift across a daylight-saving change is an hour shorter or longer.

    Examples
    --------
    >>> shift_window(datetime(2026, 3, 2, 1, 30, tzinfo=UTC))[0]
    'C'
    """
    ordered = _ordered(shifts)
    local = _aware(now, "now").astimezone(tz)
    today = local.date()
    # Candidate starts yesterday, today and tomorrow: the running shift is the last start
    # at or before now, and it ends at the next start.
    starts = [
        (datetime.combine(today + timedelta(days=d), s.start, tzinfo=tz).astimezone(UTC), s.name)
        for d in (-1, 0, 1)
        for s in ordered
    ]
    now_utc = now.astimezone(UTC)
    i = max(k for k, (start, _) in enumerate(starts) if start <= now_utc)
    return starts[i][1], starts[i][0], starts[i + 1][0]


def shift_windows(
    since: datetime, until: datetime, shifts: Sequence[Shift] = DEFAULT_SHIFTS, tz: tzinfo = UTC
) -> list[tuple[str, datetime, datetime]]:
    """Every shift that overlaps ``[since, until)``, oldest first (see :func:`shift_window`)."""
    since, until = _span(since, until)
    windows = [shift_window(since, shifts, tz)]
    while windows[-1][2] < until:
        windows.append(shift_window(windows[-1][2], shifts, tz))
        if len(windows) > MAX_BUCKETS:
            raise UserError(f"{since.isoformat()} to {until.isoformat()} spans too many shifts")
    return windows


def _ordered(shifts: Sequence[Shift]) -> list[Shift]:
    if not shifts:
        raise UserError("give at least one shift")
    for s in shifts:
        if not isinstance(s, Shift) or not isinstance(s.start, time):
            raise UserError(f"a shift is a name and a start time (datetime.time), not {s!r}")
    ordered = sorted(shifts, key=lambda s: s.start)
    starts = [s.start.replace(tzinfo=None) for s in ordered]
    if len(set(starts)) != len(starts):
        raise UserError(f"two shifts start at the same time: {[str(s) for s in starts]}")
    return ordered


# ---------------------------------------------------------------------------------------
# queries


def line_kpis(
    engine: Engine,
    now: datetime,
    shifts: Sequence[Shift] = DEFAULT_SHIFTS,
    station: str | None = None,
    tz: tzinfo = UTC,
) -> LineKpis:
    """This shift's numbers so far, from the shift's start up to ``now`` (inclusive).

    Parameters
    ----------
    engine : Engine
        The records database (``RecordStore.engine``).
    now : datetime
        Timezone-aware; injected so that tests and replays fix the clock.
    shifts, tz
        The plant's shifts and zone (see :func:`shift_window`).
    station : str | None
        One station's parts; ``None``: the whole line.
    """
    name, start, end = shift_window(now, shifts, tz)
    now = now.astimezone(UTC)
    # Inclusive of now: a part captured this very instant belongs to the shift.
    where = [Inspection.captured_at >= start, Inspection.captured_at <= now]
    where += _station_filter(station)
    with engine.connect() as connection:
        rows = connection.execute(
            select(Inspection.verdict, func.count()).where(*where).group_by(Inspection.verdict)
        )
        counts = {v: 0 for v in VERDICTS} | {NOT_INSPECTED: 0}
        for verdict, count in rows:
            counts[verdict or NOT_INSPECTED] = int(count)
        top = _pareto(connection, where, TOP_DEFECTS)
        overrides = connection.scalar(
            select(func.count())
            .select_from(Inspection)
            .where(*where, Inspection.verdict == "REJECT", _latest_review() == "PASS")
        )
    parts = sum(counts.values())
    minutes = (now - start).total_seconds() / 60
    return LineKpis(
        shift=name,
        shift_start=start,
        shift_end=end,
        now=now,
        station=station,
        parts=parts,
        counts=counts,
        yield_rate=_yield(counts["PASS"], parts - counts[NOT_INSPECTED]),
        parts_per_min=parts / minutes if minutes > 0 else None,
        top_defects=tuple(top),
        overrides=int(overrides or 0),
    )


def defect_pareto(
    engine: Engine, since: datetime, until: datetime, station: str | None = None
) -> list[tuple[str, int]]:
    """Defects by class of parts captured in ``[since, until)``, most frequent first
    (ties by name)."""
    since, until = _span(since, until)
    where = [Inspection.captured_at >= since, Inspection.captured_at < until]
    with engine.connect() as connection:
        return _pareto(connection, where + _station_filter(station), None)


def yield_trend(
    engine: Engine,
    since: datetime,
    until: datetime,
    bucket: timedelta,
    station: str | None = None,
) -> list[TrendPoint]:
    """Parts and first-pass yield per ``bucket`` from ``since`` up to ``until``.

    Every bucket is there, empty ones too (0 parts, yield ``None``); the last one may run
    past ``until`` but counts nothing captured from ``until`` on.
    """
    since, until = _span(since, until)
    edges = _edges(since, until, bucket)
    window = [Inspection.captured_at >= since, Inspection.captured_at < until]
    stations = _station_filter(station)
    with engine.connect() as connection:
        count = select(func.count()).select_from(Inspection).where(*window, *stations)
        # Fetching a row costs ~8 us (the driver, then the datetime); one aggregate query
        # per bucket ~1 ms: fetch a sparse window, aggregate a dense one bucket by bucket.
        if (connection.scalar(count) or 0) > ROWS_PER_QUERY * len(edges):
            counts = _counts_per_bucket(connection, stations, edges, until)
        else:
            counts = _counts_fetched(connection, window + stations, edges)
    return [
        TrendPoint(
            start=_utc(edges[i]),
            parts=int(parts),
            decided=int(decided),
            yield_rate=_yield(int(passed), int(decided)),
        )
        for i, (parts, decided, passed) in enumerate(counts)
    ]


def _counts_fetched(connection: Any, where: list[Any], edges: np.ndarray) -> np.ndarray:
    """``(parts, decided, passed)`` per bucket, from the window's rows bucketed here."""
    stmt = select(Inspection.captured_at, Inspection.verdict).where(*where)
    rows = connection.execute(stmt).all()
    index = _bucket_of([captured for captured, _ in rows], edges)
    verdicts = np.array([v or NOT_INSPECTED for _, v in rows], dtype=object)
    n = len(edges)
    return np.stack(
        [
            np.bincount(index, minlength=n),
            np.bincount(index, weights=verdicts != NOT_INSPECTED, minlength=n),
            np.bincount(index, weights=verdicts == "PASS", minlength=n),
        ],
        axis=1,
    ).astype(np.int64)


def _counts_per_bucket(
    connection: Any, where: list[Any], edges: np.ndarray, until: datetime
) -> np.ndarray:
    """``(parts, decided, passed)`` per bucket, one ``GROUP BY verdict`` query each (on the
    ``captured_at`` index; plain comparisons, so exact at the edges on every backend).

    ``where`` must not bound ``captured_at`` again: SQLite would then range-scan the index
    on the window's bounds instead of the bucket's (seen: 35 ms a bucket, not 1 ms).
    """
    lo = bindparam("lo", type_=UTCDateTime())
    hi = bindparam("hi", type_=UTCDateTime())
    stmt = (
        select(Inspection.verdict, func.count())
        .where(*where, Inspection.captured_at >= lo, Inspection.captured_at < hi)
        .group_by(Inspection.verdict)
    )
    bounds = [_utc(edge) for edge in edges] + [until]
    counts = np.zeros((len(edges), 3), dtype=np.int64)
    for i in range(len(edges)):
        for verdict, n in connection.execute(stmt, {"lo": bounds[i], "hi": bounds[i + 1]}):
            counts[i] += (n, n if verdict else 0, n if verdict == "PASS" else 0)
    return counts


def false_reject_trend(
    engine: Engine,
    since: datetime,
    until: datetime,
    shifts: Sequence[Shift] = DEFAULT_SHIFTS,
    station: str | None = None,
    tz: tzinfo = UTC,
) -> list[ShiftPoint]:
    """REJECTs and those an operator overrode to PASS, per shift, for parts captured in
    ``[since, until)``. Every shift overlapping the window is there (a partial first or
    last shift counts only its part inside the window); the rate is ``None`` without
    REJECTs."""
    windows = shift_windows(since, until, shifts, tz)
    since, until = _span(since, until)
    stmt = select(Inspection.captured_at, _latest_review()).where(
        Inspection.verdict == "REJECT",
        Inspection.captured_at >= since,
        Inspection.captured_at < until,
        *_station_filter(station),
    )
    with engine.connect() as connection:
        rows = connection.execute(stmt).all()
    edges = np.array([np.datetime64(_naive(start), "us") for _, start, _ in windows])
    index = _bucket_of([captured for captured, _ in rows], edges)
    overridden = np.array([decision == "PASS" for _, decision in rows], dtype=bool)
    rejects = np.bincount(index, minlength=len(windows))
    passed = np.bincount(index, weights=overridden, minlength=len(windows))
    return [
        ShiftPoint(
            start=start,
            shift=name,
            rejects=int(rejects[i]),
            overridden=int(passed[i]),
            rate=_yield(int(passed[i]), int(rejects[i])),
        )
        for i, (name, start, _) in enumerate(windows)
    ]


def _pareto(connection: Any, where: list[Any], limit: int | None) -> list[tuple[str, int]]:
    count = func.count(Defect.id)
    stmt = (
        select(Defect.defect_class, count)
        .join(Inspection, Defect.inspection_id == Inspection.id)
        .where(*where)
        .group_by(Defect.defect_class)
        .order_by(count.desc(), Defect.defect_class)
        .limit(limit)
    )
    return [(name, int(n)) for name, n in connection.execute(stmt)]


def _latest_review() -> Any:
    """The decision of an inspection's latest review (NULL: never reviewed), as a
    correlated subquery: one index lookup (``reviews.inspection_id``) per row asked."""
    return (
        select(Review.decision)
        .where(Review.inspection_id == Inspection.id)
        .order_by(Review.created_at.desc(), Review.id.desc())
        .limit(1)
        .correlate(Inspection)
        .scalar_subquery()
    )


def _station_filter(station: str | None) -> list[Any]:
    if station is None:
        return []
    station_id = select(Station.id).where(Station.name == station).scalar_subquery()
    return [Inspection.station_id == station_id]


def _edges(since: datetime, until: datetime, bucket: timedelta) -> np.ndarray:
    """Bucket starts as naive-UTC ``datetime64[us]``."""
    if bucket <= timedelta(0):
        raise UserError(f"a trend bucket must be a positive period, not {bucket}")
    n = -(-(until - since) // bucket)  # ceil
    if n > MAX_BUCKETS:
        raise UserError(
            f"{n} buckets of {bucket} from {since.isoformat()} to {until.isoformat()}: "
            f"use a longer bucket (at most {MAX_BUCKETS})"
        )
    step = np.timedelta64(bucket // timedelta(microseconds=1), "us")
    return np.datetime64(_naive(since), "us") + step * np.arange(n)


def _bucket_of(times: list[datetime], edges: np.ndarray) -> np.ndarray:
    """The index of the bucket (edges = sorted starts) each time falls in."""
    if not times:
        return np.zeros(0, dtype=np.int64)
    stamps = np.array([_naive(t) for t in times], dtype="datetime64[us]")
    return np.searchsorted(edges, stamps, side="right") - 1


def _span(since: datetime, until: datetime) -> tuple[datetime, datetime]:
    since = _aware(since, "since").astimezone(UTC)
    until = _aware(until, "until").astimezone(UTC)
    if until <= since:
        raise UserError(f"empty window: {since.isoformat()} to {until.isoformat()}")
    return since, until


def _aware(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise UserError(f"{name} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None:
        raise UserError(f"{name} {value.isoformat()} has no time zone: give one (UTC)")
    return value


def _naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


def _utc(value: np.datetime64) -> datetime:
    return value.astype("datetime64[us]").item().replace(tzinfo=UTC)


def _yield(good: int, total: int) -> float | None:
    return good / total if total else None


# ---------------------------------------------------------------------------------------
# figures


def pareto_figure(pareto: Sequence[tuple[str, int]]) -> Figure:
    """Defects by class as bars, most frequent first, with the cumulative share as a line.

    An empty Pareto gives a figure that says "no data".
    """
    fig, ax = _figure(max(6.0, 0.8 * len(pareto) + 2.5))
    total = sum(n for _, n in pareto)
    ax.set_title(f"Defect Pareto ({total} defects)" if total else "Defect Pareto")
    if not total:
        return _no_data(fig, ax)
    names = [name for name, _ in pareto]
    counts = [n for _, n in pareto]
    x = np.arange(len(names))
    bars = ax.bar(x, counts, color="#c62828")
    ax.bar_label(bars, padding=2, fontsize=9)
    ax.set_ylim(0, max(counts) * 1.18)  # room for the labels above the tallest bar
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel("defects")
    share = ax.twinx()
    share.plot(x, 100 * np.cumsum(counts) / total, color="#1f4e79", marker="o")
    share.set_ylim(0, 108)
    share.set_ylabel("cumulative %")
    fig.tight_layout()
    return fig


def yield_figure(points: Sequence[TrendPoint]) -> Figure:
    """First-pass yield over time (line, %) over the parts per bucket (grey bars)."""
    fig, ax = _figure(8.0)
    ax.set_title("Yield")
    if not any(p.parts for p in points):
        return _no_data(fig, ax)
    starts = [p.start for p in points]
    width = (starts[1] - starts[0]) * 0.9 if len(starts) > 1 else timedelta(hours=1)
    volume = ax.twinx()
    volume.bar(starts, [p.parts for p in points], width=width, align="edge", color="#d0d0d0")
    volume.set_ylabel("parts")
    # The yield line drawn above the bars: the volume axis goes behind.
    ax.set_zorder(volume.get_zorder() + 1)
    ax.patch.set_visible(False)
    values = [np.nan if p.yield_rate is None else 100 * p.yield_rate for p in points]
    ax.plot([s + width / 2 for s in starts], values, color="#2e7d32", marker=".")
    decided = [v for v in values if not np.isnan(v)]
    # Yield lives near 100 %: zoom there unless a bucket fell further.
    ax.set_ylim(min([90.0] + [v - 2 for v in decided]), 100.5)
    ax.set_ylabel("yield %")
    ax.set_xlabel("time (UTC)")
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def false_reject_figure(points: Sequence[ShiftPoint]) -> Figure:
    """REJECTs per shift (bars) and the share an operator overrode to PASS (line, %)."""
    fig, ax = _figure(max(6.0, 0.35 * len(points) + 2.5))
    ax.set_title("False rejects by shift")
    if not any(p.rejects for p in points):
        return _no_data(fig, ax)
    x = np.arange(len(points))
    ax.bar(x, [p.rejects for p in points], color="#ef9a9a", label="REJECT")
    ax.bar(x, [p.overridden for p in points], color="#c62828", label="overridden to PASS")
    ax.set_ylabel("parts")
    labels = [f"{p.start:%m-%d %H:%M} {p.shift}" for p in points]
    # A week is ~21 shifts: label at most ~14 of them so the labels stay readable.
    every = max(1, len(points) // 14)
    ax.set_xticks(x[::every], labels[::every], rotation=45, ha="right", fontsize=8)
    ax.legend(loc="upper left", fontsize=8)
    rate = ax.twinx()
    values = [np.nan if p.rate is None else 100 * p.rate for p in points]
    rate.plot(x, values, color="#1f4e79", marker="o")
    rate.set_ylim(0, 105)
    rate.set_ylabel("false-reject rate %")
    fig.tight_layout()
    return fig


def _figure(width: float) -> tuple[Figure, Any]:
    # The object API, not pyplot: no global figure registry to leak or share across the
    # console's threads, and the Agg canvas whatever backend the process chose.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(min(width, 14.0), 3.8))
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _no_data(fig: Figure, ax: Any) -> Figure:
    ax.text(0.5, 0.5, "no data", ha="center", va="center", fontsize=14, color="#777777")
    ax.set_xticks([])
    ax.set_yticks([])
    return fig


__all__ = [
    "DEFAULT_SHIFTS",
    "LineKpis",
    "Shift",
    "ShiftPoint",
    "TrendPoint",
    "defect_pareto",
    "false_reject_figure",
    "false_reject_trend",
    "line_kpis",
    "pareto_figure",
    "shift_window",
    "shift_windows",
    "yield_figure",
]
