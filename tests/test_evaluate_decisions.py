"""``evaluate`` decides as the line does, and bad samples are error rows, not lost runs.

A scripted detector answers each image by its grey level, so every case is exact and no
model is needed.
"""

from __future__ import annotations

import csv
import html
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_pipeline import CLASSES, H, W, _scratch_region, detection

from inspection.datasets import DatasetError, Sample
from inspection.evaluate import Row, evaluate, exact_verdict, mark_at_limits, verdict_cause
from inspection.io import read_image
from inspection.models.outputs import Detection
from inspection.pipeline import Inspector, Thresholds, review_result
from inspection.standards import GuardBand, apply_standard, load_guard_band
from inspection.types import Defect, Frame, Observation

MM_PER_PX = 0.1
THRESHOLDS = Thresholds(version="t1")


@dataclass
class ByShade:
    """A detector whose detection is named by the image's grey level (pixel 0, 0)."""

    scenes: dict[int, Detection | Exception]
    classes: tuple[str, ...] = CLASSES
    version: str = "shade-1"
    seen: list[int] = field(default_factory=list)

    def detect(self, image, audio=None):
        shade = int(np.asarray(image).reshape(-1)[0])
        self.seen.append(shade)
        out = self.scenes[shade]
        if isinstance(out, Exception):
            raise out
        return out


def _scratch_truth(length_px: int) -> dict:
    return {
        "defect_class": "scratch",
        "bbox": [20, 50, 20 + length_px, 52],
        "attributes": {"length_mm": length_px * MM_PER_PX, "width_mm": 0.2},
    }


# shade: (label, detection, exact defects)
SCENES = {
    10: ("good", detection(None, part=0.2), []),
    20: ("scratch", detection(_scratch_region(60)), [_scratch_truth(60)]),  # 6 mm: REJECT
    30: ("scratch", detection(_scratch_region(15)), [_scratch_truth(15)]),  # 1.5 mm: PASS
    40: ("scratch", detection(None, part=0.95), [_scratch_truth(60)]),  # nothing to measure
}


