"""Heads fused with a normality model: each model's own threshold lands on 0.5, a region
only the normality model finds is never a PASS, the heads keep their classes, and real
tiny models fuse through their torch detectors."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pytest
from conftest import tiny_normality_model

from inspection.errors import ModelError
from inspection.models.fusion import ANOMALY_CLASS, FusedDetector, fuse, threshold_logit
from inspection.models.outputs import Detection
from inspection.pipeline import decide, defects_from_detection, thresholds_of
from inspection.types import AudioClip, Frame, Verdict

CLASSES = ("scratch", "dent", "color_deviation", "crack", "contamination", "missing_feature")
H, W = 48, 64
FAR = -20.0  # a logit far below any threshold
HEADS_T = {"image": 0.8, "pixel": 0.9, "audio": 0.5}
NORMALITY_T = {"image": 0.7, "pixel": 0.6}
HEADS_META, NORMALITY_META = {"thresholds": HEADS_T}, {"thresholds": NORMALITY_T}


def _detection(classes: tuple[str, ...], anomaly: np.ndarray, image_logit: float) -> Detection:
    """A batch-of-1 detection with the anomaly logit map ``anomaly`` ((H, W)); its class
    channels call every pixel the first class."""
    maps = np.full((1, 1 + len(classes), *anomaly.shape), FAR, np.float32)
    maps[0, 0] = anomaly
    maps[0, 1] = 5.0
    logit = np.array([image_logit], np.float32)
    return Detection(
        maps=maps,
        image_logit=logit,
        class_logits=np.full((1, len(classes)), FAR, np.float32),
        audio_logit=None,
        part_logit=logit,
        patch_tokens=np.zeros((1, 4, 8), np.float32),
        audio_tokens=None,
        grid=(2, 2),
        classes=classes,
    )


@dataclass
class FakeDetector:
    """Returns a prepared detection (a unit test of the fusion alone)."""

    classes: tuple[str, ...]
    thresholds: dict[str, float]
    result: Detection | None = None
    version: str = "fake"
    metadata: dict[str, Any] = field(init=False)

    def __post_init__(self):
        self.metadata = {"thresholds": self.thresholds}

    def detect(self, image, audio=None) -> Detection:
        return self.result


def _fused(heads_map, normality_map, heads_image=FAR, normality_image=FAR) -> FusedDetector:
    heads = FakeDetector(CLASSES, HEADS_T, _detection(CLASSES, heads_map, heads_image))
    normality = FakeDetector(
        (ANOMALY_CLASS,), NORMALITY_T, _detection((ANOMALY_CLASS,), normality_map, normality_image)
    )
    return FusedDetector(heads, normality)


SPEAKS = threshold_logit(NORMALITY_T["image"]) + 1.0  # a part the normality model flags


def _far() -> np.ndarray:
    return np.full((H, W), FAR, np.float32)


def test_each_models_own_threshold_lands_on_one_half():
    heads_map, normality_map = _far(), _far()
    step = 1e-3
    heads_map[0, 0] = threshold_logit(HEADS_T["pixel"]) + step
    heads_map[0, 2] = threshold_logit(HEADS_T["pixel"]) - step
    normality_map[0, 4] = threshold_logit(NORMALITY_T["pixel"]) + step
    normality_map[1, 4] = threshold_logit(NORMALITY_T["image"])  # its region could flag a part
    normality_map[0, 6] = threshold_logit(NORMALITY_T["pixel"]) - step
    # 0.8 is above the normality model's pixel threshold but below the heads': only the
    # model's own threshold counts
    heads_map[0, 8] = normality_map[0, 10] = threshold_logit(0.8)
    detector = _fused(heads_map, normality_map, normality_image=SPEAKS)
    assert detector.metadata["thresholds"] == {"image": 0.5, "pixel": 0.5, "audio": 0.5}
    fused = detector.detect(np.zeros((H, W, 3), np.uint8)).anomaly_map[0]
    assert fused[0, 0] > 0.5 and fused[0, 4] > 0.5 and fused[0, 10] > 0.5
    assert fused[0, 2] < 0.5 and fused[0, 6] < 0.5 and fused[0, 8] < 0.5
    for heads_image, normality_image, flagged in [
        (threshold_logit(HEADS_T["image"]) + step, FAR, True),
        (threshold_logit(HEADS_T["image"]) - step, FAR, False),
        (FAR, threshold_logit(NORMALITY_T["image"]) + step, True),
        (FAR, threshold_logit(NORMALITY_T["image"]) - step, False),
    ]:
        detection = _fused(_far(), _far(), heads_image, normality_image).detect(None)
        assert bool(detection.part_score[0] > 0.5) is flagged
        assert bool(detection.image_score[0] > 0.5) is flagged


def test_a_region_only_the_normality_model_finds_is_never_passed(bracket_standard):
    standard = bracket_standard  # lists no "anomaly" class
    frame = Frame(image=np.full((H, W, 3), 128, np.uint8), camera="test", mm_per_px=0.1)
    normality_map = _far()
    normality_map[20:26, 30:36] = 3.0
    detector = _fused(_far(), normality_map, normality_image=3.0)
    detection = detector.detect(frame.image)
    result = decide(detection, frame, standard, thresholds_of(detector.metadata))
    assert result.verdict is Verdict.REVIEW
    assert [d.defect.defect_class for d in result.decisions] == [ANOMALY_CLASS]
    # the heads alone pass this part: the region is the normality model's find
    alone = detector.heads.detect(frame.image)
    assert decide(alone, frame, standard, thresholds_of(HEADS_META)).verdict is Verdict.PASS


def test_a_region_the_heads_flag_anywhere_keeps_their_class_and_outline():
    heads_map, normality_map = _far(), _far()
    heads_map[10:12, 10:16] = 4.0  # the heads flag a short stroke ...
    normality_map[5:20, 5:20] = 3.0  # ... of a region the normality model sees larger
    normality_map[30:36, 40:46] = 3.0  # and one the heads do not see at all
    normality_map[40, 5] = -1.0  # below its threshold, away from both
    detector = _fused(heads_map, normality_map, normality_image=SPEAKS)
    detection = detector.detect(None)
    defects = defects_from_detection(detection, thresholds_of(detector.metadata), 1.0)
    found = sorted((d.defect_class, d.attributes["area_mm2"]) for d in defects)
    # the heads' 2 x 6 scratch is measured as they outlined it, not as the 15 x 15 blob
    assert found == [(ANOMALY_CLASS, 36.0), ("scratch", 12.0)]
    assert detection.classes == (*CLASSES, ANOMALY_CLASS)
    # away from the normality model's own regions the heads' finer map ranks pixels
    assert detection.maps[0, 0, 40, 5] == pytest.approx(FAR - threshold_logit(HEADS_T["pixel"]))


def test_the_normality_models_own_regions_count_on_a_part_it_flags_itself(bracket_standard):
    """A stray speck over the normality model's pixel threshold, on a part only the heads
    flag (a tolerable colour patch), is not sent to review; on a part the normality model
    flags, the same speck is its find and is."""
    frame = Frame(image=np.full((H, W, 3), 128, np.uint8), camera="test", mm_per_px=0.1)
    heads_map, normality_map = _far(), _far()
    heads_map[5:15, 5:15] = 4.0  # the heads' region: the first class, a scratch
    normality_map[30:33, 40:43] = 3.0  # a speck only the normality model crosses on
    heads_flag = threshold_logit(HEADS_T["image"]) + 1.0
    under = threshold_logit(NORMALITY_T["image"]) - 0.1
    for normality_image, speck in ((under, False), (SPEAKS, True), (float("nan"), True)):
        detector = _fused(heads_map, normality_map, heads_flag, normality_image)
        detection = detector.detect(frame.image)
        thresholds = thresholds_of(detector.metadata)
        classes = {d.defect_class for d in defects_from_detection(detection, thresholds, 0.1)}
        assert (ANOMALY_CLASS in classes) is speck and "scratch" in classes
        assert bool(detection.anomaly_map[0, 31, 41] >= 0.5) is speck
        if not speck:  # decided on the heads' scratch alone
            result = decide(detection, frame, bracket_standard, thresholds)
            assert ANOMALY_CLASS not in [d.defect.defect_class for d in result.decisions]


def test_its_own_regions_count_where_they_could_flag_a_part_by_themselves():
    """On a part the normality model flags for one region, another of its regions that
    stays under its image threshold everywhere (a speck of a good surface just over its
    pixel threshold) is not judged, and the part's record says so; one pixel at the image
    threshold keeps its whole region."""
    faint = (threshold_logit(NORMALITY_T["pixel"]) + threshold_logit(NORMALITY_T["image"])) / 2
    heads_map, normality_map = _far(), _far()
    heads_map[5:15, 5:15] = 4.0  # the heads' scratch
    normality_map[5:15, 5:15] = 3.0  # ... which flags the part for the normality model too
    normality_map[30:33, 40:43] = faint  # a faint speck: under its image threshold
    normality_map[30:33, 50:53] = faint  # a faint speck with one pixel at it
    normality_map[31, 51] = threshold_logit(NORMALITY_T["image"]) + 1e-3
    detection = _fused(heads_map, normality_map, normality_image=SPEAKS).detect(None)
    anomaly = detection.maps[0, 0] >= 0
    assert not anomaly[30:33, 40:43].any()
    assert anomaly[30:33, 50:53].all()
    assert anomaly[5:15, 5:15].all()  # the heads' region, in their outline
    (note,) = detection.notes[0]
    assert note.startswith("1 region(s) only the normality model found stay under")


def test_swapped_models_and_mismatched_detections_are_refused():
    heads = FakeDetector(CLASSES, HEADS_T, _detection(CLASSES, _far(), FAR))
    normality = FakeDetector((ANOMALY_CLASS,), NORMALITY_T, heads.result)
    with pytest.raises(ModelError, match="swapped"):
        FusedDetector(normality, heads)
    full = _detection((ANOMALY_CLASS,), _far(), FAR)
    small = replace(full, maps=full.maps[:, :, :10])  # another image size
    with pytest.raises(ValueError, match="same batch and image size"):
        fuse(
            heads.result,
            small,
            thresholds_of(HEADS_META),
            thresholds_of(NORMALITY_META),
        )


def test_real_tiny_models_fuse_through_their_torch_detectors():
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two threads on a shared 2-core box ran 30x slower
    try:
        _fuse_real_tiny_models(torch)
    finally:
        torch.set_num_threads(threads)


def _fuse_real_tiny_models(torch) -> None:
    from inspection.models.detector import TorchDetector
    from inspection.models.registry import create_model

    torch.manual_seed(0)
    heads_model = create_model("tiny")
    heads_model.metadata = {"thresholds": {"image": 0.6, "pixel": 0.7, "audio": 0.9}}
    normality_model = tiny_normality_model({"image": 0.55, "pixel": 0.65})
    heads, normality = TorchDetector(heads_model), TorchDetector(normality_model)
    detector = FusedDetector(heads, normality)

    image = np.random.default_rng(0).integers(0, 256, (80, 96, 3), dtype=np.uint8)
    clip = AudioClip(np.random.default_rng(1).uniform(-0.1, 0.1, 16000).astype(np.float32))
    fused = detector.detect(image, clip)
    h, n = heads.detect(image, clip), normality.detect(image)
    pixel_h = h.maps[0, 0] - threshold_logit(0.7)
    union = np.maximum(pixel_h, n.maps[0, 0] - threshold_logit(0.65))
    assert fused.maps.shape == (1, 1 + len(h.classes) + 1, 80, 96)
    # the heads' map, but the union in the regions only the normality model found
    theirs = fused.maps[0, -1] > fused.maps[0, 1:-1].max(0)  # the anomaly channel wins
    np.testing.assert_allclose(fused.maps[0, 0][theirs], union[theirs], rtol=0, atol=1e-5)
    np.testing.assert_allclose(fused.maps[0, 0][~theirs], pixel_h[~theirs], rtol=0, atol=1e-5)
    np.testing.assert_allclose(fused.maps[0, 1:-1], h.maps[0, 1:])
    part = max(h.part_logit[0] - threshold_logit(0.6), n.part_logit[0] - threshold_logit(0.55))
    assert fused.part_logit[0] == pytest.approx(part, abs=1e-5)
    assert fused.audio_logit[0] == pytest.approx(h.audio_logit[0], abs=1e-6)
    assert fused.classes == (*heads_model.config.classes, ANOMALY_CLASS)
    assert detector.metadata["thresholds"]["audio"] == 0.9


def _saved_pair(tmp_path):
    """(heads, normality) directories: a tiny heads model and a tiny normality model."""
    torch = pytest.importorskip("torch")
    from inspection.models import save_model
    from inspection.models.registry import create_model

    torch.manual_seed(0)
    heads_dir = save_model(create_model("tiny"), tmp_path / "heads", extra={"thresholds": {}})
    normality = tiny_normality_model({"image": 0.55, "pixel": 0.65})
    return heads_dir, save_model(normality, tmp_path / "normality", extra=normality.metadata)


def test_load_detector_fuses_a_saved_normality_model(tmp_path):
    from inspection.pipeline import load_detector

    heads_dir, normality_dir = _saved_pair(tmp_path)
    detector, metadata = load_detector(heads_dir, normality=normality_dir)
    assert isinstance(detector, FusedDetector) and metadata is detector.metadata
    assert detector.classes[-1] == ANOMALY_CLASS
    assert metadata["fusion"]["normality"]["image"] == 0.55
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert detector.detect(image).maps.shape == (1, 1 + len(detector.classes), 64, 64)
    with pytest.raises(ModelError):
        load_detector(heads_dir, normality=tmp_path / "no-such-model")


def test_two_exported_graphs_fuse_on_an_edge_box_without_torch(tmp_path):
    """A station's ``path: edge.onnx`` with ``normality: normality.onnx``: the fusion runs
    torch-free on ONNX Runtime and finds what the torch models fused find."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime", reason="the edge runtime (edge extra)")
    from edge_guard import run_without_torch

    from inspection.export.onnx import export_onnx
    from inspection.models.detector import TorchDetector
    from inspection.models.registry import create_model
    from inspection.pipeline import load_detector

    torch.manual_seed(0)
    heads = create_model("tiny")
    heads.metadata = {"thresholds": {"image": 0.6, "pixel": 0.7, "audio": 0.9}}
    normality = tiny_normality_model({"image": 0.55, "pixel": 0.65})
    heads_graph = export_onnx(heads, tmp_path / "edge.onnx", with_audio=False)
    normality_graph = export_onnx(normality, tmp_path / "normality.onnx", with_audio=False)
    image = np.random.default_rng(2).integers(0, 256, (80, 96, 3), dtype=np.uint8)
    on_edge, _ = load_detector(heads_graph, normality=normality_graph)
    in_torch = FusedDetector(TorchDetector(heads), TorchDetector(normality))
    edge, reference = on_edge.detect(image), in_torch.detect(image)
    assert on_edge.silhouette is None  # none recorded: the whole frame is judged
    np.testing.assert_allclose(edge.maps, reference.maps, rtol=0, atol=1e-3)
    assert edge.part_logit[0] == pytest.approx(reference.part_logit[0], abs=1e-3)
    done = run_without_torch(f"""
        import numpy as np
        from inspection.pipeline import load_detector
        detector, metadata = load_detector({str(heads_graph)!r}, normality={str(normality_graph)!r})
        maps = detector.detect(np.zeros((80, 96, 3), np.uint8)).maps
        assert maps.shape == (1, {len(edge.classes) + 1}, 80, 96), maps.shape
        assert metadata["thresholds"]["image"] == 0.5
    """)
    assert done.returncode == 0, done.stderr


