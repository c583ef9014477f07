"""Line KPIs and statistics on a real SQLite records store: shift windows (across midnight,
in a plant's zone, across a daylight-saving change), this shift's numbers, the defect
Pareto, the yield per bucket, false rejects per shift, the figures, an empty database."""

from __future__ import annotations

import io
import itertools
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from records_helpers import result

from inspection.console import stats
from inspection.console.stats import (
    DEFAULT_SHIFTS,
    Shift,
    defect_pareto,
    false_reject_figure,
    false_reject_trend,
    line_kpis,
    pareto_figure,
    shift_window,
    shift_windows,
    yield_figure,
    yield_trend,
)
from inspection.errors import UserError
from inspection.records.store import RecordEntry, RecordStore
from inspection.types import Verdict

BERLIN = ZoneInfo("Europe/Berlin")
PNG = b"\x89PNG\r\n\x1a\n"


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """A time in March 2026, UTC (2 March is a Monday; Europe/Berlin is UTC+1 until the
    29th, when it changes to UTC+2)."""
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


@pytest.fixture
def store(tmp_path):
    with RecordStore(tmp_path / "records.db", tmp_path / "evidence", tmp_path / "spool.db") as s:
        yield s


def entry(
    part_id: str,
    captured_at: datetime,
    verdict: str | None = "PASS",
    classes: tuple[str, ...] = (),
    station: str = "s1",
) -> RecordEntry:
    """A part decided ``verdict`` with one defect per class (``None``: not inspected)."""
    if verdict is None:
        return RecordEntry(part_id, station, reason="camera lost", captured_at=captured_at)
    r = result(part_id, Verdict(verdict), defects=len(classes))
    decisions = tuple(
        replace(d, defect=replace(d.defect, defect_class=c))
        for d, c in zip(r.decisions, classes, strict=True)
    )
    return RecordEntry(part_id, station, replace(r, decisions=decisions), captured_at=captured_at)


def png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


# ---------------------------------------------------------------------------------------
# shifts


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (at(2, 7), ("A", at(2, 6), at(2, 14))),
        (at(2, 6), ("A", at(2, 6), at(2, 14))),  # a shift starts at its start time
        (at(2, 13, 59), ("A", at(2, 6), at(2, 14))),
        (at(2, 14), ("B", at(2, 14), at(2, 22))),
        (at(2, 23, 30), ("C", at(2, 22), at(3, 6))),
        (at(3, 1, 30), ("C", at(2, 22), at(3, 6))),  # after midnight: yesterday's C
    ],
)
def test_shift_window_in_utc(now, expected):
    assert shift_window(now) == expected


def test_shift_window_in_the_plants_zone():
    # 05:30 UTC is 06:30 in Berlin: shift A, which began at 05:00 UTC.
    assert shift_window(at(2, 5, 30), tz=BERLIN) == ("A", at(2, 5), at(2, 13))
    # 04:30 UTC is 05:30 in Berlin: still C, from 22:00 Berlin the day before.
    assert shift_window(at(2, 4, 30), tz=BERLIN) == ("C", at(1, 21), at(2, 5))
    # A now given in another zone is the same instant.
    assert shift_window(at(2, 5, 30).astimezone(BERLIN), tz=BERLIN)[0] == "A"
    # The night of the change to summer time: C runs 22:00 CET to 06:00 CEST, 7 hours.
    name, start, end = shift_window(at(29, 2), tz=BERLIN)
    assert (name, start, end) == ("C", at(28, 21), at(29, 4))
    assert end - start == timedelta(hours=7)


def test_custom_shifts_in_any_order():
    shifts = [Shift("night", time(19, 0)), Shift("day", time(7, 0))]
    assert shift_window(at(2, 12), shifts) == ("day", at(2, 7), at(2, 19))
    assert shift_window(at(2, 3), shifts) == ("night", at(1, 19), at(2, 7))
    single = [Shift("all", time(0, 0))]
    assert shift_window(at(2, 12), single) == ("all", at(2, 0), at(3, 0))


