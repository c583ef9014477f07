"""Checkpoints: a base-shaped model round-trips through the path a user's file takes."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from inspection.errors import ModelError  # noqa: E402
from inspection.models import create_model, load_model, read_checkpoint, save_model  # noqa: E402


def _outputs_equal(a, b):
    # Weights are bit-identical (checked below); outputs may differ in the last bits
    # because oneDNN picks kernels by the alignment of the loaded tensors.
    return all(torch.allclose(x, y, rtol=1e-5, atol=1e-5) for x, y in zip(a, b, strict=True))


def _weights_equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _run(model, image, mel):
    with torch.no_grad():
        out = model(image, mel)
    return out.maps, out.class_logits, out.part_logit, out.patch_tokens, out.audio_tokens


@pytest.mark.slow
def test_base_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = create_model("base")
    image, mel = torch.randn(1, 3, 224, 224), torch.randn(1, 80, 100)
    expected = _run(model, image, mel)
    directory = save_model(model, tmp_path / "ckpt", extra={"image_threshold": 0.42})
    card = json.loads((directory / "config.json").read_text())
    assert card["config"]["width"] == 768 and card["model_version"] == model.model_version

    info = read_checkpoint(directory)
    assert info.config == model.config and info.extra == {"image_threshold": 0.42}
    loaded = load_model(directory)
    assert loaded.model_version == model.model_version
    assert loaded.metadata["image_threshold"] == 0.42
    assert _weights_equal(loaded, model)
    assert _outputs_equal(_run(loaded, image, mel), expected)
    del loaded
    by_name = create_model("base", weights=directory / "model.safetensors")
    assert _weights_equal(by_name, model)
    assert _outputs_equal(_run(by_name, image, mel), expected)


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    save_model(create_model("tiny"), tmp_path / "tiny")
    with pytest.raises(ModelError, match="does not fit"):
        create_model("tiny", weights=tmp_path / "tiny", classes=("a", "b"))
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ModelError, match="no SHA-256 recorded"):  # nothing to verify it by
        load_model(tmp_path / "other.safetensors")
    with pytest.raises(ModelError, match="not an inspection model"):
        load_model(tmp_path / "other.safetensors", verify=False)


def test_model_version_follows_the_weights(tmp_path):
    model = create_model("tiny")
    first = save_model(model, tmp_path / "a")
    v1 = read_checkpoint(first).model_version
    with torch.no_grad():
        model.fusion.audio_bias.add_(1.0)
    v2 = read_checkpoint(save_model(model, tmp_path / "b")).model_version
    assert v1 != v2 and len(v1) == 16