def test_a_wrong_normality_model_is_a_one_line_error_on_every_command(tmp_path):
    """Missing, or trained heads where the normality model belongs: exit 2, one line,
    nothing decided (so nothing passed) and no output written."""
    torch = pytest.importorskip("torch")
    from typer.testing import CliRunner

    from inspection.cli import app
    from inspection.models import save_model
    from inspection.models.registry import create_model

    torch.manual_seed(0)
    heads = save_model(create_model("tiny"), tmp_path / "heads", extra={"thresholds": {}})
    from inspection.io import write_image

    lot = tmp_path / "lot"
    write_image(lot / "part.png", np.full((64, 64, 3), 128, np.uint8))
    for normality, words in ((tmp_path / "missing", "missing"), (heads, "not a feature")):
        out = tmp_path / "out"
        for args in (
            ["evaluate", "--model", str(heads), "--data", str(lot), "--out", str(out)],
            ["demo", "--model", str(heads), "--out", str(out), "--n", "1"],
            ["audit", str(lot), "--model", str(heads), "--standard", "bracket", "--out", str(out)],
            ["console", "--model", str(heads), "--port", "0"],
            ["second-look", "--model", str(heads), "--good", str(lot)],
        ):
            result = CliRunner().invoke(app, [*args, "--normality", str(normality)])
            assert result.exit_code == 2, (args, result.output)
            assert result.output.count("error:") == 1 and "Traceback" not in result.output
            assert words in result.output or str(normality) in result.output, result.output
            assert not (out / "results.jsonl").exists() and not (out / "metrics.json").exists()
            assert not (heads / "second-look.json").exists()