def _write(path: Path, image: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path.name


def _manifest(root: Path, extra: list[dict] | None = None, product: str | None = "bracket"):
    """A manifest of one part per scene (images filled with the scene's shade)."""
    lines = []
    for shade, (label, _, truth) in SCENES.items():
        image = _write(root / f"{shade}.png", np.full((H, W), shade, np.uint8))
        part = {"image": image, "label": label, "split": "test", "part_id": f"p{shade}"}
        lines.append({**part, "mm_per_px": MM_PER_PX, "image_size": [W, H], "defects": truth})
    lines += extra or []
    (root / "manifest.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    if product:
        (root / "dataset.yaml").write_text(f"product: {product}\n")
    return root


def _detector() -> ByShade:
    return ByShade({shade: det for shade, (_, det, _) in SCENES.items()})


def _rows(out: Path) -> dict[str, dict]:
    return {Path(r["path"]).stem: r for r in csv.DictReader((out / "scores.csv").open())}


def test_evaluate_verdicts_are_the_lines(bracket_standard, tmp_path):
    """Before: evaluate rejected every flagged part itself (REJECT for a scratch the
    standard tolerates, REJECT for a part with nothing to measure), never REVIEW."""
    data = _manifest(tmp_path / "data")
    detector = _detector()
    metrics = evaluate(detector, THRESHOLDS, data, tmp_path / "out", progress=False)
    rows = _rows(tmp_path / "out")
    inspector = Inspector(detector, bracket_standard, THRESHOLDS)
    for shade in SCENES:
        frame = Frame(read_image(data / f"{shade}.png"), "st", MM_PER_PX)
        line = inspector.inspect(Observation(f"p{shade}", "st", (frame,)))
        assert rows[str(shade)]["verdict"] == line.verdict.value, shade
    assert [rows[s]["verdict"] for s in ("10", "20", "30", "40")] == [
        "PASS",
        "REJECT",
        "PASS",  # 1.5 mm: within the standard's tolerance
        "REVIEW",  # flagged, but no region to measure
    ]
    assert "no region to measure" in rows["40"]["reasons"]
    assert metrics["verdict_standard"]["id"] == bracket_standard.id
    assert metrics["verdicts"] == {"PASS": 2, "REJECT": 1, "REVIEW": 1}
    assert metrics["verdict_false_reject_rate"] == 0.0  # the good part passes
    assert metrics["verdict_miss_rate"] == pytest.approx(1 / 3)  # the tolerated scratch
    # Exact attributes under the standard: PASS, REJECT, PASS, REJECT; the REVIEW differs.
    assert [rows[s]["exact_verdict"] for s in ("10", "20", "30", "40")] == [
        "PASS",
        "REJECT",
        "PASS",
        "REJECT",
    ]
    assert metrics["verdict_agreement"] == 0.75 and metrics["verdict_agreement_parts"] == 4
    # the one part the standard rejects that was not rejected went to REVIEW, not PASS
    assert metrics["verdict_wrong_pass_rate"] == 0.0
    # both scratches the standard rejects are stopped: one rejected, one sent to REVIEW
    assert metrics["verdict_reject_recall_by_class"] == {"scratch": {"parts": 2, "recall": 1.0}}
    assert metrics["verdict_disagreements"] == [
        {"class": "scratch", "standard": "REJECT", "line": "REVIEW", "parts": 1,
         "at_limits": None,  # two scratches read: too few to measure the gauge's band
         "why": [{"cause": "part score >= threshold but no region to measure", "parts": 1}],
         "examples": ["40.png"]},
    ]  # fmt: skip
    assert metrics["verdict_at_limits"] is None
    # Detection metrics stay the detector's: every defective part is flagged.
    assert metrics["miss_rate_at_threshold"] == 0.0
    assert metrics["false_reject_rate_at_threshold"] == 0.0
    assert metrics["per_class"]["scratch"]["detected"] == 1.0
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["verdicts"] == metrics["verdicts"]
    page = (tmp_path / "out" / "index.html").read_text()
    assert "verdict_agreement" in page and "the line says" in page and "40.png" in page
    assert "no region to measure (1)" in page


def test_a_verdicts_cause_names_the_clause_or_the_parts_own_reason(bracket_standard):
    """What the disagreements table groups parts by: decided alike, the same words."""

    def decided(*defects: tuple[str, dict]) -> str:
        found = [Defect(c, attributes=a, zone="A") for c, a in defects]
        return verdict_cause(apply_standard(bracket_standard, found, "p"))

    scratch = {"length_mm": 6.0, "width_mm": 0.2, "area_mm2": 1.2}
    assert decided() == "nothing found"
    assert decided(("scratch", {**scratch, "length_mm": 1.0})) == "found, within tolerance"
    assert decided(("scratch", scratch)) == "scratch: clause 4.1.1"
    assert decided(("anomaly", scratch)) == "anomaly: no clause"  # a class it does not list
    for score in (0.93, 0.97):  # two parts, two scores: one cause
        reason = f"part score {score} >= threshold 0.909 but no region to measure; needs review"
        cause = verdict_cause(review_result(bracket_standard, "p", reason))
        assert cause == "part score >= threshold but no region to measure"


def test_the_given_standard_decides(bracket_standard, panel_standard, tmp_path):
    data = _manifest(tmp_path / "data", product=None)  # no product: the given one decides
    metrics = evaluate(
        _detector(), THRESHOLDS, data, tmp_path / "out", progress=False, standard=panel_standard
    )
    assert metrics["verdict_standard"]["id"] == panel_standard.id != bracket_standard.id
    assert sum(metrics["verdicts"].values()) == len(SCENES)


def test_without_a_standard_verdict_metrics_are_null_and_say_why(tmp_path):
    data = _manifest(tmp_path / "data", product=None)
    metrics = evaluate(_detector(), THRESHOLDS, data, tmp_path / "out", progress=False)
    for key in ("verdicts", "verdict_false_reject_rate", "verdict_miss_rate", "verdict_agreement"):
        assert metrics[key] is None, key
    assert metrics["verdict_disagreements"] is None
    assert metrics["verdict_reject_recall_by_class"] is None
    assert "no product" in metrics["verdict_note"] and "--standard" in metrics["verdict_note"]
    assert metrics["image_auroc"] is not None  # detection metrics need no standard
    assert {r["verdict"] for r in _rows(tmp_path / "out").values()} == {""}


def test_a_mask_of_another_size_is_one_error_row(tmp_path):
    """Before: IndexError when the example card laid the mask over its image; the run and
    every metric were lost."""
    root = tmp_path / "data"
    image = _write(root / "odd.png", np.full((H, W), 20, np.uint8))
    mask = _write(root / "odd_mask.png", np.full((H // 2, W // 2), 255, np.uint8))
    odd = {"image": image, "mask": mask, "label": "scratch", "split": "test", "part_id": "odd"}
    _manifest(root, [odd])
    metrics = evaluate(_detector(), THRESHOLDS, root, tmp_path / "out", progress=False)
    row = _rows(tmp_path / "out")["odd"]
    assert row["verdict"] == "REVIEW"
    assert "odd_mask.png" in row["error"] and f"{W // 2}x{H // 2}" in row["error"]
    assert metrics["n_errors"] == 1 and metrics["n_images"] == len(SCENES) + 1
    assert metrics["verdicts"]["REVIEW"] == 2  # the error and the part with nothing to measure


def test_undecodable_masks_and_audio_are_error_rows(tmp_path):
    """Before: a mask that did not decode raised InputError out of evaluate."""
    root = tmp_path / "data"
    (root / "junk").mkdir(parents=True)
    (root / "junk" / "bad_mask.png").write_bytes(b"not a png")
    (root / "junk" / "bad.wav").write_bytes(b"RIFF but not audio")
    masked = _write(root / "m.png", np.full((H, W), 20, np.uint8))
    tapped = _write(root / "a.png", np.full((H, W), 10, np.uint8))
    bad = [
        {"image": masked, "mask": "junk/bad_mask.png", "label": "scratch", "part_id": "m"},
        {"image": tapped, "audio": "junk/bad.wav", "label": "good", "part_id": "a"},
    ]
    _manifest(root, bad)
    metrics = evaluate(_detector(), THRESHOLDS, root, tmp_path / "out", progress=False)
    rows = _rows(tmp_path / "out")
    assert "bad_mask.png" in rows["m"]["error"] and "bad.wav" in rows["a"]["error"]
    assert rows["m"]["verdict"] == rows["a"]["verdict"] == "REVIEW"
    assert metrics["n_errors"] == 2
    assert metrics["verdict_false_reject_rate"] == 0.5  # the unreadable good part is not passed


def test_non_finite_scores_are_an_error_row_never_a_pass(tmp_path):
    """Before: NaN >= threshold is False, so a broken score was a PASS."""
    broken = detection(None, part=0.1)
    broken = replace(broken, part_logit=np.array([np.nan], np.float32))
    data = _manifest(tmp_path / "data")
    detector = _detector()
    detector.scenes[10] = broken
    metrics = evaluate(detector, THRESHOLDS, data, tmp_path / "out", progress=False)
    row = _rows(tmp_path / "out")["10"]
    assert row["verdict"] == "REVIEW" and "non-finite" in row["error"]
    assert metrics["n_errors"] == 1


def test_a_bug_in_the_detector_is_raised_not_counted(tmp_path):
    """Before: any ValueError from the model became an error row, hiding bugs."""
    detector = _detector()
    detector.scenes[30] = ValueError("shapes do not match (a bug)")
    with pytest.raises(ValueError, match="a bug"):
        evaluate(detector, THRESHOLDS, _manifest(tmp_path / "data"), tmp_path / "o", progress=False)


def test_an_empty_split_is_a_dataset_error(tmp_path):
    """Before: a plain ValueError, a traceback at the command line."""
    root = tmp_path / "mvtec"
    _write(root / "train" / "good" / "0.png", np.full((H, W), 10, np.uint8))
    (root / "test" / "good").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no samples in split 'test'"):
        evaluate(_detector(), THRESHOLDS, root, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_malformed_exact_attributes_fail_before_any_work(tmp_path):
    root = tmp_path / "data"
    image = _write(root / "b.png", np.full((H, W), 10, np.uint8))
    no_class = [{"attributes": {"length_mm": 3}}]
    bad = {"image": image, "label": "scratch", "split": "test", "part_id": "b", "defects": no_class}
    _manifest(root, [bad])
    detector = _detector()
    with pytest.raises(DatasetError, match=r"b\.png.*defect_class"):
        evaluate(detector, THRESHOLDS, root, tmp_path / "out", progress=False)
    assert detector.seen == []  # refused before the model ran


def test_the_review_band_tradeoff_predicts_what_the_band_does(tmp_path):
    from inspection.pipeline import with_review_band

    # shade: (label, part score, exact defects); none shows a region, all score under 0.5
    parts = {
        10: ("good", 0.08, []),
        15: ("good", 0.25, []),
        20: ("scratch", 0.35, [_scratch_truth(60)]),  # the standard rejects it: a wrong PASS
        25: ("scratch", 0.15, [_scratch_truth(60)]),  # so is this one
        30: ("scratch", 0.45, [_scratch_truth(15)]),  # tolerated
    }
    lines = []
    for shade, (label, _, truth) in parts.items():
        image = _write(tmp_path / "data" / f"{shade}.png", np.full((H, W), shade, np.uint8))
        part = {"image": image, "label": label, "split": "test", "part_id": f"p{shade}"}
        lines.append({**part, "mm_per_px": MM_PER_PX, "image_size": [W, H], "defects": truth})
    (tmp_path / "data" / "manifest.jsonl").write_text("\n".join(map(json.dumps, lines)) + "\n")
    (tmp_path / "data" / "dataset.yaml").write_text("product: bracket\n")
    detector = ByShade({s: detection(None, part=score) for s, (_, score, _) in parts.items()})

    plain = evaluate(detector, THRESHOLDS, tmp_path / "data", tmp_path / "plain", progress=False)
    assert plain["verdicts"] == {"PASS": 5, "REJECT": 0, "REVIEW": 0}
    predicted = {b["from"]: b for b in plain["review_band"]}
    assert predicted[0.3] == {
        "from": 0.3,
        "wrong_pass": 1,
        "caught": 1,
        "good_reviewed": 0,
        "reviews": 2,
    }
    assert predicted[0.1] == {
        "from": 0.1,
        "wrong_pass": 0,
        "caught": 2,
        "good_reviewed": 1,
        "reviews": 4,
    }
    for start in (0.1, 0.2, 0.3):  # what the band then does is what was predicted
        banded = with_review_band(THRESHOLDS, start)
        out = tmp_path / f"band-{start}"
        metrics = evaluate(detector, banded, tmp_path / "data", out, progress=False)
        rows = _rows(out)
        still_passed = sum(
            r["verdict"] == "PASS" and r["exact_verdict"] == "REJECT" for r in rows.values()
        )
        assert metrics["verdicts"]["REVIEW"] == predicted[start]["reviews"]
        assert still_passed == predicted[start]["wrong_pass"]
        assert [b["from"] for b in metrics["review_band"]] == [
            s for s in (0.05, 0.1, 0.2) if s < start
        ]
    assert "what --review-from would change" in (tmp_path / "plain" / "index.html").read_text()


def _scratches_read(root: Path, parts: dict[int, tuple[int, float]]) -> ByShade:
    """A bracket set of one scratch a part, ``{shade: (length read px, true length mm)}``
    (0.1 mm a pixel, zone A), and the detector that reads each at its length."""
    lines = []
    for shade, (length_px, length_mm) in parts.items():
        image = _write(root / f"{shade}.png", np.full((H, W), shade, np.uint8))
        part = {"image": image, "label": "scratch", "split": "test", "part_id": f"p{shade}"}
        truth = {
            "defect_class": "scratch",
            "bbox": [20, 50, 20 + length_px, 52],
            "attributes": {"length_mm": length_mm},
        }
        lines.append({**part, "mm_per_px": MM_PER_PX, "image_size": [W, H], "defects": [truth]})
    (root / "manifest.jsonl").write_text("\n".join(map(json.dumps, lines)) + "\n")
    (root / "dataset.yaml").write_text("product: bracket\n")
    return ByShade({s: detection(_scratch_region(px)) for s, (px, _) in parts.items()})


def test_the_guard_band_is_measured_and_does_what_it_predicts(tmp_path, capsys):
    """Scratches read 0.3 mm off their true length: evaluate measures that band, writes
    it, and predicts that with it a scratch read 1.9 mm (truly 2.2: the standard rejects
    it, a wrong PASS) and one read 1.85 mm (truly 1.8: tolerated) go to review, and one
    read 1.3 mm still passes. Given the file, the line's verdicts do exactly that."""
    from inspection.pipeline import with_guard_band

    parts = {10 * (i + 1): (33 + 4 * i, (30 + 4 * i) / 10) for i in range(8)}  # +0.3 mm
    parts |= {100: (19, 2.2), 110: (13, 1.3), 120: (18, 1.85)}
    detector = _scratches_read(tmp_path / "data", parts)

    plain = evaluate(detector, THRESHOLDS, tmp_path / "data", tmp_path / "plain", progress=False)
    band_file = tmp_path / "plain" / "guard_band.json"
    written = json.loads(band_file.read_text())
    assert written == plain["guard_band"]
    fixed = written["margins"]["scratch"]["length_mm"]
    assert fixed == {"fixed": pytest.approx(0.3), "proportional": 0.0}
    assert written["pairs"] == {"scratch": 11}
    assert plain["guard_band_tradeoff"] == {
        "wrong_pass": 0,
        "caught": 1,
        "good_reviewed": 1,
        "reviews": 2,
        "settled": 0,
        "false_reject": 0,
        "unrejected": 0,
        "rejects_reviewed": 0,
        "toward": 0,  # to REVIEW, not to the standard's REJECT
        "away": 1,  # 120, which the standard passes
        "agreement_before": pytest.approx(10 / 11),
        "agreement": pytest.approx(9 / 11),
        "moved": [  # by name, those away from the standard's verdict first
            {"part": "120.png", "from": "PASS", "to": "REVIEW", "standard": "PASS"},
            {"part": "100.png", "from": "PASS", "to": "REVIEW", "standard": "REJECT"},
        ],
    }
    assert plain["shading_depth_tradeoff"] is None  # no dents: no shading fitted
    rows = _rows(tmp_path / "plain")
    assert [rows[s]["verdict"] for s in ("100", "110", "120")] == ["PASS"] * 3
    page = (tmp_path / "plain" / "index.html").read_text()
    assert "Guard band (--guard-band guard_band.json)" in page and "1 part(s)" in page
    assert "What --guard-band guard_band.json would change on this set, part by part" in page
    # the gauge drawn: every reading against its truth, one panel per band
    assert "The gauge: each reading against the true size" in page
    assert cv2.imread(str(tmp_path / "plain" / "gauge.png")).shape[2] == 3
    from inspection.cli import _print_band_effects, _print_guard_band

    _print_guard_band(plain, tmp_path / "plain")
    _print_band_effects(plain)
    printed = " ".join(capsys.readouterr().out.split())
    assert "scratch: length_mm ±0.3" in printed
    assert "1 part(s) the standard rejects no longer passed (0 passed)" in printed
    assert "agreement with the standard 0.909 -> 0.818" in printed
    assert "120.png PASS -> REVIEW, 100.png PASS -> REVIEW" in printed

    guarded = with_guard_band(THRESHOLDS, band_file)
    metrics = evaluate(detector, guarded, tmp_path / "data", tmp_path / "guarded", progress=False)
    rows = _rows(tmp_path / "guarded")
    assert [rows[s]["verdict"] for s in ("100", "110", "120")] == ["REVIEW", "PASS", "REVIEW"]
    assert "length_mm=1.9 ±0.3" in rows["100"]["reasons"]
    assert "conformance not proven" in rows["100"]["reasons"]
    assert metrics["verdict_wrong_pass_rate"] == 0.0 < plain["verdict_wrong_pass_rate"]
    assert metrics["verdict_agreement"] == pytest.approx(plain["guard_band_tradeoff"]["agreement"])
    assert metrics["guard_band_tradeoff"] is None  # already decided with it
    # what the given band changed, each part decided again without it: the prediction
    given = metrics["guard_band_given"]
    assert given == {
        "file": str(band_file),
        "version": load_guard_band(band_file).version,
        "shading_depth": None,  # a band of margins alone reads no depth from shading
        **plain["guard_band_tradeoff"],
    }
    assert plain["guard_band_given"] is None  # no band given
    page = html.unescape((tmp_path / "guarded" / "index.html").read_text())
    assert f"What the given --guard-band {band_file} changed on this set, part by part" in page


def test_disagreements_within_the_gauges_uncertainty_of_a_limit_are_told_apart(tmp_path):
    """Scratches read 0.3 mm long against bracket's 2 mm limit: a scratch truly 2.2 mm
    read 1.9 (passed: the standard rejects it) lies within the gauge's band of the limit,
    as does one truly 1.85 mm (passed, rightly); a 5 mm scratch the line does not see at
    all is a disagreement clear of every limit. The agreement on the parts clear of the
    limits counts the second kind only."""
    parts = {10 * (i + 1): (33 + 4 * i, (30 + 4 * i) / 10) for i in range(8)}  # +0.3 mm
    parts |= {100: (19, 2.2), 110: (13, 1.3), 120: (18, 1.85), 150: (50, 5.0)}
    detector = _scratches_read(tmp_path / "data", parts)
    detector.scenes[150] = detection(None, part=0.2)  # missed: nothing flagged, PASS
    metrics = evaluate(detector, THRESHOLDS, tmp_path / "data", tmp_path / "out", progress=False)
    rows = _rows(tmp_path / "out")
    assert [rows[s]["verdict"] for s in ("100", "120", "150")] == ["PASS"] * 3
    assert [rows[s]["exact_verdict"] for s in ("100", "120", "150")] == ["REJECT", "PASS", "REJECT"]
    assert [rows[s]["at_limit"] for s in ("100", "110", "120", "150")] == ["yes", "no", "yes", "no"]
    at_limits = metrics["verdict_at_limits"]
    assert {k: v for k, v in at_limits.items() if k != "rule"} == {
        "parts": 2,  # 100 and 120
        "disagreements": 1,  # 100
        "of": 2,  # 100 and 150
        "agreement_clear": pytest.approx(9 / 10),  # 150 is the one clear miss
        "clear_parts": 10,
        "examples": ["100.png"],
    }
    assert metrics["verdict_disagreements"] == [
        {"class": "scratch", "standard": "REJECT", "line": "PASS", "parts": 2, "at_limits": 1,
         "why": [{"cause": "found, within tolerance", "parts": 1},
                 {"cause": "nothing found", "parts": 1}],
         "examples": ["100.png", "150.png"]},
    ]  # fmt: skip
    page = " ".join(html.unescape((tmp_path / "out" / "index.html").read_text()).split())
    assert "verdict agreement clear of the gauge's limits" in page
    assert "0.9000 on 10 parts; 1 of the 2 disagreements lie within the gauge's" in page
    assert "2 (1 at a limit)" in page  # the kind's parts, in the disagreements' table
    listed = page.split("Disagreements within the gauge's uncertainty of a limit")[1]
    listed = listed.split("</table>")[0]
    assert "100.png" in listed and "150.png" not in listed  # part by part, with its reading
    assert "length_mm=1.9" in listed


@pytest.mark.parametrize(
    ("true_delta_e", "line", "at_limit"),
    [
        (1.9, "REJECT", True),  # read 1.6-2.2: REVIEW or REJECT; a reading over 2 rejects
        (1.9, "REVIEW", True),  # ... or reviews: the line agrees
        (1.9, "PASS", False),  # no reading within the band passes it: something was missed
        (1.1, "PASS", True),  # read 0.8-1.4: PASS or REVIEW
        (1.1, "REJECT", False),
        (1.5, "PASS", False),  # read 1.2-1.8: REVIEW whatever the reading
        (None, "REVIEW", False),  # a good part: nothing to read
    ],
)
def test_a_disagreement_is_at_a_limit_only_where_a_reading_in_the_band_gives_it(
    panel_standard, true_delta_e, line, at_limit
):
    """Panel's colour: ΔE over 1 is reviewed (P-5.2), over 2 scrapped (P-5.1); the gauge
    reads ΔE within 0.3 both ways."""
    patch = {"defect_class": "color_deviation", "bbox": [90, 90, 110, 110]}
    truth = [] if true_delta_e is None else [{**patch, "attributes": {"delta_e": true_delta_e}}]
    sample = Sample(
        Path("p.png"), "color_deviation", "test", part_id="p",
        attributes={"defects": truth, "image_size": [W, H]},
    )  # fmt: skip
    exact = exact_verdict(panel_standard, sample)
    row = Row("p.png", sample.label, 0.9, 0.9, None, line, None, 1.0, exact_verdict=exact)
    band = GuardBand({"color_deviation": {"delta_e": (0.3, 0.0)}})
    at_limits = mark_at_limits([row], [sample], panel_standard, band)
    assert row.at_limit is at_limit
    assert at_limits["parts"] == int(at_limit)
    assert at_limits["disagreements"] == int(at_limit and line != exact)
    assert at_limits["clear_parts"] == int(not at_limit)


def test_proving_rejection_is_priced_and_does_what_it_predicts(tmp_path, capsys):
    """Scratches read 0.3 mm long, and one read 0.2 mm short: a scratch read 2.1 mm
    (truly 1.8: the standard passes it, a false REJECT) and one read 2.2 mm (truly 2.4:
    rejected rightly) lie beyond the 2 mm limit by less than the band under them. Proving
    rejection sends both to review, and evaluate says so before a plant chooses it; the
    scratches read far beyond the limit stay rejected."""
    from inspection.cli import _print_band_effects, _print_proven_by_class
    from inspection.pipeline import with_guard_band

    parts = {10 * (i + 1): (33 + 4 * i, (30 + 4 * i) / 10) for i in range(8)}  # +0.3 mm
    parts |= {130: (21, 1.8), 140: (22, 2.4)}
    detector = _scratches_read(tmp_path / "data", parts)
    plain = evaluate(detector, THRESHOLDS, tmp_path / "data", tmp_path / "plain", progress=False)
    proven_file = tmp_path / "plain" / "guard_band_proven.json"
    proving = load_guard_band(proven_file)
    assert proving.prove_rejection
    assert proving.margins == load_guard_band(tmp_path / "plain" / "guard_band.json").margins
    assert plain["guard_band_tradeoff"]["false_reject"] == 1  # 130, read as rejected
    predicted = plain["proven_rejection_tradeoff"]
    assert {k: predicted[k] for k in ("false_reject", "unrejected", "rejects_reviewed")} == {
        "false_reject": 0,
        "unrejected": 1,
        "rejects_reviewed": 1,
    }
    assert {m["part"] for m in predicted["moved"]} == {"130.png", "140.png"}
    # class by class: scratches, the only class here, move as all classes do
    assert plain["proven_rejection_by_class"] == {
        "scratch": {
            "unrejected": 1,
            "rejects_reviewed": 1,
            "false_reject": 0,
            "agreement": pytest.approx(predicted["agreement"]),
        }
    }
    page = html.unescape((tmp_path / "plain" / "index.html").read_text())
    assert "Proving rejection class by class" in page
    _print_band_effects(plain)
    _print_proven_by_class(plain)
    printed = " ".join(capsys.readouterr().out.split())
    assert f"--guard-band {proven_file.name} would change on this set" in printed
    assert "1 it passes sent to review from REJECT (0 still rejected)" in printed
    assert "1 it rejects sent to review from REJECT" in printed
    assert 'proving rejection class by class ("prove_rejection": [classes]' in printed

    guarded = with_guard_band(THRESHOLDS, proven_file)
    metrics = evaluate(detector, guarded, tmp_path / "data", tmp_path / "proven", progress=False)
    rows = _rows(tmp_path / "proven")
    assert [rows[s]["verdict"] for s in ("130", "140", "10", "80")] == [
        "REVIEW",
        "REVIEW",
        "REJECT",
        "REJECT",
    ]
    assert "nonconformance not proven" in rows["130"]["reasons"]
    assert metrics["guard_band_given"]["unrejected"] == 1


def test_the_dispositions_of_parts_both_reject_are_compared(tmp_path):
    """Bracket zone A: a scratch over 5 mm is scrapped, over 2 mm reworked. A 5.5 mm
    scratch read 4.5 mm is rejected by both, but reworked where the standard scraps it:
    milder; one 4.8 mm read 5.5 mm is scrapped where the standard reworks it: harsher."""
    parts = {10: (60, 6.0), 20: (45, 5.5), 30: (55, 4.8), 40: (30, 3.0), 50: (12, 1.2)}
    detector = _scratches_read(tmp_path / "data", parts)

    metrics = evaluate(detector, THRESHOLDS, tmp_path / "data", tmp_path / "out", progress=False)
    assert metrics["verdict_agreement"] == 1.0  # every verdict agrees ...
    kinds = metrics["verdict_dispositions"]  # ... but not every disposition
    assert kinds["parts"] == 4 and kinds["agreement"] == 0.5
    assert kinds["milder"] == {"parts": 1, "by_class": {"scratch": 1}, "examples": ["20.png"]}
    assert kinds["harsher"] == {"parts": 1, "by_class": {"scratch": 1}, "examples": ["30.png"]}
    page = (tmp_path / "out" / "index.html").read_text()
    assert "same 0.500 of 4; milder 1: scratch 1; harsher 1: scratch 1" in page


@pytest.mark.parametrize("counts", [False, True])
def test_a_samples_height_map_gives_depth_and_a_bad_one_is_an_error_row(tmp_path, counts):
    """A dent 1 mm long (within 4.2.2's 1.5 mm): with its height map, 0.1 mm deep, it
    passes; without one, the depth clause sends it to review; a height map of another
    size than the photograph is the sample's fault: an error row, REVIEW. The same with
    a 3D camera's integer counts, read through ``dataset.yaml``'s ``height_encoding``."""
    root = tmp_path / "data"
    yy, xx = np.mgrid[:H, :W]
    d2 = ((yy - 50) ** 2 + (xx - 50) ** 2) / 25
    pit = np.where(d2 <= 1, -0.1 * (1 - d2) ** 2, 0.0).astype(np.float32)
    if counts:  # 1 µm a count, 10 mm at count 0
        pit = np.round((pit + 10.0) * 1000).astype(np.uint16)
    assert cv2.imwrite(str(tmp_path / "pit.tiff"), pit)
    assert cv2.imwrite(str(tmp_path / "small.tiff"), pit[:50])
    truth = {
        "defect_class": "dent",
        "bbox": [45, 45, 56, 56],
        "attributes": {"length_mm": 1.0, "depth_mm": 0.1},
    }
    lines = []
    for shade, height in ((10, "../pit.tiff"), (20, None), (30, "../small.tiff")):
        image = _write(root / f"{shade}.png", np.full((H, W), shade, np.uint8))
        part = {"image": image, "label": "dent", "split": "test", "part_id": f"p{shade}"}
        lines.append(
            {**part, "mm_per_px": MM_PER_PX, "image_size": [W, H], "defects": [truth]}
            | ({"height": height} if height else {})
        )
    (root / "manifest.jsonl").write_text("\n".join(map(json.dumps, lines)) + "\n")
    encoding = "height_encoding: {scale_mm: 0.001, offset_mm: -10}\n" if counts else ""
    (root / "dataset.yaml").write_text("product: bracket\n" + encoding)
    detector = ByShade({s: detection(d2 <= 1, cls="dent") for s in (10, 20, 30)})
    metrics = evaluate(detector, THRESHOLDS, root, tmp_path / "out", progress=False)
    rows = _rows(tmp_path / "out")
    assert [rows[s]["verdict"] for s in ("10", "20", "30")] == ["PASS", "REVIEW", "REVIEW"]
    assert "depth_mm=0.1" in rows["10"]["reasons"]
    assert "needs depth_mm" in rows["20"]["reasons"]
    assert "height map is 100x50 px" in rows["30"]["error"]
    assert metrics["n_errors"] == 1


LIGHT_AZIMUTH_DEG = 240.0  # the test station's light, in the image
SHADING_GAIN = 0.3  # darkening per unit slope facing away from it: 0.31 at 0.4 mm deep


def _shaded_dent(
    shade: int, depth_mm: float, gain: float = SHADING_GAIN, radius_px: float = 6.0
) -> tuple[np.ndarray, np.ndarray]:
    """A grey frame of ``shade`` with a dent ``-depth (1 - d^2)^2`` at (50, 50), shaded by
    a light at :data:`LIGHT_AZIMUTH_DEG` (linearly: the slope facing away from it darker
    by ``gain``, the one facing it lighter), and the dent's region.
    Pixel (0, 0) keeps ``shade``, which names the part to :class:`ByShade`."""
    yy, xx = np.mgrid[:H, :W].astype(np.float64)
    u, v = (xx - 50) / radius_px, (yy - 50) / radius_px
    d2 = u**2 + v**2
    inside = d2 <= 1
    # the height's gradient (mm/mm): d/dx of -D (1 - d2)^2 is 4 D (1 - d2) x / r^2
    slope = np.where(inside, 4 * depth_mm * (1 - d2) / (radius_px * MM_PER_PX), 0.0)
    toward = np.deg2rad(LIGHT_AZIMUTH_DEG)
    rising = slope * (u * np.cos(toward) + v * np.sin(toward))  # height's rise toward the light
    image = np.clip(shade * (1 - gain * rising), 0, 255).round().astype(np.uint8)
    return image, inside


def _dents(root: Path, depths: dict[int, float], spread: float = 0.0) -> ByShade:
    """A bracket set of one 1.2 mm dent a part, ``{shade: depth_mm}``, photographed only,
    and the detector that finds each dent's region. Their surfaces shade by
    :data:`SHADING_GAIN` less, as much and more by ``spread`` in turn (as a glaze's gloss
    varies)."""
    lines, scenes = [], {}
    for i, (shade, depth) in enumerate(depths.items()):
        image, region = _shaded_dent(shade, depth, SHADING_GAIN * (1 + spread * (i % 3 - 1)))
        name = _write(root / f"{shade}.png", image)
        truth = {
            "defect_class": "dent",
            "bbox": [44, 44, 57, 57],
            "attributes": {"length_mm": 1.2, "width_mm": 1.2, "depth_mm": depth},
        }
        part = {"image": name, "label": "dent", "split": "test", "part_id": f"p{shade}"}
        lines.append({**part, "mm_per_px": MM_PER_PX, "image_size": [W, H], "defects": [truth]})
        scenes[shade] = detection(region, cls="dent")
    (root / "manifest.jsonl").write_text("\n".join(map(json.dumps, lines)) + "\n")
    (root / "dataset.yaml").write_text("product: bracket\n")
    return ByShade(scenes)


def test_a_dents_depth_is_read_from_its_shading_once_calibrated(tmp_path, capsys):
    """Bracket zone A scraps a dent deeper than 0.3 mm (4.2.1) and reworks one over 1.5
    mm long (4.2.2): a 1.2 mm dent photographed alone goes to REVIEW, as its depth was
    not measured. Evaluated on dents of known depth, the line fits how the station's
    light shades them (its direction and gain) and the band of that reading, written
    with the guard band, and alone (``shading_depth.json``); given that file, a dent
    0.1 mm deep passes, one 0.4 mm deep is scrapped, one 0.29 mm deep, within the
    reading's band of the limit, is reviewed, and so is one 0.8 mm deep, whose far too
    dark slope (62 %) the shading cannot read a depth from."""
    from inspection.pipeline import with_guard_band

    depths = {90 + 10 * i: 0.04 + 0.04 * i for i in range(10)}  # 0.04 .. 0.4 mm
    calibration = _dents(tmp_path / "calibration", depths, spread=0.1)
    plain = evaluate(
        calibration, THRESHOLDS, tmp_path / "calibration", tmp_path / "fit", progress=False
    )
    assert all("needs depth_mm" in r["reasons"] for r in _rows(tmp_path / "fit").values())
    written = json.loads((tmp_path / "fit" / "guard_band.json").read_text())
    shading = written["shading_depth"]
    assert shading["azimuth_deg"] % 360 == pytest.approx(LIGHT_AZIMUTH_DEG, abs=5)
    assert shading["gain"] == pytest.approx(SHADING_GAIN, rel=0.15)
    assert shading["pairs"] == 10 and plain["guard_band"]["shading_depth"] == shading
    depth_band = written["margins"]["dent"]["depth_mm"]
    assert 0.01 < depth_band["fixed"] + 0.3 * depth_band["proportional"] < 0.06  # the spread
    from inspection.cli import _print_band_effects, _print_guard_band

    _print_guard_band(plain, tmp_path / "fit")
    _print_band_effects(plain)
    printed = " ".join(capsys.readouterr().out.split())
    assert "dent depth from shading" in printed
    assert "--guard-band shading_depth.json would change on this set: agreement" in printed
    page = (tmp_path / "fit" / "index.html").read_text()
    assert "depth_mm read from its shading (light from -120°" in page  # 240°
    alone = json.loads((tmp_path / "fit" / "shading_depth.json").read_text())
    assert alone["margins"] == {"dent": {"depth_mm": depth_band}}  # no other reading banded
    assert alone["shading_depth"] == shading
    # what the file would do on this set, predicted, then done: every dent was in review
    predicted = plain["shading_depth_tradeoff"]
    assert predicted["agreement_before"] == 0.0 and predicted["away"] == 0
    assert predicted["settled"] == predicted["toward"] >= 6 and predicted["wrong_pass"] == 0
    words = "would change on this set, part by part: agreement with the standard 0.000 -> "
    assert words in html.unescape(page)
    with_file = with_guard_band(THRESHOLDS, tmp_path / "fit" / "shading_depth.json")
    again = evaluate(
        calibration, with_file, tmp_path / "calibration", tmp_path / "again", progress=False
    )
    assert again["verdict_agreement"] == pytest.approx(predicted["agreement"])
    assert again["verdicts"]["REVIEW"] == len(depths) - predicted["settled"]
    refit = json.loads((tmp_path / "again" / "shading_depth.json").read_text())  # read again
    assert refit["shading_depth"] == shading and again["shading_depth_tradeoff"] is None
    given = again["guard_band_given"]  # each part decided again without the file: unread
    assert given["agreement_before"] == 0.0 and given["agreement"] == predicted["agreement"]
    assert given["moved"] == predicted["moved"]
    assert given["shading_depth"] == shading  # the record says what read the depths

    detector = _dents(tmp_path / "line", {100: 0.1, 110: 0.4, 120: 0.29, 130: 0.8})
    guarded = with_guard_band(THRESHOLDS, tmp_path / "fit" / "shading_depth.json")
    evaluate(detector, guarded, tmp_path / "line", tmp_path / "guarded", progress=False)
    rows = _rows(tmp_path / "guarded")
    verdicts = [rows[s]["verdict"] for s in ("100", "110", "120", "130")]
    assert verdicts == ["PASS", "REJECT", "REVIEW", "REVIEW"]
    read = float(re.search(r"depth_mm=([0-9.]+)", rows["100"]["reasons"]).group(1))
    assert read == pytest.approx(0.1, rel=0.1) and "4.2.1" in rows["110"]["reasons"]
    assert "conformance not proven" in rows["120"]["reasons"]
    assert "needs depth_mm" in rows["130"]["reasons"]


def test_a_steep_dark_spot_with_no_lit_slope_passes_once_calibrated_on_steep_dents(
    tmp_path, capsys
):
    """Calibrated on 10 gentle dents and MIN_STEEP_DENTS steep ones (0.6-1.0 mm deep, too
    dark to read, each brightening the slope that faces the light), the file records the
    least they brightened the surface, and the evaluation says what it does. Given it, a
    dark spot as dark as a steep dent that brightens nothing (a speck pair the maps call a
    dent, on a good part) reads 0 deep and passes; a steep dent stays in REVIEW. With one
    steep dent too few, the file sets no level and the spot stays in REVIEW."""
    from inspection.cli import _print_guard_band
    from inspection.pipeline import with_guard_band
    from inspection.standards.guard import MIN_STEEP_DENTS

    gentle = {60 + 3 * i: 0.04 + 0.02 * i for i in range(10)}
    steep = {90 + 3 * i: 0.6 + 0.01 * i for i in range(MIN_STEEP_DENTS)}
    calibration = _dents(tmp_path / "calibration", gentle | steep)
    fitted = evaluate(
        calibration, THRESHOLDS, tmp_path / "calibration", tmp_path / "fit", progress=False
    )
    shading = fitted["guard_band"]["shading_depth"]
    assert shading["pairs"] == 10 and shading["steep"] == MIN_STEEP_DENTS
    assert 0.1 < shading["least_lit"] < 0.5  # the steep dents' lit slopes, all
    _print_guard_band(fitted, tmp_path / "fit")
    printed = " ".join(capsys.readouterr().out.split())
    assert f"the least of its {MIN_STEEP_DENTS} steep dents" in printed
    assert (
        f"the least of its {MIN_STEEP_DENTS} steep dents"
        in (tmp_path / "fit" / "index.html").read_text()
    )

    line = tmp_path / "line"
    dent, region = _shaded_dent(110, 0.8)
    spot = np.full_like(dent, 100)
    spot[region] = 40  # as dark as the steep dent's dark slope, lit nowhere
    lines = []
    for shade, image, label, truth in (
        (100, spot, "good", []),
        (110, dent, "dent", [{"defect_class": "dent", "bbox": [44, 44, 57, 57],
                              "attributes": {"length_mm": 1.2, "width_mm": 1.2,
                                             "depth_mm": 0.8}}]),
    ):  # fmt: skip
        part = {"image": _write(line / f"{shade}.png", image), "label": label}
        lines.append({**part, "split": "test", "part_id": f"p{shade}", "mm_per_px": MM_PER_PX,
                      "image_size": [W, H], "defects": truth})  # fmt: skip
    (line / "manifest.jsonl").write_text("\n".join(map(json.dumps, lines)) + "\n")
    (line / "dataset.yaml").write_text("product: bracket\n")
    detector = ByShade({shade: detection(region, cls="dent") for shade in (100, 110)})
    guarded = with_guard_band(THRESHOLDS, tmp_path / "fit" / "shading_depth.json")
    evaluate(detector, guarded, line, tmp_path / "guarded", progress=False)
    rows = _rows(tmp_path / "guarded")
    assert rows["100"]["verdict"] == "PASS" and "depth_mm=0," in rows["100"]["reasons"]
    assert rows["110"]["verdict"] == "REVIEW" and "needs depth_mm" in rows["110"]["reasons"]

    few = _dents(tmp_path / "few", gentle | dict(list(steep.items())[: MIN_STEEP_DENTS - 1]))
    evaluate(few, THRESHOLDS, tmp_path / "few", tmp_path / "few-fit", progress=False)
    unlevelled = json.loads((tmp_path / "few-fit" / "shading_depth.json").read_text())
    assert "least_lit" not in unlevelled["shading_depth"]
    plain = with_guard_band(THRESHOLDS, tmp_path / "few-fit" / "shading_depth.json")
    evaluate(detector, plain, line, tmp_path / "plain", progress=False)
    assert _rows(tmp_path / "plain")["100"]["verdict"] == "REVIEW"


def test_only_a_dent_no_profiler_measured_reads_its_depth_from_shading():
    """The shading reads a dent's depth where nothing else did: a dent the profiler
    measured keeps the profiler's depth, a scratch gets none, and a frame without a
    scale (no mm to read a depth in) leaves the dent as it was, as does a dent too steep
    for its shading to tell its depth."""
    from inspection.pipeline import with_shading_depth
    from inspection.standards.guard import ShadingDepth

    image, region = _shaded_dent(120, 0.2)
    shading = ShadingDepth(LIGHT_AZIMUTH_DEG, SHADING_GAIN)
    frame = Frame(image, "cam", MM_PER_PX)
    read = with_shading_depth(Defect("dent", {"length_mm": 1.2}, mask=region), frame, shading)
    assert read.attributes["depth_mm"] == pytest.approx(0.2, rel=0.1)
    profiled = Defect("dent", {"depth_mm": 0.05}, mask=region)
    assert with_shading_depth(profiled, frame, shading) is profiled
    scratch = Defect("scratch", {"length_mm": 1.2}, mask=region)
    assert with_shading_depth(scratch, frame, shading) is scratch
    unscaled = Defect("dent", {}, mask=region)
    assert with_shading_depth(unscaled, Frame(image, "cam", None), shading) is unscaled
    steep, region = _shaded_dent(120, 0.8)  # its dark slope 62 % under the surface
    unread = Defect("dent", {"length_mm": 1.2}, mask=region)
    assert with_shading_depth(unread, Frame(steep, "cam", MM_PER_PX), shading) is unread


@pytest.mark.parametrize(
    ("region", "cls", "part", "review_from"),
    [
        (_scratch_region(60), "scratch", 0.9, None),  # 6 mm: rejected
        (_scratch_region(15), "scratch", 0.9, None),  # 1.5 mm: tolerated
        (_scratch_region(15), "scratch", 0.9, 0.3),  # over the review band: tolerated
        (_scratch_region(15), "dent", 0.9, None),  # its depth clause open: REVIEW
        (_scratch_region(15), "color_deviation", 0.9, None),
        (_scratch_region(15), "crack", 0.9, None),
    ],
)
def test_a_part_decided_again_with_no_band_keeps_the_lines_verdict(
    bracket_standard, region, cls, part, review_from
):
    """What ``evaluate`` predicts a guard band would do rests on deciding each part again
    from what it kept (its defects without their masks, its part score): with a band of
    no margins that is the line's own verdict."""
    from types import SimpleNamespace

    from inspection.evaluate import _decided, decide_again
    from inspection.pipeline import decide, with_review_band
    from inspection.standards.guard import GuardBand

    thresholds = Thresholds(version="t1")
    if review_from is not None:
        thresholds = with_review_band(thresholds, review_from)
    frame = Frame(np.full((H, W, 3), 128, np.uint8), "cam", 0.1)
    found = detection(region, cls=cls, part=part)
    result = decide(found, frame, bracket_standard, thresholds, "p1")
    assert result.decisions
    kept = _decided(SimpleNamespace(path="p1"), result, bracket_standard, frame.image, {}, 0.1)
    assert all(d.mask is None for d in kept.defects)  # each placed in its zone
    again = decide_again(kept, bracket_standard, thresholds, GuardBand(margins={}))
    assert again is result.verdict
