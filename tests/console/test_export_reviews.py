"""``inspection datasets export-reviews``: operator reviews exported as an MVTec AD set,
on a real SQLite record store in tmp_path."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
import typer
from records_helpers import image, result
from typer.testing import CliRunner

from inspection.datasets import load_dataset
from inspection.datasets import reviews as reviews_module
from inspection.datasets.commands import export_reviews_command
from inspection.datasets.reviews import (
    EVIDENCE_MISSING,
    MANIFEST,
    UNDECIDED,
    export_reviews,
    part_name,
)
from inspection.errors import UserError
from inspection.records.store import RecordStore
from inspection.terminal import UserErrorsExit
from inspection.types import BBox, InspectionResult, Verdict

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SIZE = 32
BOX = (4, 6, 10, 12)  # x0, y0, x1, y1: x1, y1 exclusive


def rejected(
    part_id: str, defects: tuple[tuple[str, tuple[int, int, int, int], float, int], ...]
) -> InspectionResult:
    """A machine REJECT with the given ``(class, box, score, frame)`` defects."""
    base = result(part_id, Verdict.REJECT, 1)
    template = base.decisions[0]
    decisions = tuple(
        replace(
            template,
            defect=replace(
                template.defect, defect_class=cls, bbox=BBox(*box), score=score, frame_index=frame
            ),
        )
        for cls, box, score, frame in defects
    )
    return replace(base, decisions=decisions)


def scratch(part_id: str) -> InspectionResult:
    return rejected(part_id, (("scratch", BOX, 0.75, 0),))


@pytest.fixture
def store(tmp_path):
    with RecordStore(
        tmp_path / "records.db",
        tmp_path / "evidence",
        tmp_path / "outbox.db",
        clock=lambda: NOW.timestamp(),
    ) as store:
        yield store


def record(store, part_id, verdict_result, seed, *, station="s1", product="bracket", frames=1):
    images = [image(seed + i, SIZE) for i in range(frames)]
    assert store.record(part_id, station, verdict_result, images, NOW, product=product)
    return images


def evidence_path(store, part_id, station="s1", frame=0) -> Path:
    return store.evidence.find(store.get(part_id, station).evidence[frame])


def manifest(out: Path) -> dict[str, dict]:
    lines = (out / MANIFEST).read_text(encoding="utf-8").splitlines()
    return {entry["part_id"]: entry for entry in map(json.loads, lines)}


def read_mask(path: Path) -> np.ndarray:
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert mask is not None and mask.ndim == 2 and mask.dtype == np.uint8
    return mask


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


# ---------------------------------------------------------------------- decisions


def test_pass_confirmed_goes_to_train_good_byte_for_byte(store, tmp_path):
    record(store, "P-1", result("P-1"), seed=1)
    store.add_review("P-1", "s1", "ana", "PASS", reason="looks fine")
    out = tmp_path / "out"
    summary = export_reviews(store, out)

    name = part_name("s1", "P-1")
    exported = out / "bracket" / "train" / "good" / f"{name}.png"
    assert exported.read_bytes() == evidence_path(store, "P-1").read_bytes()
    assert summary.counts == {"bracket/train/good": 1} and summary.skipped == ()
    assert summary.out == out.resolve()
    line = manifest(out)["P-1"]
    assert line["machine_verdict"] == "PASS" and line["decision"] == "PASS"
    assert line["reviewer"] == "ana" and line["reason"] == "looks fine"
    assert line["class"] == "good" and line["image"] == f"bracket/train/good/{name}.png"
    assert line["mask"] is None and line["mask_source"] is None
    assert not (out / "bracket" / "ground_truth").exists()


def test_reject_confirmed_gets_the_recorded_boxes_as_mask(store, tmp_path):
    record(store, "R-1", scratch("R-1"), seed=2)
    store.add_review("R-1", "s1", "ana", "REJECT")
    out = tmp_path / "out"
    summary = export_reviews(store, out)

    name = part_name("s1", "R-1")
    assert (out / "bracket" / "test" / "scratch" / f"{name}.png").is_file()
    mask = read_mask(out / "bracket" / "ground_truth" / "scratch" / f"{name}_mask.png")
    assert mask.shape == (SIZE, SIZE)
    x0, y0, x1, y1 = BOX
    assert (mask[y0:y1, x0:x1] == 255).all()
    outside = mask.copy()
    outside[y0:y1, x0:x1] = 0
    assert not outside.any()  # x1, y1 exclusive: not one pixel more
    assert summary.counts == {"bracket/test/scratch": 1} and summary.without_mask == 0
    line = manifest(out)["R-1"]
    assert line["mask_source"] == "accepted" and line["class"] == "scratch"
    assert line["mask"] == f"bracket/ground_truth/scratch/{name}_mask.png"


def test_reject_override_with_a_drawn_mask(store, tmp_path):
    record(store, "O-1", result("O-1"), seed=3)  # the machine passed it
    drawn = np.zeros((SIZE, SIZE), np.uint8)
    drawn[20:25, 1:9] = 1  # nonzero marks the defect
    store.add_review("O-1", "s1", "ben", "REJECT", "dent it missed", "dent", drawn)
    out = tmp_path / "out"
    export_reviews(store, out)

    name = part_name("s1", "O-1")
    mask = read_mask(out / "bracket" / "ground_truth" / "dent" / f"{name}_mask.png")
    assert (mask == np.where(drawn > 0, 255, 0)).all()
    line = manifest(out)["O-1"]
    assert line["machine_verdict"] == "PASS" and line["decision"] == "REJECT"
    assert line["class"] == "dent" and line["mask_source"] == "drawn"


def test_reviewer_class_and_drawn_mask_win_over_the_machine(store, tmp_path):
    record(store, "R-2", scratch("R-2"), seed=4)
    drawn = np.zeros((SIZE, SIZE), bool)
    drawn[0:3, 0:3] = True
    store.add_review("R-2", "s1", "ana", "REJECT", defect_class="crack", mask=drawn)
    out = tmp_path / "out"
    export_reviews(store, out)
    mask = read_mask(
        out / "bracket" / "ground_truth" / "crack" / f"{part_name('s1', 'R-2')}_mask.png"
    )
    assert mask[0:3, 0:3].all() and mask.sum() == 9 * 255  # not the recorded box
    assert manifest(out)["R-2"]["mask_source"] == "drawn"


def test_override_to_reject_with_nothing_drawn_has_no_mask(store, tmp_path):
    record(store, "O-2", result("O-2"), seed=5)
    # The machine saw a scratch but only asked for a review: its box was not accepted.
    record(store, "O-4", replace(scratch("O-4"), verdict=Verdict.REVIEW), seed=6)
    store.add_review("O-2", "s1", "ben", "REJECT", "burr")
    store.add_review("O-4", "s1", "ben", "REJECT")
    out = tmp_path / "out"
    summary = export_reviews(store, out)

    assert (out / "bracket" / "test" / "defect" / f"{part_name('s1', 'O-2')}.png").is_file()
    assert (out / "bracket" / "test" / "scratch" / f"{part_name('s1', 'O-4')}.png").is_file()
    assert not (out / "bracket" / "ground_truth").exists()
    assert summary.without_mask == 2 and "2 without a mask" in summary.summary()
    lines = manifest(out)
    assert lines["O-2"]["class"] == "defect" and lines["O-4"]["class"] == "scratch"
    for line in lines.values():
        assert line["mask"] is None and line["mask_source"] is None


def test_review_decision_is_skipped_and_counted(store, tmp_path):
    record(store, "U-1", scratch("U-1"), seed=6)
    record(store, "P-2", result("P-2"), seed=7)
    store.add_review("U-1", "s1", "ana", "REVIEW", "cannot tell")
    store.add_review("P-2", "s1", "ana", "PASS")
    out = tmp_path / "out"
    summary = export_reviews(store, out)

    assert [(s.part_id, s.reason) for s in summary.skipped] == [("U-1", UNDECIDED)]
    assert summary.exported == 1 and set(manifest(out)) == {"P-2"}
    assert f"skipped 1: 1 {UNDECIDED}" in summary.summary()


def test_unreviewed_parts_are_not_exported(store, tmp_path):
    record(store, "N-1", scratch("N-1"), seed=8)
    record(store, "P-3", result("P-3"), seed=9)
    store.add_review("P-3", "s1", "ana", "PASS")
    summary = export_reviews(store, tmp_path / "out")
    assert summary.exported == 1 and summary.skipped == ()


def test_the_latest_review_decides(store, tmp_path):
    record(store, "L-1", scratch("L-1"), seed=10)
    record(store, "L-2", result("L-2"), seed=11)
    store.add_review("L-1", "s1", "ana", "REJECT")
    store.add_review("L-1", "s1", "ben", "PASS", "it was dust")  # supersedes
    store.add_review("L-2", "s1", "ana", "PASS")
    store.add_review("L-2", "s1", "ben", "REVIEW")  # supersedes: no longer exported
    out = tmp_path / "out"
    summary = export_reviews(store, out)

    assert summary.counts == {"bracket/train/good": 1}
    assert [(s.part_id, s.reason) for s in summary.skipped] == [("L-2", UNDECIDED)]
    line = manifest(out)["L-1"]
    assert line["decision"] == "PASS" and line["reviewer"] == "ben"
    assert not (out / "bracket" / "test").exists()


def test_the_frame_of_the_defects_is_exported(store, tmp_path):
    # The stronger defect is on frame 1: export frame 1, masked with frame 1's boxes only.
    defects = (("scratch", (0, 0, 4, 4), 0.4, 0), ("dent", (8, 8, 12, 16), 0.9, 1))
    images = record(store, "F-1", rejected("F-1", defects), seed=12, frames=2)
    store.add_review("F-1", "s1", "ana", "REJECT")
    out = tmp_path / "out"
    export_reviews(store, out)

    name = part_name("s1", "F-1")
    exported = cv2.imread(str(out / "bracket" / "test" / "dent" / f"{name}.png"))
    assert (cv2.cvtColor(exported, cv2.COLOR_BGR2RGB) == images[1]).all()
    mask = read_mask(out / "bracket" / "ground_truth" / "dent" / f"{name}_mask.png")
    assert mask[8:16, 8:12].all() and mask.sum() == 4 * 8 * 255
    assert manifest(out)["F-1"]["frame"] == 1


# ---------------------------------------------------------------------- names and evidence


def test_hostile_part_ids_stay_inside_out_and_distinct(store, tmp_path):
    hostile = ["../x", "a/b", "a_b", "../../../etc/passwd", " spaced ünï/..", ".hidden", "z_mask"]
    for seed, part_id in enumerate(hostile):
        record(store, part_id, result(part_id), seed=20 + seed)
        store.add_review(part_id, "s1", "ana", "PASS")
    record(store, "../up", scratch("../up"), seed=40, station="../st", product="../../prod")
    store.add_review("../up", "../st", "ana", "REJECT", defect_class="../../evil")
    before = files_under(tmp_path) - files_under(tmp_path / "evidence")
    out = tmp_path / "deep" / "out"
    summary = export_reviews(store, out)

    assert summary.exported == len(hostile) + 1 and summary.skipped == ()
    after = files_under(tmp_path) - files_under(tmp_path / "evidence")
    assert {p for p in after - before if not p.startswith("deep/out/")} == set()
    good = sorted((out / "bracket" / "train" / "good").iterdir())
    assert len(good) == len(hostile)  # "a/b" and "a_b" did not collide
    assert all(not p.name.startswith(".") for p in good)  # loaders skip hidden files
    line = manifest(out)["../up"]
    assert ".." not in line["image"].split("/") and ".." not in line["mask"].split("/")
    assert (out / line["image"]).resolve().is_relative_to(out.resolve())
    dataset = load_dataset(out / line["image"].split("/")[0])
    assert [s.mask is not None for s in dataset.samples] == [True]  # the mask pairs up


def test_part_names_are_deterministic_and_safe():
    assert part_name("s1", "a/b") == part_name("s1", "a/b")
    assert part_name("s1", "a/b") != part_name("s1", "a_b")
    assert part_name("s1", "P") != part_name("s2", "P")
    for part_id in ["../x", "ü/..", "", "x" * 300, "a\0b"]:
        name = part_name("st", part_id)
        assert "/" not in name and "\0" not in name and not name.startswith(".")
        assert name.isascii() and len(name) < 150 and not name.endswith("_mask")


def test_missing_evidence_file_skips_that_part(store, tmp_path):
    record(store, "M-1", scratch("M-1"), seed=50)
    record(store, "P-4", result("P-4"), seed=51)
    store.add_review("M-1", "s1", "ana", "REJECT")
    store.add_review("P-4", "s1", "ana", "PASS")
    evidence_path(store, "M-1").unlink()
    out = tmp_path / "out"
    summary = export_reviews(store, out)

    assert [(s.part_id, s.reason) for s in summary.skipped] == [("M-1", EVIDENCE_MISSING)]
    assert set(manifest(out)) == {"P-4"} and summary.counts == {"bracket/train/good": 1}


def test_part_without_evidence_and_missing_drawn_mask_are_skipped(store, tmp_path):
    assert store.record("E-1", "s1", result("E-1"), [], NOW, product="bracket")  # no image
    store.add_review("E-1", "s1", "ana", "PASS")
    record(store, "D-1", result("D-1"), seed=52)
    store.add_review("D-1", "s1", "ana", "REJECT", mask=np.ones((SIZE, SIZE), np.uint8))
    record(store, "D-2", result("D-2"), seed=53)
    store.add_review("D-2", "s1", "ana", "REJECT", mask=np.ones((SIZE // 2, SIZE), np.uint8))
    mask_sha = store.evidence.put(np.full((SIZE, SIZE), 255, np.uint8))
    store.evidence.remove(mask_sha)
    summary = export_reviews(store, tmp_path / "out")

    reasons = {s.part_id: s.reason for s in summary.skipped}
    assert reasons == {
        "E-1": reviews_module.NO_EVIDENCE,
        "D-1": reviews_module.MASK_MISSING,
        "D-2": reviews_module.MASK_SIZE,
    }
    assert summary.exported == 0


# ---------------------------------------------------------------------- filters


def test_station_product_and_time_filters(store, tmp_path):
    record(store, "A", result("A"), seed=60, station="s1", product="bracket")
    record(store, "B", result("B"), seed=61, station="s2", product="bracket")
    record(store, "C", result("C"), seed=62, station="s1", product=None)
    old = result("D")
    assert store.record("D", "s1", old, [image(63, SIZE)], NOW - timedelta(days=10), product="x")
    for part_id, station in [("A", "s1"), ("B", "s2"), ("C", "s1"), ("D", "s1")]:
        store.add_review(part_id, station, "ana", "PASS")

    def exported(name, **filters):
        return set(manifest(export_reviews(store, tmp_path / name, **filters).out))

    assert exported("all") == {"A", "B", "C", "D"}
    assert exported("s2", station="s2") == {"B"}
    assert exported("bracket", product="bracket") == {"A", "B"}
    assert exported("unknown", product="unknown") == {"C"}
    assert (tmp_path / "unknown" / "unknown" / "train" / "good").is_dir()
    assert exported("recent", since=NOW - timedelta(days=1)) == {"A", "B", "C"}
    assert exported("older", until=NOW - timedelta(days=1)) == {"D"}
    with pytest.raises(UserError, match="time zone"):
        export_reviews(store, tmp_path / "naive", since=datetime(2024, 1, 1))


# ---------------------------------------------------------------------- the output folder


def test_non_empty_out_is_refused_unless_overwrite(store, tmp_path):
    record(store, "P-5", result("P-5"), seed=70)
    store.add_review("P-5", "s1", "ana", "PASS")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        export_reviews(store, out)
    assert files_under(out) == {"keep.txt"}

    export_reviews(store, out, overwrite=True)
    assert "keep.txt" not in files_under(out) and MANIFEST in files_under(out)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out")) == []

    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        export_reviews(store, tmp_path / "file", overwrite=True)


def test_an_empty_out_is_used_and_records_are_never_overwritten(store, tmp_path):
    record(store, "P-6", result("P-6"), seed=71)
    store.add_review("P-6", "s1", "ana", "PASS")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert export_reviews(store, empty).exported == 1
    with pytest.raises(UserError, match="holds the records"):
        export_reviews(store, tmp_path, overwrite=True)  # would delete the database
    assert (tmp_path / "records.db").is_file()


def test_a_failed_export_leaves_nothing_behind(store, tmp_path, monkeypatch):
    record(store, "R-3", scratch("R-3"), seed=72)
    store.add_review("R-3", "s1", "ana", "REJECT")
    old = tmp_path / "out"
    old.mkdir()
    (old / "previous.txt").write_text("old export")

    def broken(pixels, dest):
        raise OSError("disk full")

    monkeypatch.setattr(reviews_module, "_write_png", broken)
    with pytest.raises(OSError, match="disk full"):
        export_reviews(store, tmp_path / "new")
    with pytest.raises(OSError, match="disk full"):
        export_reviews(store, old, overwrite=True)
    assert not (tmp_path / "new").exists()
    assert files_under(old) == {"previous.txt"}  # the old export is intact
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith((".new", ".out"))] == []


# ---------------------------------------------------------------------- reading it back


def test_the_export_loads_back_with_masks_paired(store, tmp_path):
    record(store, "P-7", result("P-7"), seed=80)
    record(store, "R-4", scratch("R-4"), seed=81)
    record(store, "O-3", result("O-3"), seed=82)
    store.add_review("P-7", "s1", "ana", "PASS")
    store.add_review("R-4", "s1", "ana", "REJECT")
    store.add_review("O-3", "s1", "ana", "REJECT", defect_class="scratch")  # no mask
    out = tmp_path / "out"
    export_reviews(store, out)

    dataset = load_dataset(out / "bracket")
    assert dataset.layout == "mvtec" and dataset.orphan_masks == ()
    assert dataset.counts() == {"train": {"good": 1}, "test": {"scratch": 2}}
    by_name = {s.image.stem: s for s in dataset.samples}
    reject = by_name[part_name("s1", "R-4")]
    assert reject.mask == out / "bracket" / "ground_truth" / "scratch" / (
        f"{part_name('s1', 'R-4')}_mask.png"
    )
    assert cv2.imread(str(reject.image)).shape[:2] == read_mask(reject.mask).shape
    assert by_name[part_name("s1", "O-3")].mask is None


def test_a_good_sounding_class_is_still_a_defect(store, tmp_path):
    record(store, "K-1", result("K-1"), seed=90)
    store.add_review("K-1", "s1", "ana", "REJECT", defect_class="OK")
    out = tmp_path / "out"
    export_reviews(store, out)
    dataset = load_dataset(out / "bracket")
    assert [s.is_good for s in dataset.samples] == [False]


# ---------------------------------------------------------------------- the command


def cli() -> typer.Typer:
    app = typer.Typer(cls=UserErrorsExit)
    app.command("export-reviews")(export_reviews_command)

    @app.command("noop")  # two commands: typer then expects the command's name
    def noop() -> None: ...

    return app


def test_command_exports_and_prints_one_line(store, tmp_path):
    record(store, "P-8", result("P-8"), seed=100)
    record(store, "U-2", result("U-2"), seed=101)
    store.add_review("P-8", "s1", "ana", "PASS")
    store.add_review("U-2", "s1", "ana", "REVIEW")
    out = tmp_path / "out"
    args = ["export-reviews", "--db", str(tmp_path / "records.db"), "--out", str(out)]
    args += ["--evidence", str(tmp_path / "evidence"), "--spool", str(tmp_path / "outbox.db")]
    runner = CliRunner()

    done = runner.invoke(cli(), [*args, "--since", "2024-05-01", "--station", "s1"])
    assert done.exit_code == 0, done.output
    assert done.output.count("\n") == 1
    assert "exported 1 reviewed parts" in done.output and f"1 {UNDECIDED}" in done.output
    assert set(manifest(out)) == {"P-8"}

    later = runner.invoke(cli(), [*args, "--since", "2024-05-02", "--overwrite"])
    assert later.exit_code == 0, later.output
    assert "exported 0 reviewed parts" in later.output

    refused = runner.invoke(cli(), args)
    assert refused.exit_code == 2 and "not empty" in refused.output
    bad = runner.invoke(cli(), [*args, "--overwrite", "--since", "yesterday"])
    assert bad.exit_code == 2 and "--since must be an ISO date" in bad.output
    missing = ["export-reviews", "--db", str(tmp_path / "nope.db"), "--out", str(out)]
    gone = runner.invoke(cli(), missing)
    assert gone.exit_code == 2 and "no records database" in gone.output
    assert not (tmp_path / "nope.db").exists()