def test_evaluate_says_which_pretrained_weights_a_fused_figure_starts_from(tmp_path):
    """The console's table and the page name the normality model's weights, their licence
    (and on the page their source and SHA-256): a figure measured on ImageNet features
    says so where it is read."""
    torch = pytest.importorskip("torch")
    from typer.testing import CliRunner

    from inspection.cli import app
    from inspection.models import save_model
    from inspection.models.backbones import get_backbone
    from inspection.models.registry import create_model
    from inspection.synth import synthesize

    torch.manual_seed(0)
    heads = save_model(create_model("tiny"), tmp_path / "heads", extra={"thresholds": {}})
    normality = tiny_normality_model({"image": 0.55, "pixel": 0.65})
    spec = get_backbone("efficientnet-lite0")
    extra = {**normality.metadata, "backbone": spec.provenance}
    normality_dir = save_model(normality, tmp_path / "normality", extra=extra)
    data = tmp_path / "data"
    synthesize(data, n=4, seed=3, product="panel", size=64, train_ratio=0.0, progress=False)
    args = ["evaluate", "--model", str(heads), "--data", str(data), "--no-reports"]
    result = CliRunner().invoke(
        app, [*args, "--out", str(tmp_path / "out"), "--normality", str(normality_dir)]
    )
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.replace("│", " ").split())
    assert "starts from pretrained efficientnet-lite0, Apache-2.0" in said
    assert spec.sha256 in (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    alone = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "alone")])
    assert alone.exit_code == 0 and "starts from" not in alone.output, alone.output


