"""The local audit engine on a real (tiny) model: outputs, bad inputs, batching, resume."""

from __future__ import annotations

import csv
import json
import shutil
import struct
import zipfile
import zlib
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from audit_helpers import MM_PER_PX, STANDARD, by_source, comparable, records
from PIL import Image

from inspection.audit import AuditOptions, audit
from inspection.audit.results import AuditStateError
from inspection.config import get_settings
from inspection.io import HeightEncoding, read_image
from inspection.models import load_model
from inspection.models.detector import TorchDetector
from inspection.pipeline import Inspector, thresholds_of
from inspection.standards import load_standard
from inspection.types import Frame, Observation

OPTIONS = AuditOptions(batch_size=3, workers=2, mm_per_px=MM_PER_PX, progress=False)


def _bomb_png(path: Path, side: int = 20000) -> None:
    """A PNG header declaring side x side pixels and no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))


def _bad_inputs(folder: Path, sample: Path) -> dict[str, str | None]:
    """Every kind of awkward image; the value is the reason expected (None: audited)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.png").write_bytes(b"")
    data = sample.read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    (folder / "text.png").write_text("this is not an image")
    gray = read_image(sample)[:, :, 0] if read_image(sample).ndim == 3 else read_image(sample)
    cv2.imwrite(str(folder / "gray.png"), gray)
    cv2.imwrite(str(folder / "deep16.png"), gray.astype(np.uint16) * 257)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90° clockwise on read
    Image.fromarray(np.ascontiguousarray(gray[:, :64])).save(folder / "rotated.jpg", exif=exif)
    cv2.imwrite(str(folder / "huge.png"), np.zeros((400, 400), np.uint8))
    _bomb_png(folder / "bomb.png")
    return {
        "empty.png": "empty file",
        "truncated.png": "not a readable image",
        "text.png": "not a readable image",
        "gray.png": None,
        "deep16.png": None,
        "rotated.jpg": None,
        "huge.png": "over the pixel budget",
        "bomb.png": "decompression bomb",
    }


@pytest.fixture(scope="module")
def audited(tmp_path_factory, parts, model_dir):
    """One audit of the parts plus every bad input, under a small pixel budget."""
    root = tmp_path_factory.mktemp("input")
    shutil.copytree(parts, root / "lot")
    expected = _bad_inputs(root / "lot" / "odd", next(parts.rglob("*.png")))
    out = tmp_path_factory.mktemp("audit") / "out"
    patch = pytest.MonkeyPatch()
    patch.setenv("INSPECTION_MAX_IMAGE_PIXELS", str(300 * 300))
    get_settings.cache_clear()
    try:
        summary = audit(root / "lot", out, model_dir, STANDARD, OPTIONS)
    finally:
        patch.undo()
        get_settings.cache_clear()
    return root / "lot", out, summary, expected


def test_every_input_gets_one_record_and_the_outputs_agree(audited, parts):
    _, out, summary, expected = audited
    found = by_source(out)
    n_inputs = len(list(parts.rglob("*.png"))) + len(expected)
    assert len(records(out)) == len(found) == summary.parts == n_inputs
    assert summary.new == n_inputs and summary.skipped == 0
    rows = list(csv.DictReader((out / "results.csv").open(encoding="utf-8")))
    assert {r["source"]: r["verdict"] for r in rows} == {k: v["verdict"] for k, v in found.items()}
    assert sum(summary.verdicts.values()) == n_inputs
    assert summary.verdicts["PASS"] > 0 and summary.verdicts["REJECT"] > 0  # both occur


def test_bad_inputs_are_listed_with_their_reason_and_never_pass(audited):
    _, out, summary, expected = audited
    found = by_source(out)
    for name, reason in expected.items():
        record = found[f"odd/{name}"]
        if reason is None:
            assert record["error"] is None, record["error"]
            assert record["scores"], name  # it went through the model
        else:
            assert reason in record["error"], (name, record["error"])
            assert record["verdict"] == "REVIEW" and record["reasons"] == [record["error"]]
    assert summary.unreadable == sum(r is not None for r in expected.values())
    assert (found["odd/rotated.jpg"]["width"], found["odd/rotated.jpg"]["height"]) == (96, 64)
    page = (out / "report.html").read_text(encoding="utf-8")
    for name, reason in expected.items():
        if reason is not None:
            assert f"odd/{name}" in page


def test_records_carry_defects_measurements_clauses_and_versions(audited, model_dir):
    out = audited[1]
    standard = load_standard(STANDARD)
    rejected = [r for r in records(out) if r["verdict"] == "REJECT"]
    assert rejected
    for record in rejected:
        assert record["clauses"] and set(record["clauses"]) <= set(standard.clause_ids)
        cited = {d["clause"] for d in record["defects"]} - {None}
        assert cited == set(record["clauses"])
        assert any("length_mm" in d["measurements"] for d in record["defects"])
        assert record["standard_version"] == standard.version
        assert record["model_version"] == load_model(model_dir).model_version
        assert "report" not in record  # no decoder: no report field
        assert (out / record["overlay"]).is_file() and (out / record["thumbnail"]).is_file()
    for record in records(out):
        if record["verdict"] == "PASS":
            assert "overlay" not in record


