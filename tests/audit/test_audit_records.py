"""`inspection audit --db`: audited parts recorded in the line's records database, so the
console lists and opens them as it does the line's."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from audit_helpers import MM_PER_PX, STANDARD, records
from typer.testing import CliRunner

from inspection.cli import app

pytest.importorskip("sqlalchemy", reason="the records database (line extra)")


def _audit(lot, out, model_dir, db, *extra):
    return CliRunner().invoke(
        app,
        ["audit", str(lot), "--model", str(model_dir), "--standard", str(STANDARD),
         "--out", str(out), "--mm-per-px", str(MM_PER_PX), "--batch-size", "4",
         "--db", str(db), *extra],
    )  # fmt: skip


@pytest.fixture
def lot(tmp_path, parts):
    """The synthetic parts of every class, one as a TIFF, and a PNG that is not one."""
    from inspection.io import read_image

    lot = tmp_path / "lot"
    shutil.copytree(parts, lot)
    tiff = next(lot.glob("good/*.png"))
    Image = pytest.importorskip("PIL.Image")
    Image.fromarray(read_image(tiff)).save(tiff.with_suffix(".tif"))
    tiff.unlink()
    (lot / "good" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return lot


def test_every_audited_part_is_recorded_with_its_image(tmp_path, lot, model_dir):
    from inspection.io import read_image
    from inspection.records.store import RecordStore

    db, out = tmp_path / "records.db", tmp_path / "out"
    result = _audit(lot, out, model_dir, db, "--station", "lot7")
    assert result.exit_code == 0, result.output
    audited = {r["part_id"]: r for r in records(out)}
    n = len(audited)
    assert f"records: {n} parts recorded at station 'lot7', 0 recorded before" in result.output

    with RecordStore(db) as store:
        kept = {p.part_id: p for p in store.latest(n=10 * n, station="lot7")}
        assert kept.keys() == audited.keys()
        for part_id, record in audited.items():
            part = kept[part_id]
            assert part.product == "bracket"
            assert (part.verdict, part.reasons) == (record["verdict"], tuple(record["reasons"]))
            assert part.standard_version == record["standard_version"]
            assert part.model_version == record["model_version"]
            found = [(d["defect_class"], d["clause_id"]) for d in part.defects]
            assert found == [(d["defect_class"], d["clause"]) for d in record["defects"]]
            if record["error"] is not None:  # the broken file: REVIEW, no image to keep
                assert part.verdict == "REVIEW" and part.evidence == ()
                continue
            (evidence,) = part.evidence
            path = store.evidence.find(evidence)
            source = lot / record["source"]
            if source.suffix == ".png":  # kept byte for byte
                assert evidence == record["sha256"] and path.read_bytes() == source.read_bytes()
            else:  # a TIFF: its pixels, as PNG
                assert path.suffix == ".png"
                assert np.array_equal(read_image(path), read_image(source))
        assert {p.verdict for p in kept.values()} >= {"PASS", "REVIEW"}


def test_the_console_opens_an_audited_part(tmp_path, lot, model_dir):
    from conftest import STANDARDS_DIR

    from inspection.console.auth import LOCAL_USER
    from inspection.console.service import ConsoleService, ModelSet
    from inspection.console.standards import StandardLibrary
    from inspection.records.store import RecordStore

    db, out = tmp_path / "records.db", tmp_path / "out"
    assert _audit(lot, out, model_dir, db).exit_code == 0
    rejected = next(r for r in records(out) if r["verdict"] == "REJECT")
    with RecordStore(db) as store:
        library = StandardLibrary(store.engine)
        library.seed(STANDARDS_DIR)
        service = ConsoleService(store, library, ModelSet(tmp_path / "none"), workdir=tmp_path)
        view = service.part("audit", rejected["part_id"], LOCAL_USER)
    assert view.missing_evidence is None
    assert view.overlay.shape[:2] == (rejected["height"], rejected["width"])
    assert view.record.verdict == "REJECT" and view.record.defects


def test_a_repeated_audit_records_each_part_once(tmp_path, lot, model_dir):
    from inspection.records.store import RecordStore

    db, out = tmp_path / "records.db", tmp_path / "out"
    first = _audit(lot, out, model_dir, db)
    assert first.exit_code == 0, first.output
    n = len(records(out))
    again = _audit(lot, out, model_dir, db)
    assert again.exit_code == 0, again.output
    assert f"records: 0 parts recorded at station 'audit', {n} recorded before" in again.output
    with RecordStore(db) as store:
        assert len(store.latest(n=10 * n, station="audit")) == n


def test_the_python_api_records_an_audit_as_the_command_does(tmp_path, lot, model_dir):
    from inspection.audit import AuditOptions, audit, record_audit
    from inspection.records.store import RecordStore

    out = tmp_path / "out"
    options = AuditOptions(batch_size=4, workers=1, mm_per_px=MM_PER_PX, progress=False)
    audit(lot, out, model_dir, STANDARD, options)
    audited = {r["part_id"]: r["verdict"] for r in records(out)}
    with RecordStore(tmp_path / "records.db") as store:
        done = record_audit(lot, out, store, "lot7", "bracket", progress=False)
        assert (done.new, done.before, done.pending, done.station) == (len(audited), 0, 0, "lot7")
        kept = store.latest(n=10 * len(audited), station="lot7")
        assert {p.part_id: p.verdict for p in kept} == audited
        again = record_audit(lot, out, store, "lot7", "bracket", progress=False)
        assert (again.new, again.before) == (0, len(audited))


def test_a_junk_database_is_refused_before_the_audit(tmp_path, lot, model_dir):
    db, out = tmp_path / "records.db", tmp_path / "out"
    db.write_bytes(b"these bytes are not a database" * 100)
    result = _audit(lot, out, model_dir, db)
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "records.db" in errors[0], result.output
    assert not out.exists()  # nothing audited
    assert db.read_bytes() == b"these bytes are not a database" * 100


def test_a_database_server_that_does_not_answer_leaves_nothing_behind(
    tmp_path, lot, model_dir, monkeypatch
):
    pytest.importorskip("psycopg", reason="the PostgreSQL driver (line extra)")
    monkeypatch.chdir(tmp_path)  # where a store's default evidence folder and spool would go
    before = sorted(p.name for p in tmp_path.iterdir())
    result = _audit(lot, tmp_path / "out", model_dir, "postgresql+psycopg://nobody@127.0.0.1:1/x")
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--db postgresql+psycopg://nobody@127.0.0.1:1/x" in errors[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no out/, evidence/, spool


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--station", "lot7"], "--station needs --db"),
        (["--station", " ", "--db", "{tmp}/records.db"], "--station must name a station"),
    ],
)
def test_a_station_without_a_database_or_a_name_is_refused(tmp_path, extra, message):
    result = CliRunner().invoke(
        app,
        ["audit", str(tmp_path), "--model", "m", "--standard", str(STANDARD),
         "--out", str(tmp_path / "out"), *(a.format(tmp=tmp_path) for a in extra)],
    )  # fmt: skip
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "out").exists() and not (tmp_path / "records.db").exists()


def test_the_record_index_reads_back_each_record_by_its_key(tmp_path):
    import json

    from inspection.audit.results import RecordIndex

    written = [
        {"key": f"{i:064x}:part-{i}.png", "verdict": "PASS", "note": "é" * i} for i in range(3)
    ]
    lines = [json.dumps(r, ensure_ascii=False) for r in written]
    (tmp_path / "results.jsonl").write_text("\n".join(lines[:2]) + "\n\n" + lines[2] + "\n")
    with RecordIndex(tmp_path) as index:
        assert [index.get(r["key"]) for r in reversed(written)] == written[::-1]
        assert index.get("unread:part-9.png") is None
        assert set(index.offsets) == {r["key"] for r in written}


def test_a_results_record_gives_back_the_result_it_was_written_from():
    """``result_of`` inverts ``audit_record``: what ``--db`` records is the decision the
    audit made, field for field."""
    from conftest import STANDARDS_DIR

    from inspection.audit.engine import LoadedPart, audit_record, result_of
    from inspection.audit.inputs import AuditItem
    from inspection.standards import apply_standard, load_standard
    from inspection.types import BBox, Defect, Frame, InspectionResult

    standard = load_standard(STANDARDS_DIR / "bracket.yaml")
    defects = [
        Defect("scratch", {"length_mm": 12.5, "width_mm": 0.3}, BBox(3, 4, 40, 9), zone="A"),
        Defect(
            "dent",
            {"area_mm2": 0.4, "depth_mm": 0.05},
            BBox(50, 50, 56, 57),
            zone="B",
            footprint_bbox=BBox(48, 49, 58, 59),  # a profiler sized it: its footprint's box
        ),
    ]
    result = apply_standard(standard, defects, part_id="lot/p-1.png")
    result = InspectionResult(**{**result.__dict__, "scores": {"image": 0.9}, "path": "audit"})
    part = LoadedPart(AuditItem("lot/p-1.png", "/x/lot/p-1.png"), "ab" * 32)
    part.frame = Frame(np.zeros((64, 64, 3), np.uint8))
    assert result.decisions and result_of(audit_record(part, result)) == result
    written = {d["defect_class"]: d for d in audit_record(part, result)["defects"]}
    assert written["dent"]["footprint_bbox"] == [48, 49, 58, 59]
    assert "footprint_bbox" not in written["scratch"]  # none where no profiler sized it
