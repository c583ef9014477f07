"""`inspection records export`: the line's records as CSV or JSON lines."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta

import pytest
from records_helpers import image, result
from typer.testing import CliRunner

from inspection.records.commands import records_app
from inspection.records.export import COLUMNS
from inspection.records.store import RecordStore
from inspection.types import Verdict

runner = CliRunner()
NOW = datetime.now(UTC)


@pytest.fixture
def db(tmp_path):
    """Station s1: REJECT-0..2 (2 scratches each; REJECT-1 overridden to PASS by ana), PASS-0..1,
    GAP-0 never decided, OLD-0 captured 10 days ago; station s2: PASS-0."""
    db = tmp_path / "records.db"
    with RecordStore(db) as store:
        store.record("OLD-0", "s1", result("OLD-0"), captured_at=NOW - timedelta(days=10))
        for i in range(3):
            part = f"REJECT-{i}"
            store.record(part, "s1", result(part, Verdict.REJECT, 2), [image(i)], NOW)
        for i in range(2):
            store.record(f"PASS-{i}", "s1", result(f"PASS-{i}"), captured_at=NOW)
        store.record_not_inspected("GAP-0", "s1", "camera lost", captured_at=NOW)
        store.record("PASS-0", "s2", result("PASS-0"), captured_at=NOW, product="bracket")
        store.add_review("REJECT-1", "s1", "ana", Verdict.REVIEW, "looked again")
        store.add_review("REJECT-1", "s1", "ana", Verdict.PASS, "a smudge, wiped off")
    return db


def test_a_cell_a_spreadsheet_would_run_as_a_formula_stays_text(db, tmp_path):
    formula = '=HYPERLINK("http://example.invalid","open")'
    with RecordStore(db) as store:
        store.record(formula, "s3", result(formula), captured_at=NOW)
        store.add_review(formula, "s3", "bob", Verdict.REJECT, "+1 chip at the edge")
    out, lines = tmp_path / "s3.csv", tmp_path / "s3.jsonl"
    assert _export(db, out, "--station", "s3").exit_code == 0
    assert _export(db, lines, "--station", "s3").exit_code == 0
    with out.open(newline="", encoding="utf-8") as f:
        (row,) = csv.DictReader(f)
    assert (row["part_id"], row["review_reason"]) == (f"'{formula}", "'+1 chip at the edge")
    (kept,) = [json.loads(line) for line in lines.read_text(encoding="utf-8").splitlines()]
    assert kept["part_id"] == formula  # JSON is data, not a sheet: kept as recorded


def _export(db, out, *options):
    return runner.invoke(records_app, ["export", "--db", str(db), "--out", str(out), *options])


def test_every_part_is_a_csv_row_in_recording_order(db, tmp_path):
    out = tmp_path / "parts.csv"
    done = _export(db, out)
    assert done.exit_code == 0, done.output
    assert f"8 parts written to {out}" in done.output
    with out.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == COLUMNS
        rows = list(reader)
    order = ["OLD-0", "REJECT-0", "REJECT-1", "REJECT-2", "PASS-0", "PASS-1", "GAP-0", "PASS-0"]
    assert [r["part_id"] for r in rows] == order
    assert [r["station"] for r in rows] == ["s1"] * 7 + ["s2"]
    rejected = rows[1]
    assert (rejected["verdict"], rejected["defects"], rejected["clauses"]) == (
        "REJECT",
        "2",
        "4.1.0; 4.1.1",
    )
    assert rejected["defect_classes"] == "scratch; scratch" and rejected["evidence"]
    assert rejected["model_version"] == "tiny-abc123" and rejected["review_decision"] == ""
    overridden = rows[2]
    assert (overridden["review_decision"], overridden["reviewer"]) == ("PASS", "ana")
    assert overridden["review_reason"] == "a smudge, wiped off" and overridden["reviewed_at"]
    gap = rows[6]
    assert (gap["verdict"], gap["not_inspected"]) == ("", "camera lost")
    assert rows[7]["product"] == "bracket"


def test_jsonl_keeps_each_defect_whole_and_filters_apply(db, tmp_path):
    out = tmp_path / "rejects.jsonl"
    done = _export(db, out, "--station", "s1", "--verdict", "reject", "--since", "2d")
    assert done.exit_code == 0, done.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["part_id"] for r in rows] == ["REJECT-0", "REJECT-1", "REJECT-2"]
    first = rows[0]["defects"][1]
    assert first["measurements"] == {"length_mm": 3.0, "width_mm": 0.1}
    assert (first["clause"], first["zone"], first["bbox"]) == ("4.1.1", "A", [1, 2, 6, 9])
    assert rows[1]["review"]["decision"] == "PASS"

    older = tmp_path / "older.jsonl"
    until = (NOW - timedelta(days=1)).date().isoformat()
    assert _export(db, older, "--until", until).exit_code == 0
    assert [json.loads(line)["part_id"] for line in older.read_text().splitlines()] == ["OLD-0"]
    brackets = tmp_path / "brackets.csv"
    done = _export(db, brackets, "--product", "bracket")
    assert done.exit_code == 0 and "1 parts written" in done.output
    assert [r["part_id"] for r in csv.DictReader(brackets.read_text().splitlines())] == ["PASS-0"]
    gaps = tmp_path / "gaps.csv"
    assert _export(db, gaps, "--verdict", "NOT_INSPECTED").exit_code == 0
    assert "GAP-0" in gaps.read_text() and "REJECT" not in gaps.read_text()


def test_the_store_pages_through_every_part_once(db):
    with RecordStore(db) as store:
        batches = list(store.iter_parts(batch=3))
        assert [len(b) for b in batches] == [3, 3, 2]
        parts = [(p.station, p.part_id) for b in batches for p in b]
        assert len(set(parts)) == 8
        assert (
            store.latest_reviews(batches[0])[("s1", "REJECT-1")]["reason"] == "a smudge, wiped off"
        )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--verdict", "MAYBE"], "verdict must be PASS, REJECT, REVIEW or NOT_INSPECTED"),
        (["--since", "last week"], "--since must be a period back from now (24h, 7d)"),
        (["--until", "soon"], "--until must be an ISO date or time"),
    ],
)
def test_a_bad_filter_is_one_line_and_writes_nothing(db, tmp_path, options, message):
    done = _export(db, tmp_path / "parts.csv", *options)
    assert done.exit_code == 2 and message in done.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "evidence",
        "records-outbox.db",
        "records.db",
    ]


def test_an_output_it_cannot_write_is_refused_before_the_query(db, tmp_path):
    for out, message in (
        (tmp_path / "parts.xlsx", "the export writes .csv or .jsonl"),
        (tmp_path / "no" / "parts.csv", "no such folder"),
    ):
        done = _export(db, out)
        assert done.exit_code == 2 and message in done.output
        assert not out.exists()