def test_batched_verdicts_equal_the_line_inspecting_one_part_at_a_time(audited, model_dir):
    """Tiles of several images share forward passes; each part's verdict, clauses and
    measurements are still those of the line's Inspector on that image alone."""
    lot, out = audited[:2]
    model = load_model(model_dir)
    inspector = Inspector(
        TorchDetector(model), load_standard(STANDARD), thresholds_of(model.metadata)
    )
    found = by_source(out)
    for path in sorted(p for p in lot.glob("*/*.png") if p.parent.name != "odd"):
        source = path.relative_to(lot).as_posix()
        frame = Frame(read_image(path), mm_per_px=MM_PER_PX)
        alone = inspector.inspect(Observation(source, "test", (frame,)))
        record = found[source]
        assert record["verdict"] == alone.verdict.value, source
        assert record["clauses"] == list(alone.clauses), source
        assert record["scores"]["part"] == pytest.approx(alone.scores["part"], abs=1e-5)
        lengths = [d["measurements"].get("length_mm") for d in record["defects"]]
        assert lengths == [d.defect.attributes.get("length_mm") for d in alone.decisions]


def test_a_second_run_skips_every_part_and_a_changed_file_is_audited_again(
    tmp_path, parts, model_dir
):
    lot = tmp_path / "lot"
    shutil.copytree(parts / "good", lot)
    out = tmp_path / "out"
    first = audit(lot, out, model_dir, STANDARD, OPTIONS)
    again = audit(lot, out, model_dir, STANDARD, OPTIONS)
    assert (again.new, again.skipped, again.parts) == (0, first.parts, first.parts)
    changed = sorted(lot.glob("*.png"))[0]
    cv2.imwrite(str(changed), 255 - cv2.imread(str(changed)))
    third = audit(lot, out, model_dir, STANDARD, OPTIONS)
    assert (third.new, third.skipped) == (1, first.parts - 1)
    keys = [r["key"] for r in records(out)]
    assert len(keys) == len(set(keys)) == first.parts + 1  # the old bytes' record stays


def test_a_record_cut_by_a_kill_is_dropped_and_redone(tmp_path, parts, model_dir):
    lot = tmp_path / "lot"
    shutil.copytree(parts / "good", lot)
    out = tmp_path / "out"
    audit(lot, out, model_dir, STANDARD, OPTIONS)
    path = out / "results.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:-1]) + lines[-1][:40], encoding="utf-8")  # cut mid-line
    again = audit(lot, out, model_dir, STANDARD, OPTIONS)
    assert (again.new, again.parts) == (1, len(lines))
    assert [r["key"] for r in records(out)][: len(lines) - 1] == [
        json.loads(line)["key"] for line in lines[:-1]
    ]


def test_an_audit_folder_of_another_model_is_not_resumed(tmp_path, parts, model_dir):
    lot = tmp_path / "lot"
    shutil.copytree(parts / "good", lot)
    out = tmp_path / "out"
    audit(lot, out, model_dir, STANDARD, OPTIONS)
    other = STANDARD.with_name("panel.yaml")
    with pytest.raises(AuditStateError, match="standard"):
        audit(lot, out, model_dir, other, OPTIONS)


def test_an_audit_folder_read_at_another_scale_is_not_resumed(tmp_path, parts, model_dir):
    """Sizes, and so verdicts, depend on the scale and on how height maps read: a resumed
    audit given another refused, where it had reported the first run's verdicts as its
    own (0 parts audited, every one "done before")."""
    lot = tmp_path / "lot"
    shutil.copytree(parts / "good", lot)
    out = tmp_path / "out"
    audit(lot, out, model_dir, STANDARD, replace(OPTIONS, mm_per_px=0.47))
    for changed in (
        replace(OPTIONS, mm_per_px=None),
        replace(OPTIONS, mm_per_px=0.5),
        replace(OPTIONS, mm_per_px=0.47, height_encoding=HeightEncoding(scale_mm=0.001)),
    ):
        with pytest.raises(AuditStateError, match=r"mm_per_px|height_encoding"):
            audit(lot, out, model_dir, STANDARD, changed)
    again = audit(lot, out, model_dir, STANDARD, replace(OPTIONS, mm_per_px=0.47))
    assert again.new == 0  # the same scale resumes
    encoded = replace(OPTIONS, height_encoding=HeightEncoding(scale_mm=0.001, invalid=0))
    audit(lot, tmp_path / "h", model_dir, STANDARD, encoded)
    assert audit(lot, tmp_path / "h", model_dir, STANDARD, encoded).new == 0  # read back


