"""The record store on a real SQLite file: records, evidence, queries, indexes, pruning."""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from records_helpers import image, result

from inspection.errors import UserError
from inspection.models.card import sha256
from inspection.records.store import NOT_INSPECTED, RecordEntry, RecordStore
from inspection.types import BBox, Verdict

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path):
    with RecordStore(tmp_path / "records.db", tmp_path / "evidence", tmp_path / "spool.db") as s:
        yield s


def _rows(store: RecordStore, table: str) -> int:
    with sqlite3.connect(store.engine.url.database) as db:
        return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def test_record_keeps_every_version_and_defect(store):
    captured = T0
    decided = T0 + timedelta(milliseconds=80)
    r = result("P-1", Verdict.REJECT, defects=2)
    assert store.record("P-1", "s1", r, images=[image(1)], captured_at=captured, decided_at=decided)
    got = store.get("P-1", "s1")
    assert (got.verdict, got.severity, got.action) == ("REJECT", "major", "rework")
    assert (got.standard_id, got.standard_version) == ("bracket", "1.2")
    assert (got.model_version, got.calibration_version, got.path) == (
        "tiny-abc123",
        "cal-7",
        "edge",
    )
    assert got.software_version == store.software_version != "unknown"
    assert got.captured_at == captured and got.decided_at == decided
    assert got.captured_at.tzinfo is not None
    assert got.scores == {"image": pytest.approx(0.45)} and got.timings_ms["model"] == 4.5
    assert got.reasons == tuple(d.reason for d in r.decisions)
    assert [d["clause_id"] for d in got.defects] == ["4.1.0", "4.1.1"]
    assert got.defects[1]["bbox"] == [1, 2, 6, 9]
    assert got.defects[1]["attributes"] == {"length_mm": 3.0, "width_mm": 0.1}
    assert len(got.evidence) == 1 and got.not_inspected is None
    assert [d["footprint_bbox"] for d in got.defects] == [None, None]  # no profiler sized them


def test_a_dent_a_profiler_sized_keeps_its_footprints_box(store):
    r = result("P-1", Verdict.REJECT, defects=1)
    (decision,) = r.decisions
    box = BBox(4, 3, 12, 9)  # the box with_profile keeps of the footprint
    sized = replace(decision, defect=replace(decision.defect, footprint_bbox=box))
    assert store.record("P-1", "s1", replace(r, decisions=(sized,)))
    (defect,) = store.get("P-1", "s1").defects
    assert defect["footprint_bbox"] == [4, 3, 12, 9] and defect["bbox"] == [0, 0, 5, 7]


def test_a_part_is_recorded_once(store):
    assert store.record("P-1", "s1", result("P-1", Verdict.PASS))
    assert not store.record("P-1", "s1", result("P-1", Verdict.REJECT, defects=1))
    assert store.get("P-1", "s1").verdict == "PASS"  # the first record stays
    assert store.record("P-1", "s2", result("P-1"))  # another station's part
    assert (_rows(store, "parts"), _rows(store, "inspections"), _rows(store, "defects")) == (
        2,
        2,
        0,
    )
    entries = [RecordEntry(f"B-{i % 3}", "s1", result(f"B-{i % 3}")) for i in range(6)]
    assert store.record_many(entries) == [True, True, True, False, False, False]


def test_not_inspected_is_never_a_pass(store):
    assert store.record_not_inspected("P-9", "s1", "camera lost for 10 s", captured_at=T0)
    got = store.get("P-9", "s1")
    assert got.verdict is None and got.not_inspected == "camera lost for 10 s"
    assert got.decided_at is None
    assert store.counts() == {"PASS": 0, "REJECT": 0, "REVIEW": 0, NOT_INSPECTED: 1}
    assert [p.part_id for p in store.by_verdict("not_inspected")] == ["P-9"]
    assert not store.record("P-9", "s1", result("P-9"))  # captured, then decided: first wins
    with pytest.raises(UserError, match="needs its reason"):
        store.record_not_inspected("P-10", "s1", "")


def test_bad_input_is_a_clear_error_and_writes_nothing(store):
    with pytest.raises(UserError, match="is for part 'P-2', not 'P-1'"):
        store.record("P-1", "s1", result("P-2"))
    with pytest.raises(UserError, match="naive datetime"):
        store.record("P-1", "s1", result("P-1"), captured_at=datetime(2026, 1, 1))
    with pytest.raises(UserError, match="evidence image"):
        store.record("P-1", "s1", result("P-1"), images=[[1, 2, 3]])
    assert _rows(store, "inspections") == 0 and store.pending() == 0