def test_shift_windows_cover_a_span():
    windows = shift_windows(at(2, 10), at(3, 7))
    assert [(name, start) for name, start, _ in windows] == [
        ("A", at(2, 6)),
        ("B", at(2, 14)),
        ("C", at(2, 22)),
        ("A", at(3, 6)),
    ]
    assert all(w[2] == nxt[1] for w, nxt in itertools.pairwise(windows))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: shift_window(datetime(2026, 3, 2, 7)), "no time zone"),
        (lambda: shift_window(at(2, 7), []), "at least one shift"),
        (lambda: shift_window(at(2, 7), [Shift("x", time(6)), Shift("y", time(6))]), "same"),
        (lambda: shift_window(at(2, 7), [Shift("x", "06:00")]), "datetime.time"),
        (lambda: shift_windows(at(2, 7), at(2, 7)), "empty window"),
        (lambda: shift_window("2026-03-02", DEFAULT_SHIFTS), "must be a datetime"),
    ],
)
def test_bad_shift_input_is_a_user_error(call, message):
    with pytest.raises(UserError, match=message):
        call()


# ---------------------------------------------------------------------------------------
# KPIs


def test_line_kpis_for_the_shift_so_far(store):
    now = at(2, 10)  # shift A, 240 minutes in
    store.record_many(
        [
            entry("P-1", at(2, 6)),  # at the shift's start: in
            *(entry(f"P-{i}", at(2, 7, i)) for i in range(2, 7)),
            entry("R-1", at(2, 8), "REJECT", ("scratch", "scratch", "dent")),
            entry("R-2", at(2, 9), "REJECT", ("scratch",)),
            entry("V-1", at(2, 9, 30), "REVIEW", ("stain",)),
            entry("N-1", at(2, 9, 45), None),
            entry("S2-1", at(2, 7), station="s2"),
            entry("NOW", now),  # captured this instant: in
            # Not this shift: before it, and after now.
            entry("OLD", at(2, 5, 59), "REJECT", ("dent", "dent", "dent")),
            entry("LATE", at(2, 10, 1), "REJECT", ("dent", "dent", "dent")),
        ]
    )
    store.add_review("R-1", "s1", "ana", "PASS", "dust, not a scratch")
    store.add_review("R-2", "s1", "ana", "PASS")
    store.add_review("R-2", "s1", "ben", "REJECT", "it is a scratch")  # the latest counts
    store.add_review("OLD", "s1", "ana", "PASS")  # an override, but of the last shift

    k = line_kpis(store.engine, now)
    assert (k.shift, k.shift_start, k.shift_end, k.now) == ("A", at(2, 6), at(2, 14), now)
    assert k.counts == {"PASS": 8, "REJECT": 2, "REVIEW": 1, "NOT_INSPECTED": 1}
    assert k.parts == 12
    assert k.yield_rate == pytest.approx(8 / 11)
    assert k.parts_per_min == pytest.approx(12 / 240)
    assert k.top_defects == (("scratch", 3), ("dent", 1), ("stain", 1))
    assert k.overrides == 1

    one = line_kpis(store.engine, now, station="s1")
    assert one.station == "s1" and one.parts == 11 and one.counts["PASS"] == 7
    assert one.yield_rate == pytest.approx(7 / 10)
    assert line_kpis(store.engine, now, station="s2").counts == {
        "PASS": 1,
        "REJECT": 0,
        "REVIEW": 0,
        "NOT_INSPECTED": 0,
    }
    assert line_kpis(store.engine, now, station="nowhere").parts == 0


def test_line_kpis_in_the_plants_zone(store):
    # 05:30 UTC is shift A in Berlin (from 05:00 UTC) and still C in UTC.
    store.record_many([entry("P-1", at(2, 4, 59)), entry("P-2", at(2, 5, 10))])
    berlin = line_kpis(store.engine, at(2, 5, 30), tz=BERLIN)
    assert (berlin.shift, berlin.shift_start, berlin.parts) == ("A", at(2, 5), 1)
    utc = line_kpis(store.engine, at(2, 5, 30))
    assert (utc.shift, utc.parts) == ("C", 2)


def test_top_defects_are_the_five_most_frequent(store):
    classes = ("a", "b", "b", "c", "c", "c", "d", "e", "f", "f", "g")
    store.record_many([entry("R-1", at(2, 7), "REJECT", classes)])
    top = line_kpis(store.engine, at(2, 8)).top_defects
    assert top == (("c", 3), ("b", 2), ("f", 2), ("a", 1), ("d", 1))


# ---------------------------------------------------------------------------------------
# Pareto, yield trend, false rejects