def _second_look(heads_map, heads_image, level) -> FusedDetector:
    heads = FakeDetector(CLASSES, HEADS_T, _detection(CLASSES, heads_map, heads_image))
    normality_map = _far()
    normality_map[30:36, 40:46] = 3.0  # a region only the normality model sees
    normality = FakeDetector(
        (ANOMALY_CLASS,), NORMALITY_T, _detection((ANOMALY_CLASS,), normality_map, FAR)
    )
    return FusedDetector(heads, normality, second_look=level)


def test_a_second_look_measures_the_heads_regions_a_low_part_score_would_pass(
    bracket_standard,
):
    frame = Frame(image=np.full((H, W, 3), 128, np.uint8), camera="test", mm_per_px=0.5)
    pixel = threshold_logit(HEADS_T["pixel"])
    heads_map = _far()
    heads_map[10:13, 10:18] = pixel + 3.0  # a 4 x 1.5 mm scratch: bracket rejects it
    heads_map[40:43, 5:8] = pixel + 1.0  # a faint region, under the level
    under = threshold_logit(HEADS_T["image"]) - 1.0  # the part score passes the part
    results = {}
    for level in (None, 2.0, 4.0):
        detector = _second_look(heads_map, under, level)
        thresholds = thresholds_of(detector.metadata)
        assert (thresholds.region is None) is (level is None)
        detection = detector.detect(frame.image)
        assert detection.part_score[0] < thresholds.image
        results[level] = decide(detection, frame, bracket_standard, thresholds)
    assert results[None].verdict is Verdict.PASS and not results[None].decisions
    # level 2: the scratch only (the faint region and the normality model's are not looked at)
    assert results[2.0].verdict is Verdict.REJECT
    assert [d.defect.defect_class for d in results[2.0].decisions] == ["scratch"]
    assert results[4.0].verdict is Verdict.PASS and not results[4.0].decisions


