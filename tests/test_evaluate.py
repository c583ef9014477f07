"""Evaluation outputs, on a tiny model: files, keys, nulls where data cannot tell."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch", reason="evaluation runs a torch model (install the models extra)")

from inspection.evaluate import evaluate
from inspection.measure import measure_region
from inspection.models import create_model, save_model
from inspection.models.backbones import get_backbone
from inspection.models.card import (
    AT_LIMITS_KEYS,
    PRODUCT_CLASSES,
    products_section,
    verify_manifest,
    write_manifest,
    write_model_card,
    write_product_evaluation,
)
from inspection.models.detector import TorchDetector
from inspection.pipeline import thresholds_of
from inspection.synth import synthesize
from inspection.types import DEFECT_CLASSES


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    model = create_model("tiny")
    model.metadata = {"thresholds": {"image": 0.5, "pixel": 0.5, "audio": 0.5}}
    return save_model(model, tmp_path_factory.mktemp("model") / "tiny", extra=model.metadata)


@pytest.fixture(scope="module")
def line(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "panel"
    synthesize(out, n=24, seed=4, product="panel", size=64, workers=1, progress=False)
    return out


def _detector(path: Path):
    from inspection.models import load_model

    model = load_model(path)
    return TorchDetector(model), thresholds_of(model.metadata)


def test_evaluate_writes_metrics_scores_plots_and_page(tiny_model, line, tmp_path):
    detector, thresholds = _detector(tiny_model)
    metrics = evaluate(detector, thresholds, line, tmp_path, progress=False, examples=6)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    for key in (
        "image_auroc",
        "pixel_auroc",
        "pixel_aupro",
        "per_class",
        "false_reject_rate_at_miss_1pct",
        "size_error_mm_median",
        "latency_ms",
    ):
        assert key in saved
    assert 0.0 <= saved["image_auroc"] <= 1.0 and 0.0 <= saved["pixel_auroc"] <= 1.0
    by_class = saved["size_error_mm_median_by_class"]  # the same pairs, split by true class
    assert set(by_class) <= set(saved["classes"])
    assert (saved["size_error_mm_median"] is None) == (not by_class)
    assert saved["latency_ms"]["p50"] > 0
    assert set(saved["per_class"]) <= set(DEFECT_CLASSES)
    for scores in saved["per_class"].values():
        assert set(scores) >= {"accuracy", "precision", "recall", "f1"}
    rows = list(csv.DictReader((tmp_path / "scores.csv").open()))
    assert len(rows) == saved["n_images"] == 12
    assert set(rows[0]) >= {"path", "class", "score", "verdict"}
    assert {r["verdict"] for r in rows} <= {"PASS", "REJECT", "REVIEW"}
    for name in ("roc.png", "pr.png", "confusion.png", "index.html"):
        assert (tmp_path / name).stat().st_size > 0
    assert "data:image/png;base64," in (tmp_path / "index.html").read_text()


def test_dataset_without_masks_gives_nulls_and_broken_files_are_counted(tiny_model, tmp_path):
    root = tmp_path / "folder"
    rng = np.random.default_rng(0)
    for label in ("good", "scuff"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(root / label / f"{i}.png"), rng.integers(0, 255, (50, 70), np.uint8))
    (root / "scuff" / "broken.png").write_bytes(b"not a png")
    detector, thresholds = _detector(tiny_model)
    metrics = evaluate(detector, thresholds, root, tmp_path / "out", split=None, progress=False)
    assert metrics["pixel_auroc"] is None and metrics["pixel_aupro"] is None
    assert metrics["n_errors"] == 1
    assert metrics["image_auroc"] is not None
    # A class the model was never taught has no accuracy, only a detection rate.
    assert metrics["per_class"]["scuff"]["accuracy"] is None
    assert metrics["per_class"]["scuff"]["detected"] is not None


def test_manifest_and_card(tiny_model, line, tmp_path):
    shipped = tmp_path / "shipped"
    shutil.copytree(tiny_model, shipped)
    write_manifest(shipped)
    assert verify_manifest(shipped) == []
    detector, thresholds = _detector(shipped)
    metrics = evaluate(detector, thresholds, line, tmp_path / "eval", progress=False)
    assert metrics["products"] == ["panel"]  # what the per-product table is labelled by
    per_product = {"Per product": products_section([metrics])}
    card = write_model_card(shipped, metrics, "inspection train ...", "A test model.", per_product)
    text = card.read_text()
    assert "image_auroc" in text and "inspection train ..." in text
    row = next(r for r in text.splitlines() if r.startswith("| panel | 12 |"))
    assert f"{metrics['verdict_agreement']:.4f}" in row  # the line's verdicts, not a constant
    recorded = json.loads(write_product_evaluation(shipped, [metrics]).read_text())
    assert recorded["products"]["panel"]["verdict_agreement"] == metrics["verdict_agreement"]
    at_limits = metrics["verdict_at_limits"]  # where the gauge's band was measured
    assert recorded["products"]["panel"].get("verdict_at_limits") == (
        at_limits and {k: at_limits[k] for k in AT_LIMITS_KEYS}
    )
    measured = {"parts": 3, "disagreements": 1, "of": 2, "agreement_clear": 0.9, "clear_parts": 9}
    full = {**measured, "examples": ["a.png"], "rule": "..."}
    for written, kept in (
        (full, measured),  # its figures, not its examples
        ({"parts": 3}, None),  # a hand-edited record: left out
    ):
        edited = json.loads(
            write_product_evaluation(
                tmp_path, [{**metrics, "verdict_at_limits": written}]
            ).read_text()
        )
        assert edited["products"]["panel"].get("verdict_at_limits") == kept
    # the recall: of the parts the standard rejects, the share the line stops
    recall = {c: v["recall"] for c, v in metrics["verdict_reject_recall_by_class"].items()}
    assert recall and recorded["products"]["panel"]["verdict_reject_recall"] == recall
    assert "| scratch reject recall | dent reject recall |" in text
    cells = row.split(" | ")[6:9]  # scratch, dent, color_deviation
    assert cells == [f"{recall[c]:.4f}" if c in recall else "n/a" for c in PRODUCT_CLASSES]
    write_manifest(shipped)
    assert "evaluation.json" in json.loads((shipped / "manifest.json").read_text())["files"]
    assert f"image {thresholds.image:.4g}" in text  # the thresholds the line uses
    weights = shipped / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    assert any("model.safetensors" in p for p in verify_manifest(shipped))


def test_a_fused_evaluation_is_recorded_beside_the_model_alone(tiny_model, line, tmp_path):
    import torch
    from conftest import tiny_normality_model

    from inspection.models.fusion import FusedDetector

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two threads on a shared 2-core box ran 30x slower
    try:
        detector, thresholds = _detector(tiny_model)
        alone = evaluate(detector, thresholds, line, tmp_path / "alone", progress=False)
        normality_model = tiny_normality_model({"image": 0.55, "pixel": 0.65})
        normality_model.metadata["backbone"] = get_backbone("efficientnet-lite0").provenance
        normality = TorchDetector(normality_model)
        fused_detector = FusedDetector(detector, normality)
        fused = evaluate(
            fused_detector,
            thresholds_of(fused_detector.metadata),
            line,
            tmp_path / "fused",
            progress=False,
        )
    finally:
        torch.set_num_threads(threads)
    assert alone["fusion"] is None
    assert fused["fusion"]["normality"]["version"] == normality.version
    recorded = json.loads(write_product_evaluation(tmp_path, [fused, alone]).read_text())
    panel = recorded["products"]["panel"]
    assert panel["verdict_agreement"] == alone["verdict_agreement"]  # whatever the order
    assert panel["fused"]["verdict_agreement"] == fused["verdict_agreement"]
    assert panel["fused"]["normality_version"] == normality.version
    # the pretrained weights every fused figure starts from, said once on the card
    provenance = get_backbone("efficientnet-lite0").provenance
    assert fused["fusion"]["normality"]["backbone"] == provenance
    assert fused["pretrained_weights"] == provenance and alone["pretrained_weights"] is None
    page = (tmp_path / "fused" / "index.html").read_text(encoding="utf-8")
    assert "starts from" in page and provenance["sha256"] in page
    assert "starts from" not in (tmp_path / "alone" / "index.html").read_text(encoding="utf-8")
    assert panel["fused"]["normality_backbone"] == provenance
    said = "The fused rows' normality models start from pretrained `efficientnet-lite0` ("
    assert products_section([alone, fused, fused]).count(said) == 1
    assert provenance["sha256"] in products_section([fused])
    assert "start from" not in products_section([alone])
    for odd in ("x", {"backbone": "efficientnet-lite0"}, {**provenance, "sha256": 3}):
        normality_record = {**fused["fusion"]["normality"], "backbone": odd}
        edited = {**fused, "fusion": {**fused["fusion"], "normality": normality_record}}
        assert "start from" not in products_section([edited])  # a hand-edited record
    # A hand-edited fusion record: still the fused figures, no version, no traceback.
    for broken in ("yes", {"normality": "x"}, {"heads": {}}):
        edited = json.loads(
            write_product_evaluation(tmp_path, [{**fused, "fusion": broken}]).read_text()
        )
        assert edited["products"]["panel"]["fused"]["normality_version"] is None
        assert edited["products"]["panel"]["fused"]["parts"] == fused["n_images"]
    rows = products_section([alone, fused]).splitlines()
    assert any(r.startswith("| panel | 12 |") for r in rows)
    assert any(r.startswith("| panel (fused with its normality model) | 12 |") for r in rows)
    assert panel["fused"]["second_look"] is None  # fused without a second look
    looked = {**fused, "fusion": {**fused["fusion"], "second_look": 1.5}}
    recorded = json.loads(write_product_evaluation(tmp_path, [looked]).read_text())
    assert recorded["products"]["panel"]["fused"]["second_look"] == 1.5
    label = "| panel (fused with its normality model, second look at logit 1.50) | 12 |"
    assert any(r.startswith(label) for r in products_section([looked]).splitlines())
    edited = {**fused, "fusion": {**fused["fusion"], "second_look": "high"}}
    assert "second look" not in products_section([edited])
    rule = {"min_area": 0.5, "max_area": 0.6, "good_parts": 200}
    outlined = {**looked, "fusion": {**looked["fusion"], "silhouette": rule}}
    label = "| panel (fused with its normality model, second look at logit 1.50, the part's"
    assert any(r.startswith(label) for r in products_section([outlined]).splitlines())
    broken = {**looked, "fusion": {**looked["fusion"], "silhouette": "yes"}}
    assert "silhouette" not in products_section([broken])
    # The searches the station's rules switch on are said; a malformed record is not.
    grain = {"good_parts": 200, "with_lines": 0}
    patches = {"good_parts": 200, "good_max": 1.4556}
    searched = {**outlined, "fusion": {**outlined["fusion"], "grain": grain}}
    searched["fusion"]["colour_patches"] = patches
    label = "the part's silhouette, lines along the grain searched, colour patches from ΔE 1.60"
    assert any(label in r for r in products_section([searched]).splitlines())
    broken = {**looked, "fusion": {**looked["fusion"], "grain": "yes", "colour_patches": [1]}}
    assert "searched" not in products_section([broken])


def test_evaluations_with_height_maps_are_recorded_beside_the_photographs_only(tmp_path):
    photographs = {"products": ["tile"], "n_images": 300, "verdict_agreement": 0.90}
    fused = {**photographs, "fusion": {"second_look": 7.3}, "verdict_agreement": 0.903}
    searched = {"image": 0.5, "profiler_dents": True}
    profiled = {**fused, "verdict_agreement": 0.96, "height_maps": 300, "thresholds": searched}
    alone_profiled = {**photographs, "verdict_agreement": 0.94, "height_maps": 299}
    evaluations = [profiled, photographs, alone_profiled, fused]
    tile = json.loads(write_product_evaluation(tmp_path, evaluations).read_text())["products"]
    tile = tile["tile"]
    assert tile["verdict_agreement"] == 0.90 and tile["fused"]["verdict_agreement"] == 0.903
    assert "height_maps" not in tile and "height_maps" not in tile["fused"]
    assert tile["fused_profiler"]["verdict_agreement"] == 0.96
    assert tile["fused_profiler"]["second_look"] == 7.3
    assert tile["fused_profiler"]["height_maps"] == 300
    assert tile["fused_profiler"]["profiler_dents"] is True
    assert tile["profiler"]["verdict_agreement"] == 0.94
    assert tile["profiler"]["profiler_dents"] is False  # no thresholds recorded: not said
    rows = products_section(evaluations).splitlines()
    assert any(r.startswith("| tile | 300 |") for r in rows)
    label = "second look at logit 7.30; with a 3D profiler: 300 height maps, searched for dents) |"
    assert any(label in r for r in rows)
    assert any("| tile (with a 3D profiler: 299 height maps) | 300 |" in r for r in rows)
    # A hand-edited count that is not a number of maps is no profiler.
    for count in ("300", True, None):
        edited = json.loads(
            write_product_evaluation(tmp_path, [{**photographs, "height_maps": count}]).read_text()
        )
        assert set(edited["products"]["tile"]) >= {"verdict_agreement"}
        assert "profiler" not in edited["products"]["tile"]


def test_an_evaluation_with_a_guard_band_says_so_and_what_read_its_dents_depth(tmp_path):
    fused = {"products": ["tile"], "n_images": 300, "fusion": {"second_look": 7.3}}
    shading = {"azimuth_deg": -121.5, "gain": 0.79, "pairs": 24}
    calibrated = {
        **fused,
        "guard_band_given": {"version": "guard band f8", "shading_depth": shading},
    }
    margins = {**fused, "guard_band_given": {"version": "guard band 0d", "shading_depth": None}}
    for given, words, recorded in (
        (calibrated, "; dent depth read from shading, calibrated on 24 limit samples' dents) |",
         {"version": "guard band f8", "shading_depth": shading}),
        (margins, "; guard band 0d) |", {"version": "guard band 0d", "shading_depth": None}),
    ):  # fmt: skip
        assert any(words in r for r in products_section([given]).splitlines())
        entry = json.loads(write_product_evaluation(tmp_path, [given]).read_text())
        assert entry["products"]["tile"]["fused"]["guard_band"] == recorded
    plain = json.loads(write_product_evaluation(tmp_path, [fused]).read_text())
    assert "guard_band" not in plain["products"]["tile"]["fused"]
    edited = {**fused, "guard_band_given": {"version": "v", "shading_depth": {"pairs": "24"}}}
    assert "calibrated" not in products_section([edited])  # a malformed count is not said
    for steep, said in ((23, True), (0, False), ("23", False), (True, False)):
        spots = {**shading, "least_lit": 0.019, "steep": steep}
        given = {**fused, "guard_band_given": {"version": "v", "shading_depth": spots}}
        words = "24 limit samples' dents, dark spots told by 23 steep ones' lit slope) |"
        assert any(words in r for r in products_section([given]).splitlines()) is said


def test_card_shows_thresholds_lifted_to_their_floor():
    from inspection.models.card import _thresholds_line

    lifted = _thresholds_line({"thresholds": {"image": 0.09, "pixel": 0.001, "audio": 4e-8}})
    assert lifted.startswith("image 0.09, pixel 0.5 (recorded 0.001, lifted to its floor)")
    assert "audio 0.5 (recorded 4e-08, lifted to its floor)" in lifted
    kept = _thresholds_line({"thresholds": {"image": 0.4, "pixel": 0.7, "audio": 0.8}})
    assert kept.startswith("image 0.4, pixel 0.7, audio 0.8;") and "lifted" not in kept


def test_card_names_the_starting_model_by_version_not_the_training_machines_path():
    from inspection.models.card import _weights_line

    extra = {"init": "/home/ci/build/models/default", "init_version": "01fef1e8a9ee39f7"}
    line = _weights_line({"config": {}}, extra)
    assert "`01fef1e8a9ee39f7`" in line and "`default`" in line
    assert "/home/ci" not in line
    assert _weights_line({}, {}) == "random weights (trained from scratch)"


def test_a_part_that_rings_wrong_has_the_crack_as_its_main_defect():
    """A crack the maps split into two lines names one of them scratch (the line calls
    one crack only); the tap test, not the stronger line, is what condemns the part."""
    from inspection.evaluate import _main_class
    from inspection.types import Defect

    lines = [Defect("scratch", score=0.99), Defect("crack", score=0.94)]
    detection = None  # not read while there are regions
    assert _main_class(detection, lines, audible=True) == "crack"
    assert _main_class(detection, lines, audible=False) == "scratch"  # the stronger line
    assert _main_class(detection, [Defect("dent", score=0.9)], audible=True) == "dent"


def test_a_region_wider_than_its_scratch_shows_as_width_bias(tmp_path):
    """The measured region is matched to the true scratch through its box, and the gauge's
    width bias is measured - true (positive: over-reads), by class; a truth without a width
    is left out of the bias, not counted as zero."""
    from inspection.datasets import Sample
    from inspection.evaluate import _size_metrics, size_pairs
    from inspection.types import Defect

    mask = np.zeros((40, 60), bool)
    mask[18:22, 10:50] = True  # 40 px long, 4 px wide
    truths = [
        {
            "defect_class": "scratch",
            "bbox": [10, 19, 50, 21],
            "attributes": {"length_mm": 4.0, "width_mm": 0.2},
        },
        {"defect_class": "dent", "bbox": [0, 0, 5, 5], "attributes": {"length_mm": 1.0}},  # no hit
    ]
    sample = Sample(
        tmp_path / "p.png", "scratch", mask=tmp_path / "m.png", attributes={"defects": truths}
    )
    found = [Defect("scratch", {}, mask=mask), Defect("dent", {}, mask=np.zeros_like(mask))]
    pairs = size_pairs(found, sample, mm=0.1)
    assert [p.defect_class for p in pairs] == ["scratch"]
    assert pairs[0].width == pytest.approx(0.4) and pairs[0].true_width == 0.2
    dent = pairs[0]._replace(defect_class="dent", true_width=None)
    sizes = _size_metrics([*pairs, dent])
    assert sizes["width_bias_mm_median_by_class"] == {"scratch": pytest.approx(0.2)}
    assert sizes["size_error_mm_median_by_class"]["scratch"] == pytest.approx(0.0)
    assert sizes["size_pairs"] == 2


def test_a_dent_a_profiler_sized_is_matched_by_its_region_and_measured_on_its_footprint(
    tmp_path,
):
    """The size errors read a dent where the line read it: the map's region finds the true
    dent (the footprint may lie beside the box), the footprint's sizes are compared."""
    from inspection.datasets import Sample
    from inspection.evaluate import size_pairs
    from inspection.types import Defect

    region = np.zeros((40, 60), bool)
    region[10:30, 10:30] = True  # the map's blurred 20 px region
    footprint = np.zeros_like(region)
    footprint[15:25, 15:25] = True  # the depression: 10 px
    truth = {"defect_class": "dent", "bbox": [15, 15, 25, 25], "attributes": {"length_mm": 1.0}}
    sample = Sample(
        tmp_path / "p.png", "dent", mask=tmp_path / "m.png", attributes={"defects": [truth]}
    )
    (pair,) = size_pairs([Defect("dent", {}, mask=region, footprint=footprint)], sample, mm=0.1)
    assert pair.length == pytest.approx(measure_region(footprint, 0.1).length_mm)
    assert pair.length < measure_region(region, 0.1).length_mm