def test_defect_pareto_in_a_window(store):
    store.record_many(
        [
            entry("R-0", at(2, 7, 59), "REJECT", ("burr",) * 5),  # before the window
            entry("R-1", at(2, 8), "REJECT", ("dent", "scratch")),  # at since: in
            entry("R-2", at(2, 9), "REJECT", ("scratch", "scratch", "crack")),
            entry("V-1", at(2, 10), "REVIEW", ("crack",)),
            entry("R-3", at(2, 11), "REJECT", ("burr",) * 5),  # at until: out
            entry("R-4", at(2, 9), "REJECT", ("dent",) * 4, station="s2"),
        ]
    )
    pareto = defect_pareto(store.engine, at(2, 8), at(2, 11))
    assert pareto == [("dent", 5), ("scratch", 3), ("crack", 2)]
    assert defect_pareto(store.engine, at(2, 8), at(2, 11), station="s1") == [
        ("scratch", 3),
        ("crack", 2),
        ("dent", 1),
    ]
    with pytest.raises(UserError, match="empty window"):
        defect_pareto(store.engine, at(2, 11), at(2, 8))


@pytest.mark.parametrize("per_bucket", [False, True], ids=["fetched", "sql-per-bucket"])
def test_yield_per_bucket(store, monkeypatch, per_bucket):
    # Both ways of counting (rows bucketed here, or one query per bucket) agree.
    monkeypatch.setattr(stats, "ROWS_PER_QUERY", -1 if per_bucket else 10**9)
    store.record_many(
        [
            entry("EARLY", at(2, 7, 59), "REJECT"),
            entry("P-1", at(2, 8)),
            entry("P-2", at(2, 8, 20)),
            entry("P-3", at(2, 8, 59)),
            entry("R-1", at(2, 8, 40), "REJECT", ("dent",)),
            # 09:00-10:00: nothing
            entry("V-1", at(2, 10, 5), "REVIEW"),
            entry("N-1", at(2, 10, 10), None),
            entry("P-4", at(2, 10, 29)),
            entry("LATE", at(2, 10, 30), "REJECT"),  # at until: out
        ]
    )
    points = yield_trend(store.engine, at(2, 8), at(2, 10, 30), timedelta(hours=1))
    assert [p.start for p in points] == [at(2, 8), at(2, 9), at(2, 10)]
    assert [p.parts for p in points] == [4, 0, 3]
    assert [p.decided for p in points] == [4, 0, 2]
    assert points[0].yield_rate == pytest.approx(0.75)
    assert points[1].yield_rate is None
    assert points[2].yield_rate == pytest.approx(0.5)
    # Another bucket size over the same records, and another station.
    halves = yield_trend(store.engine, at(2, 8), at(2, 9), timedelta(minutes=30))
    assert [(p.parts, p.yield_rate) for p in halves] == [(2, 1.0), (2, 0.5)]
    other = yield_trend(store.engine, at(2, 8), at(2, 11), timedelta(hours=1), station="s2")
    assert len(other) == 3 and all(p.parts == 0 for p in other)


def test_bad_trend_input_is_a_user_error(store):
    with pytest.raises(UserError, match="positive"):
        yield_trend(store.engine, at(2, 8), at(2, 9), timedelta(0))
    with pytest.raises(UserError, match="longer bucket"):
        yield_trend(store.engine, at(2, 8), at(9, 8), timedelta(seconds=1))
    with pytest.raises(UserError, match="no time zone"):
        yield_trend(store.engine, datetime(2026, 3, 2, 8), at(2, 9), timedelta(hours=1))