def test_a_second_look_level_is_set_on_good_parts_and_kept_for_its_heads(tmp_path):
    from inspection.models.fusion import read_second_look, save_second_look, second_look_level

    pixel = threshold_logit(HEADS_T["pixel"])
    peaks = [*np.linspace(-3.0, 2.0, 199).tolist(), 9.0]  # one good part's map far out
    goods = []
    for peak in peaks:
        heads_map = _far()
        heads_map[5, 5] = pixel + peak
        goods.append(FakeDetector(CLASSES, HEADS_T, _detection(CLASSES, heads_map, FAR)))

    class Replay(FakeDetector):  # each good image is the index of its prepared detection
        def detect(self, image, audio=None):
            return goods[int(image)].result

    heads = Replay(CLASSES, HEADS_T)
    level = second_look_level(heads, range(200), target_frr=0.01)
    # 200 goods at 1 %: the 199th smallest passes (the far one does not set the level)
    assert level == pytest.approx(2.0, abs=1e-5)
    # the first 100 goods stay under the pixel threshold: the level is never under it
    assert second_look_level(heads, range(100), target_frr=0.01) == 0.0
    with pytest.raises(ModelError, match="no good images"):
        second_look_level(heads, [])

    save_second_look(tmp_path, "heads-a", level, 200)
    assert read_second_look(tmp_path, "heads-a") == pytest.approx(level)
    assert read_second_look(tmp_path, "heads-b") is None  # set for other heads
    assert read_second_look(tmp_path / "none", "heads-a") is None
    save_second_look(tmp_path, "heads-b", 0.5, 200)  # a second model keeps the first's
    assert read_second_look(tmp_path, "heads-a") == pytest.approx(level)
    assert read_second_look(tmp_path, "heads-b") == pytest.approx(0.5)
    (tmp_path / "second-look.json").write_text('{"heads": "heads-a", "level": 1.5}')
    assert read_second_look(tmp_path, "heads-a") == 1.5  # one written for one model
    save_second_look(tmp_path, "heads-b", 0.5, 200)
    assert read_second_look(tmp_path, "heads-a") == 1.5
    (tmp_path / "second-look.json").write_text('{"levels": {"heads-a": {"level": "high"}}}')
    with pytest.raises(ModelError, match="a number, 0 or more"):
        read_second_look(tmp_path, "heads-a")
    for broken in ('{"levels": [1]}', '{"levels": {"heads-a": 2}}', "[1]", '"x"'):
        (tmp_path / "second-look.json").write_text(broken)
        with pytest.raises(ModelError, match="not a second-look record"):
            read_second_look(tmp_path, "heads-a")
    save_second_look(tmp_path, "heads-a", level, 200)  # set again over a broken file
    assert read_second_look(tmp_path, "heads-a") == pytest.approx(level)
    (tmp_path / "second-look.json").write_text('{"heads": "heads-a", "level": -1}')
    with pytest.raises(ModelError, match="0 or more"):
        read_second_look(tmp_path, "heads-a")
    for level in ('"high"', "true", "[1]"):  # numbers only: a string or a flag is no level
        (tmp_path / "second-look.json").write_text(f'{{"heads": "heads-a", "level": {level}}}')
        with pytest.raises(ModelError, match="a number, 0 or more"):
            read_second_look(tmp_path, "heads-a")
    (tmp_path / "second-look.json").write_text("{not json")
    with pytest.raises(ModelError, match="not a second-look record"):
        read_second_look(tmp_path, "heads-a")
    for level in (float("nan"), "1.5", True):
        with pytest.raises(ModelError, match="0 or more"):
            _second_look(_far(), FAR, level)