def test_a_malformed_true_size_fails_before_any_work_with_or_without_a_standard(tmp_path):
    """The size errors read the true attributes even where no standard applies: a width
    that is not a number is the dataset's fault, said before any part is scored."""
    from inspection.datasets import DatasetError, Sample
    from inspection.evaluate import exact_verdict

    truth = {"defect_class": "scratch", "bbox": [0, 0, 4, 4], "attributes": {"width_mm": "wide"}}
    sample = Sample(tmp_path / "p.png", "scratch", part_id="p1", attributes={"defects": [truth]})
    with pytest.raises(DatasetError, match=r"p1.*attributes.width_mm must be a number"):
        exact_verdict(None, sample)


def test_cli_an_empty_split_exits_2_with_one_line(tiny_model, tmp_path):
    """Before: ``ValueError: ...: no samples in split 'test'`` with its traceback."""
    from typer.testing import CliRunner

    from inspection.cli import app

    root = tmp_path / "mvtec"
    (root / "train" / "good").mkdir(parents=True)
    (root / "test" / "good").mkdir(parents=True)  # a test split with no images
    image = np.random.default_rng(0).integers(0, 255, (40, 40), np.uint8)
    cv2.imwrite(str(root / "train" / "good" / "0.png"), image)
    args = ["evaluate", "--model", str(tiny_model), "--data", str(root), "--no-verify"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    (line,) = result.stderr.strip().splitlines()
    assert "no samples in split 'test'" in line and str(root) in line


def test_cli_prints_the_verdicts_and_says_when_there_are_none(tiny_model, line, tmp_path):
    from typer.testing import CliRunner

    from inspection.cli import app

    args = ["evaluate", "--model", str(tiny_model), "--data", str(line), "--no-verify"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "verdict_false_reject_rate" in result.stdout and "verdict_agreement" in result.stdout
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    recall = metrics["verdict_reject_recall_by_class"]  # the line has parts to reject
    assert recall and "reject recall" in result.stdout
    assert all(cls in result.stdout for cls in recall)
    # where the verdicts differ, the most common kinds first (a random tiny model differs)
    differ = metrics["verdict_disagreements"]
    assert differ and "disagree" in result.stdout and "why (parts)" in result.stdout
    assert all(sum(c["parts"] for c in d["why"]) <= d["parts"] for d in differ)
    assert differ[0]["examples"][0] in result.stdout
    assert [d["parts"] for d in differ] == sorted((d["parts"] for d in differ), reverse=True)
    # said where the gauge's band was measured (enough defects matched), and only there
    at_limits = bool(metrics["verdict_at_limits"])
    assert ("clear of the gauge's limits" in result.stdout) == at_limits
    assert all((d["at_limits"] is None) != at_limits for d in differ)
    folder = tmp_path / "folder"  # no dataset.yaml: no product, no standard
    for label in ("good", "scratch"):
        (folder / label).mkdir(parents=True)
        cv2.imwrite(str(folder / label / "0.png"), np.full((40, 40), 90, np.uint8))
    args = ["evaluate", "--model", str(tiny_model), "--data", str(folder), "--split", "all"]
    result = CliRunner().invoke(app, [*args, "--no-verify", "--out", str(tmp_path / "f")])
    assert result.exit_code == 0, result.output
    assert "no verdicts" in result.stdout and "--standard" in result.stdout
