"""Registry and configs: every registered model builds and runs with random weights."""

from __future__ import annotations

import numpy as np
import pytest

from inspection.errors import ModelError
from inspection.models.config import DEFAULT_CLASSES, ModelConfig
from inspection.models.registry import get_config, list_models, load_config, register_model

torch = pytest.importorskip("torch")


def test_shipped_configs_are_registered():
    names = list_models()
    assert {"tiny", "small", "base"} <= set(names)
    base = get_config("base")
    assert (base.width, base.layers, base.heads, base.patch_size) == (768, 12, 12, 16)
    assert (base.audio_width, base.audio_layers, base.audio_heads) == (512, 6, 8)  # whisper base
    assert base.pretrained_image is None and base.pretrained_audio is None
    assert get_config("small").image_size == 256
    assert get_config("tiny").classes == DEFAULT_CLASSES


def test_config_round_trips_through_dict_and_yaml(tmp_path):
    config = get_config("small")
    assert ModelConfig.from_dict(config.to_dict()) == config
    path = tmp_path / "mine.yaml"
    import yaml

    data = config.to_dict() | {"name": "mine"}
    path.write_text(yaml.safe_dump(data))
    assert load_config(path) == config.replace(name="mine")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"image_tower": "resnet"}, "image_tower"),
        ({"image_size": 100}, "multiple"),
        ({"n_mels": 64}, "n_mels"),
        ({"classes": ()}, "classes"),
        ({"image_tower": "timm"}, "timm_model"),
    ],
)
def test_invalid_configs_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        get_config("tiny").replace(**changes)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("smooth_sigma", "lots", "smooth_sigma must be a finite number, not 'lots'"),
        ("topk_fraction", "1e-3", r"YAML reads it as text: write it with a dot"),
        ("topk_fraction", float("nan"), "topk_fraction must be a finite number"),
        ("classes", "scratch", "classes must be a list of names, not 'scratch'"),
        ("feature_stages", [3, "x"], "feature_stages must be a list of whole numbers, not 'x'"),
        ("image_size", 256.5, "image_size must be a whole number"),
        ("image_size", True, "image_size must be a whole number"),
        ("freeze_backbone", "no", "freeze_backbone must be true or false"),
        ("backbone", 3, "backbone must be text"),
        ("width", 0, "width, heads, .* must be >= 1"),
        ("stem_widths", [16, 0], "stem_widths must be >= 1"),
        ("layers", -1, "layers and audio_layers must be >= 0"),
        ("image_std", [0.5, 0.0, 0.5], "image_std > 0"),
    ],
)
def test_fields_of_the_wrong_kind_are_named(field, value, message):
    data = get_config("tiny").to_dict() | {field: value}
    with pytest.raises(ValueError, match=message):
        ModelConfig.from_dict(data)


def test_a_config_file_of_the_wrong_kinds_is_one_clear_error(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("method: padim\nbackbone: efficientnet-lite0\nsmooth_sigma: lots\n")
    with pytest.raises(ModelError, match=r"mine\.yaml: a model config needs image_size"):
        load_config(path)
    path.write_text(path.read_text() + "image_size: 320\n")
    with pytest.raises(ModelError, match=r"mine\.yaml: .*smooth_sigma must be a finite number"):
        load_config(path)
    fitted = get_config("padim-lite0").replace(shape_clusters=np.int64(3))  # set from arrays
    assert fitted.shape_clusters == 3


def test_unknown_names_and_fields_are_refused():
    with pytest.raises(KeyError, match="tiny"):
        get_config("no-such-model")
    with pytest.raises(ValueError, match="colour"):
        ModelConfig.from_dict(get_config("tiny").to_dict() | {"colour": 1})


def test_register_model_makes_a_name_resolvable():
    from inspection.models import create_model

    register_model(get_config("tiny").replace(name="tiny-3cls", classes=("a", "b", "c")))
    model = create_model("tiny-3cls")
    out = model(torch.zeros(1, 3, 64, 64))
    assert out.maps.shape == (1, 4, 64, 64)


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_builds_and_runs(name):
    from inspection.models import create_model

    model = create_model(name)
    c = model.config
    s, k = c.image_size, c.num_classes
    image = torch.randn(1, c.in_chans, s, s)
    mel = torch.randn(1, c.n_mels, c.n_audio_frames)
    with torch.no_grad():
        out = model(image, mel)
    n = out.grid[0] * out.grid[1]
    assert out.maps.shape == (1, 1 + k, s, s)
    if c.is_normality:  # no audio branch; the tokens are the backbone's pooled features
        assert out.audio_logit is None and out.audio_tokens is None
        assert torch.equal(out.part_logit, out.image_logit) and out.class_logits.shape == (1, k)
        assert out.patch_tokens.shape[:2] == (1, n)
        assert all(torch.isfinite(t).all() for t in (out.maps, out.part_logit))
        return
    assert out.image_logit.shape == (1,) and out.part_logit.shape == (1,)
    assert out.class_logits.shape == (1, k)
    assert out.audio_logit.shape == (1,)
    assert out.patch_tokens.shape == (1, n, c.width)  # what the report decoder reads
    assert out.audio_tokens.shape == (1, c.n_audio_ctx, c.audio_width)
    assert all(torch.isfinite(t).all() for t in (out.maps, out.part_logit, out.audio_logit))
    if name == "base":
        assert out.grid == (14, 14) and out.patch_tokens.shape[-1] == 768
        assert 80e6 < model.num_params("image_encoder") < 90e6  # ViT-B/16 tower