def test_the_second_look_command_sets_the_level_every_fused_command_uses(tmp_path):
    from typer.testing import CliRunner

    from inspection.cli import app
    from inspection.io import write_image
    from inspection.models.fusion import read_second_look
    from inspection.pipeline import load_detector

    heads_dir, normality_dir = _saved_pair(tmp_path)
    rng = np.random.default_rng(0)
    good = tmp_path / "good"
    for i in range(3):
        image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        write_image(good / "good" / f"part-{i}.png", image)
    args = ["second-look", "--model", str(heads_dir), "--normality", str(normality_dir)]
    result = CliRunner().invoke(app, [*args, "--good", str(good)])
    assert result.exit_code == 0, result.output
    assert "set on 3 good parts" in " ".join(result.output.split())
    detector, metadata = load_detector(heads_dir, normality=normality_dir)
    level = read_second_look(normality_dir, detector.heads.version)
    assert level is not None and level >= 0
    assert metadata["fusion"]["second_look"] == level
    assert thresholds_of(metadata).region == pytest.approx(1 / (1 + np.exp(-level)))
    broken = tmp_path / "broken"
    shutil.copytree(good, broken)
    (broken / "good" / "part-1.png").write_bytes(b"\x89PNG\r\n\x1a\n cut off")
    for extra, words in (
        (["--good", str(tmp_path / "empty")], "no good images"),
        (["--good", str(good), "--target-frr", "0"], "between 0 and 1"),
        (["--good", str(broken)], "part-1.png"),  # named, and the level kept stays
    ):
        (tmp_path / "empty" / "scratch").mkdir(parents=True, exist_ok=True)
        write_image(tmp_path / "empty" / "scratch" / "a.png", np.zeros((64, 64, 3), np.uint8))
        result = CliRunner().invoke(app, [*args, *extra])
        assert result.exit_code == 2 and result.output.count("error:") == 1, result.output
        assert words in " ".join(result.output.split())
        assert read_second_look(normality_dir, detector.heads.version) == level