def test_records_from_threads(store):
    # 4 threads record overlapping parts: each part once, each answer True exactly once.
    answers: list[tuple[str, bool]] = []
    lock = threading.Lock()

    def work(t: int) -> None:
        for i in range(40):
            part = f"P-{(t * 20 + i) % 100:03d}"
            ok = store.record(part, "s1", result(part), images=[image(i % 5)])
            with lock:
                answers.append((part, ok))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    recorded = sorted(part for part, ok in answers if ok)
    assert recorded == sorted(set(recorded)) and len(recorded) == 100
    assert _rows(store, "parts") == 100 and store.pending() == 0


def test_records_run_without_torch(tmp_path):
    from edge_guard import run_without_torch

    done = run_without_torch(
        f"""
        import numpy as np
        from typer.testing import CliRunner
        from inspection.records.commands import records_app
        from inspection.records.store import RecordStore
        from inspection.spool import Spool
        from inspection.types import Action, InspectionResult, Verdict

        with RecordStore({str(tmp_path / "r.db")!r}) as store:
            r = InspectionResult("P-1", Verdict.PASS, None, Action.ACCEPT)
            assert store.record("P-1", "s1", r, images=[np.zeros((8, 8, 3), np.uint8)])
        out = CliRunner().invoke(records_app, ["stats", "--db", {str(tmp_path / "r.db")!r}])
        assert "PASS" in out.output, out.output
        """
    )
    assert done.returncode == 0, done.stderr


def test_evidence_is_content_addressed_and_deduplicated(store, tmp_path):
    same = image(7)
    store.record("P-1", "s1", result("P-1"), images=[same, image(8)])
    store.record("P-2", "s1", result("P-2"), images=[same.copy()])
    first, second = store.get("P-1", "s1").evidence, store.get("P-2", "s1").evidence
    assert second[0] == first[0] != first[1]
    files = sorted((tmp_path / "evidence").rglob("*.png"))
    assert len(files) == 2
    for f in files:
        digest = f.stem
        assert f.relative_to(tmp_path / "evidence").parts[:2] == (digest[:2], digest[2:4])
        assert sha256(f) == digest  # the name is the content's hash
    assert not list((tmp_path / "evidence").rglob(".tmp-*"))
    # An encoded file given as bytes is kept as is, with its format's suffix.
    jpeg = b"\xff\xd8\xff\xe0" + bytes(range(64))
    store.record("P-3", "s1", result("P-3"), images=[jpeg])
    (digest,) = store.get("P-3", "s1").evidence
    assert store.evidence.find(digest).suffix == ".jpg"
    assert store.evidence.find(digest).read_bytes() == jpeg


def test_reports_and_reviews(store):
    store.record("P-1", "s1", result("P-1", Verdict.REVIEW, defects=1))
    report_id = store.add_report(
        "P-1", "s1", {"verdict": "REVIEW", "summary": "scratch"}, "dec-1", "lora-2", True
    )
    review_id = store.add_review("P-1", "s1", "anna", "pass", "cosmetic, within limits")
    assert report_id > 0 and review_id > 0
    with sqlite3.connect(store.engine.url.database) as db:
        row = db.execute("SELECT decoder_version, adapter_version, agreed FROM reports").fetchone()
        assert row == ("dec-1", "lora-2", 1)
        assert db.execute("SELECT reviewer, decision FROM reviews").fetchone() == ("anna", "PASS")
    with pytest.raises(UserError, match="no record of part 'P-404'"):
        store.add_review("P-404", "s1", "anna", "PASS")
    with pytest.raises(UserError, match="PASS, REJECT or REVIEW"):
        store.add_review("P-1", "s1", "anna", "MAYBE")


def test_queries_latest_by_verdict_and_counts(store):
    verdicts = [Verdict.PASS, Verdict.REJECT, Verdict.PASS, Verdict.REVIEW, Verdict.PASS]
    for i, verdict in enumerate(verdicts):
        station = "s1" if i % 2 == 0 else "s2"
        store.record(f"P-{i}", station, result(f"P-{i}", verdict), captured_at=T0 + timedelta(i))
    assert [p.part_id for p in store.latest(3)] == ["P-4", "P-3", "P-2"]
    assert [p.part_id for p in store.latest(10, station="s2")] == ["P-3", "P-1"]
    window = {"since": T0 + timedelta(1), "until": T0 + timedelta(4)}
    assert [p.part_id for p in store.by_verdict("PASS", **window)] == ["P-2"]
    assert [p.part_id for p in store.by_verdict(Verdict.PASS)] == ["P-4", "P-2", "P-0"]
    assert store.counts(**window) == {"PASS": 1, "REJECT": 1, "REVIEW": 1, NOT_INSPECTED: 0}
    assert store.counts(station="s1")["PASS"] == 3
    with pytest.raises(UserError, match="verdict must be"):
        store.by_verdict("GOOD")