def test_a_zip_is_audited_like_its_folder(tmp_path, parts, model_dir):
    lot = tmp_path / "lot"
    shutil.copytree(parts / "good", lot)
    archive = tmp_path / "lot.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(lot.glob("*.png")):
            zf.write(path, path.name)
        zf.writestr("../escape.png", path.read_bytes())
    folder = audit(lot, tmp_path / "a", model_dir, STANDARD, OPTIONS)
    zipped = audit(archive, tmp_path / "b", model_dir, STANDARD, OPTIONS)
    a, b = by_source(tmp_path / "a"), by_source(tmp_path / "b")
    assert "'..'" in b.pop("../escape.png")["error"]
    assert {k: comparable(v) for k, v in a.items()} == {k: comparable(v) for k, v in b.items()}
    assert zipped.unreadable == 1 and folder.unreadable == 0


def test_an_audit_with_a_normality_model_decides_each_part_as_the_fused_line(
    tmp_path, parts, model_dir
):
    """Fused, the two models tile differently: each part runs alone, and its verdict is
    the line's Inspector's with the same fusion."""
    from conftest import tiny_normality_model

    from inspection.models import save_model
    from inspection.pipeline import load_detector

    normality = tiny_normality_model({"image": 0.55, "pixel": 0.65})
    normality_dir = save_model(normality, tmp_path / "normality", extra=normality.metadata)
    lot = tmp_path / "lot"
    shutil.copytree(parts / "good", lot / "good")
    shutil.copytree(parts / "scratch", lot / "scratch")
    options = AuditOptions(
        batch_size=3, workers=2, mm_per_px=MM_PER_PX, progress=False, normality=normality_dir
    )
    audit(lot, tmp_path / "out", model_dir, STANDARD, options)
    detector, metadata = load_detector(model_dir, normality=normality_dir)
    inspector = Inspector(detector, load_standard(STANDARD), thresholds_of(metadata))
    found = by_source(tmp_path / "out")
    images = sorted(lot.glob("*/*.png"))
    assert len(found) == len(images) > 0
    for path in images:
        source = path.relative_to(lot).as_posix()
        frame = Frame(read_image(path), mm_per_px=MM_PER_PX)
        alone = inspector.inspect(Observation(source, "test", (frame,)))
        assert found[source]["verdict"] == alone.verdict.value, source
        assert found[source]["model_version"].startswith("fused("), source


def test_a_manifests_height_maps_reach_the_decision_and_a_bad_one_is_an_error(
    tmp_path, parts, model_dir
):
    """A manifest naming each part's profiler height map: each item carries it and the
    part is read with it (``pipeline.decide`` reads a dent's depth off it, as tested
    there); one of another size than its photograph is that part's error, never a PASS."""
    from inspection.audit.inputs import iter_inputs

    images = sorted(parts.rglob("*.png"))[:3]
    h, w = read_image(images[0]).shape[:2]
    cv2.imwrite(str(tmp_path / "flat.tiff"), np.zeros((h, w), np.float32))
    cv2.imwrite(str(tmp_path / "small.tiff"), np.zeros((h // 2, w), np.float32))
    lines = [
        {"image": str(path), "part_id": f"P-{i}", "height": name}
        for i, (path, name) in enumerate(
            zip(images, ("flat.tiff", "flat.tiff", "small.tiff"), strict=True)
        )
    ]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    heights = [item.height_map for item in iter_inputs(manifest)]
    assert heights == [str(tmp_path / n) for n in ("flat.tiff", "flat.tiff", "small.tiff")]
    summary = audit(manifest, tmp_path / "out", model_dir, STANDARD, OPTIONS)
    found = {r["part_id"]: r for r in records(tmp_path / "out")}
    assert summary.parts == 3 and summary.unreadable == 1
    assert found["P-0"]["error"] is None and found["P-1"]["error"] is None
    assert "height map is" in found["P-2"]["error"] and found["P-2"]["verdict"] == "REVIEW"


def test_a_dents_footprint_is_drawn_on_its_overlay_and_thumbnail():
    """A dent the profiler measured: its region and, dashed, its footprint, each scaled
    to the picture it is drawn on."""
    from types import SimpleNamespace

    from inspection.audit.engine import PartAuditor
    from inspection.types import Action, Defect, DefectDecision, InspectionResult, Verdict

    region = np.zeros((64, 96), bool)
    region[20:30, 40:52] = True
    footprint = np.zeros((64, 96), bool)
    footprint[18:34, 36:56] = True
    dent = Defect("dent", {"length_mm": 2.0}, mask=region, footprint=footprint)
    scratch = Defect("scratch", {"length_mm": 5.0}, mask=np.roll(region, 30, axis=1))
    result = InspectionResult(
        "p1",
        Verdict.REJECT,
        None,
        Action.REWORK,
        tuple(DefectDecision(d, "A", None, Action.REWORK, "4.2.2", "") for d in (dent, scratch)),
    )
    auditor = SimpleNamespace(detector=SimpleNamespace(classes=("good", "scratch", "dent")))
    for size in ((64, 96), (32, 48)):
        regions, footprints = PartAuditor._regions(auditor, result, (64, 96), size, 1)
        assert [m.shape for m, _, _ in regions] == [size, size]
        ((drawn, colour),) = footprints
        assert drawn.shape == size and colour == regions[0][2]
        assert drawn.sum() == footprint.sum() * (size[0] / 64) ** 2