def test_a_region_of_the_background_is_dropped_and_one_reaching_into_the_part_kept(
    bracket_standard,
):
    """With the station's silhouette, a region only the normality model finds on the
    belt beside the part neither goes to review nor flags the part; one that reaches into
    the part does, and a NaN map is never capped; without a silhouette both go to
    review."""
    from test_silhouette import H as FH
    from test_silhouette import W as FW
    from test_silhouette import part_frame

    from inspection.silhouette import SILHOUETTE_KEY, learn_silhouette

    rule = learn_silhouette(part_frame(seed) for seed in range(30)).to_dict()
    image = part_frame(99, shift=(0, 0))  # the plate: rows 24-71, columns 28-99
    frame = Frame(image=image, camera="test", mm_per_px=0.1)
    belt, into_part = np.full((FH, FW), FAR, np.float32), np.full((FH, FW), FAR, np.float32)
    belt[4:16, 4:20] = 3.0  # the belt's top-left corner
    into_part[4:40, 40:60] = 3.0  # from the belt well into the plate

    def fused(normality_map, silhouette: bool, part_logit=SPEAKS) -> FusedDetector:
        heads_map = np.full((FH, FW), FAR, np.float32)
        heads = FakeDetector(CLASSES, HEADS_T, _detection(CLASSES, heads_map, FAR))
        found = _detection((ANOMALY_CLASS,), normality_map, part_logit)
        normality = FakeDetector((ANOMALY_CLASS,), NORMALITY_T, found)
        if silhouette:
            normality.metadata[SILHOUETTE_KEY] = rule
        return FusedDetector(heads, normality)

    for normality_map, silhouette, verdict in [
        (belt, True, Verdict.PASS),
        (belt, False, Verdict.REVIEW),
        (into_part, True, Verdict.REVIEW),
    ]:
        detector = fused(normality_map, silhouette)
        assert (detector.metadata["fusion"]["silhouette"] is not None) is silhouette
        detection = detector.detect(image)
        result = decide(detection, frame, bracket_standard, thresholds_of(detector.metadata))
        assert result.verdict is verdict, (silhouette, result.reasons)
        assert bool(detection.part_score[0] >= 0.5) is (verdict is Verdict.REVIEW)
        noted = [r for r in result.reasons if "on the background beside the part" in r]
        assert len(noted) == (verdict is Verdict.PASS)  # the part's record says what was set aside
        if noted:
            assert noted[0].startswith("1 region(s)") and result.reasons[0] == "no defects found"
    calls = []  # a part the normality model does not flag is not outlined: nothing to drop
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("inspection.models.fusion.part_interior", lambda *a: calls.append(a))
        fused(into_part, True, threshold_logit(NORMALITY_T["image"]) - 0.1).detect(image)
        fused(into_part, True).detect(image)
    assert len(calls) == 1
    on_plate_nan = belt.copy()
    on_plate_nan[50, 60] = np.nan
    assert fused(on_plate_nan, True).detect(image).part_score[0] >= 0.5  # not capped
    assert np.isnan(fused(belt, True, float("nan")).detect(image).part_logit[0])