def _plans(store: RecordStore, query) -> list[str]:
    """SQLite's plan of each SELECT the store runs for ``query()``."""
    from sqlalchemy import event

    seen: list[tuple[str, tuple]] = []

    def capture(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, tuple(parameters)))

    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        query()
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)
    assert seen
    with sqlite3.connect(store.engine.url.database) as db:
        return [
            " | ".join(row[-1] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params))
            for sql, params in seen
        ]


@pytest.mark.slow
def test_ten_thousand_records_and_indexed_queries(store):
    n, batch = 10_000, 1_000
    start = time.perf_counter()
    for first in range(0, n, batch):
        entries = [
            RecordEntry(
                f"P-{i:05d}",
                f"s{i % 4}",
                result(f"P-{i:05d}", (Verdict.PASS, Verdict.REJECT)[i % 7 == 0], i % 7 == 0),
                captured_at=T0 + timedelta(seconds=i),
            )
            for i in range(first, first + batch)
        ]
        assert all(store.record_many(entries))
    seconds = time.perf_counter() - start
    print(f"\n{n} records in {seconds:.1f} s ({n / seconds:.0f} records/s)")
    counts = store.counts()
    rejects = len(range(0, n, 7))
    assert counts == {"PASS": n - rejects, "REJECT": rejects, "REVIEW": 0, NOT_INSPECTED: 0}
    assert _rows(store, "defects") == rejects
    assert [p.part_id for p in store.latest(2)] == ["P-09999", "P-09998"]
    assert len(store.by_verdict("REJECT", limit=5000)) == rejects

    # The console's queries, as the store runs them, use the indexes.
    since = T0 + timedelta(hours=1)
    (latest, defects) = _plans(store, lambda: store.latest(50))
    assert "ix_inspections_captured_at" in latest
    assert "ix_defects_inspection_id" in defects
    (by_verdict, _) = _plans(store, lambda: store.by_verdict("REJECT", since=since))
    assert "ix_inspections_verdict_captured_at" in by_verdict
    (by_station,) = _plans(store, lambda: store.counts(since=since, station="s2"))
    assert "ix_inspections_station_id_captured_at" in by_station
    (one,) = _plans(store, lambda: store.get("P-00001", "s1"))[:1]
    assert "INDEX" in one  # the (station, part id) unique index
    for plan in (latest, by_verdict, by_station):
        assert re.search(r"SCAN inspections(?! USING)", plan) is None, plan  # no full scan
    for plan in (latest, by_verdict):
        assert "TEMP B-TREE" not in plan, plan  # ordered by the index, not sorted


def test_prune_dry_run_then_for_real(tmp_path):
    # The store's clock runs 200 days ahead, so that the evidence files written now are
    # older than the cutoff too (their age is their mtime).
    base = datetime.now(UTC) + timedelta(days=200)
    store = RecordStore(
        tmp_path / "records.db", tmp_path / "ev", tmp_path / "spool.db", clock=base.timestamp
    )
    shared, old_only, new_only = image(1), image(2), image(3)
    old = base - timedelta(days=100)
    store.record(
        "OLD-1", "s1", result("OLD-1", Verdict.REJECT, 2), [shared, old_only], captured_at=old
    )
    store.record("OLD-2", "s1", result("OLD-2"), captured_at=old)
    store.record("NEW-1", "s1", result("NEW-1"), [shared, new_only], captured_at=base)
    store.add_review("OLD-1", "s1", "anna", "REJECT")
    store.add_report("OLD-1", "s1", {"verdict": "REJECT"})
    shared_hash, old_hash = store.get("OLD-1", "s1").evidence
    new_hash = store.get("NEW-1", "s1").evidence[1]

    dry = store.prune(timedelta(days=90), dry_run=True)
    assert (dry.parts, dry.inspections, dry.defects, dry.reports, dry.reviews) == (2, 2, 2, 1, 1)
    assert dry.evidence_files == 1 and dry.dry_run
    assert "would remove" in dry.summary()
    assert _rows(store, "inspections") == 3 and store.evidence.find(old_hash) is not None

    real = store.prune(timedelta(days=90))
    assert (real.parts, real.inspections, real.defects, real.reports, real.reviews) == (
        2,
        2,
        2,
        1,
        1,
    )
    assert real.evidence_files == 1 and real.evidence_bytes > 0 and not real.dry_run
    assert store.get("OLD-1", "s1") is None and store.get("NEW-1", "s1") is not None
    assert (_rows(store, "defects"), _rows(store, "reviews"), _rows(store, "reports")) == (0, 0, 0)
    assert store.evidence.find(old_hash) is None
    assert store.evidence.find(shared_hash) is not None  # NEW-1 still refers to it
    assert store.evidence.find(new_hash) is not None
    assert store.prune(timedelta(days=90)).inspections == 0  # nothing left to prune
    with pytest.raises(UserError, match="positive"):
        store.prune(timedelta(0))
    store.close()