def test_false_rejects_by_shift(store):
    store.record_many(
        [
            entry("R-0", at(2, 9), "REJECT"),  # before the window
            entry("R-1", at(2, 10), "REJECT"),
            entry("R-2", at(2, 15), "REJECT"),
            entry("R-3", at(2, 16), "REJECT"),
            entry("R-4", at(2, 17), "REJECT"),
            entry("R-5", at(2, 18), "REJECT"),
            entry("P-1", at(2, 15)),
            entry("V-1", at(2, 15), "REVIEW"),
            entry("S2-1", at(2, 16), "REJECT", station="s2"),
            entry("R-6", at(3, 1), "REJECT"),  # after midnight: shift C of the 2nd
            entry("R-7", at(3, 7), "REJECT"),  # at until: out
        ]
    )
    for part in ("R-0", "R-1", "R-2", "R-6", "R-7", "P-1", "V-1"):
        store.add_review(part, "s1", "ana", "PASS")
    store.add_review("R-3", "s1", "ana", "PASS")
    store.add_review(
        "R-3", "s1", "ben", "REJECT"
    )  # passed, then rejected again: not a false reject
    store.add_review("R-4", "s1", "ana", "REVIEW")
    store.add_review("R-4", "s1", "ben", "PASS")  # the latest review passed it
    store.add_review("S2-1", "s2", "ana", "PASS")

    points = false_reject_trend(store.engine, at(2, 10), at(3, 7))
    assert [(p.shift, p.start) for p in points] == [
        ("A", at(2, 6)),
        ("B", at(2, 14)),
        ("C", at(2, 22)),
        ("A", at(3, 6)),
    ]
    assert [(p.rejects, p.overridden) for p in points] == [(1, 1), (5, 3), (1, 1), (0, 0)]
    assert [p.rate for p in points] == [1.0, pytest.approx(0.6), 1.0, None]
    one = false_reject_trend(store.engine, at(2, 10), at(3, 7), station="s1")
    assert (one[1].rejects, one[1].overridden) == (4, 2)
    # In Berlin, 15:00 UTC is 16:00 (B) and 01:00 UTC is 02:00 (C): same counts, shifts
    # starting an hour earlier in UTC.
    berlin = false_reject_trend(store.engine, at(2, 10), at(3, 7), tz=BERLIN)
    assert [p.start for p in berlin] == [at(2, 5), at(2, 13), at(2, 21), at(3, 5)]
    assert [(p.rejects, p.overridden) for p in berlin] == [(1, 1), (5, 3), (1, 1), (0, 0)]


# ---------------------------------------------------------------------------------------
# figures, an empty database


def test_figures_render_to_png(store):
    store.record_many(
        [
            entry("R-1", at(2, 8), "REJECT", ("scratch", "scratch", "dent")),
            entry("P-1", at(2, 9)),
            entry("R-2", at(2, 15), "REJECT", ("stain",)),
        ]
    )
    store.add_review("R-1", "s1", "ana", "PASS")
    pareto = defect_pareto(store.engine, at(2, 0), at(3, 0))
    fig = pareto_figure(pareto)
    assert png(fig).startswith(PNG)
    bars, share = fig.axes
    assert bars.get_title() == "Defect Pareto (4 defects)"
    assert [t.get_text() for t in bars.get_xticklabels()] == ["scratch", "dent", "stain"]
    assert list(share.lines[0].get_ydata()) == pytest.approx([50.0, 75.0, 100.0])

    fig = yield_figure(yield_trend(store.engine, at(2, 6), at(2, 18), timedelta(hours=1)))
    assert png(fig).startswith(PNG)
    assert fig.axes[0].get_title() == "Yield" and "no data" not in texts(fig)

    fig = false_reject_figure(false_reject_trend(store.engine, at(2, 6), at(3, 6)))
    assert png(fig).startswith(PNG)
    assert fig.axes[0].get_title() == "False rejects by shift"
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["03-02 06:00 A", "03-02 14:00 B", "03-02 22:00 C"]
    assert "no data" not in texts(fig)


def test_an_empty_database(store):
    k = line_kpis(store.engine, at(2, 10))
    assert (k.parts, k.yield_rate, k.top_defects, k.overrides) == (0, None, (), 0)
    assert k.parts_per_min == 0.0
    assert line_kpis(store.engine, at(2, 6)).parts_per_min is None  # no time yet
    assert defect_pareto(store.engine, at(2, 0), at(3, 0)) == []
    trend = yield_trend(store.engine, at(2, 0), at(3, 0), timedelta(hours=1))
    assert len(trend) == 24 and all(p.parts == 0 and p.yield_rate is None for p in trend)
    shifts = false_reject_trend(store.engine, at(2, 6), at(3, 6))
    assert [(p.rejects, p.rate) for p in shifts] == [(0, None)] * 3
    for fig in (pareto_figure([]), yield_figure(trend), false_reject_figure(shifts)):
        assert png(fig).startswith(PNG)
        assert "no data" in texts(fig)
    assert yield_figure([]).axes[0].get_title() == "Yield"


def test_all_parts_undecided_still_draws():
    # Parts in a bucket but none decided: the yield line has no point, the bars do.
    from inspection.console.stats import TrendPoint

    points = [TrendPoint(at(2, 8), 3, 0, None), TrendPoint(at(2, 9), 0, 0, None)]
    assert png(yield_figure(points)).startswith(PNG)


def test_the_module_stays_light():
    code = (
        "import sys, inspection.console.stats\n"
        "heavy = {'torch', 'gradio', 'matplotlib'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