def test_the_stations_rules_travel_with_the_exported_normality_graph(tmp_path):
    """The part's silhouette, and the grain's and the colour patches' searches (which the
    line reads from the fused metadata: a station without the rule is not searched)."""
    pytest.importorskip("onnxruntime", reason="the edge runtime (edge extra)")
    from test_silhouette import part_frame

    from inspection.export.onnx import export_onnx
    from inspection.export.runtime import OnnxDetector
    from inspection.grain import GRAIN_KEY, GrainRule
    from inspection.patches import PATCH_KEY, PatchRule
    from inspection.silhouette import SILHOUETTE_KEY, SilhouetteRule, learn_silhouette

    rule = learn_silhouette(part_frame(seed) for seed in range(30))
    normality = tiny_normality_model({"image": 0.55, "pixel": 0.65})
    heads = FakeDetector(CLASSES, HEADS_T)
    plain = export_onnx(normality, tmp_path / "plain.onnx", with_audio=False)
    unsearched = thresholds_of(FusedDetector(heads, OnnxDetector(plain)).metadata)
    assert not unsearched.grain_scratches and unsearched.colour_patches is None
    normality.metadata[SILHOUETTE_KEY] = rule.to_dict()
    normality.metadata[GRAIN_KEY] = GrainRule(good_parts=200, with_lines=1).to_dict()
    normality.metadata[PATCH_KEY] = PatchRule(good_parts=200, good_max=1.4556).to_dict()
    graph = export_onnx(normality, tmp_path / "normality.onnx", with_audio=False)
    on_edge = FusedDetector(heads, OnnxDetector(graph))
    assert on_edge.silhouette == rule
    assert SilhouetteRule.from_dict(on_edge.metadata["fusion"]["silhouette"]) == rule
    assert on_edge.grain == GrainRule(good_parts=200, with_lines=1)
    assert thresholds_of(on_edge.metadata).grain_scratches
    assert "lines along the grain searched" in on_edge.metadata["calibration_version"]
    assert thresholds_of(on_edge.metadata).colour_patches == PatchRule(200, 1.4556)
    assert "colour patches from ΔE 1.60 searched" in on_edge.metadata["calibration_version"]
