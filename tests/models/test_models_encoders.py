"""Image and audio encoders: shapes, and pretrained towers read from local files."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from whisper.model import sinusoids  # noqa: E402

from inspection.models.audio_encoder import AudioEncoder, fit_frames  # noqa: E402
from inspection.models.image_encoder import ImageEncoder  # noqa: E402
from inspection.models.registry import get_config  # noqa: E402


@pytest.mark.parametrize("name, grid, width", [("tiny", (4, 4), 32), ("tiny-conv", (4, 4), 192)])
def test_image_encoder_gives_patch_tokens_and_grid(name, grid, width):
    encoder = ImageEncoder(get_config(name))
    tokens, got = encoder(torch.randn(3, 3, 64, 64))
    assert got == grid and encoder.width == width
    assert tokens.shape == (3, grid[0] * grid[1], width)  # (B, N, C)


def test_single_channel_vit():
    encoder = ImageEncoder(
        get_config("tiny").replace(in_chans=1, image_mean=(0.5,), image_std=(0.25,))
    )
    tokens, _ = encoder(torch.randn(2, 1, 64, 64))
    assert tokens.shape == (2, 16, 32)


def test_audio_tokens_for_a_one_second_clip():
    config = get_config("tiny")
    encoder = AudioEncoder(config)
    for frames in (100, 73, 160):  # exact, short (padded), long (cropped): no whisper assertion
        tokens, logit = encoder(torch.randn(2, 80, frames))
        assert tokens.shape == (2, config.n_audio_ctx, config.audio_width)  # (B, T, C)
        assert logit.shape == (2,)


def test_fit_frames_pads_with_the_clip_floor():
    mel = torch.randn(2, 80, 60)
    out = fit_frames(mel, 100)
    assert out.shape == (2, 80, 100)
    assert torch.equal(out[..., :60], mel)
    assert torch.equal(out[0, :, 60:], mel[0].min().expand(80, 40))


def _open_clip_checkpoint(tower_state, path):
    """Write a tower's weights the way open_clip checkpoints hold them."""
    state = {f"visual.{k}": v for k, v in tower_state.items()}
    width = state["visual.conv1.weight"].shape[0]
    state["visual.proj"] = torch.randn(width, 16)  # CLIP's projection: ignored
    state["text.token_embedding.weight"] = torch.randn(10, 16)  # the text tower: ignored
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)


def test_vit_loads_an_open_clip_checkpoint(tmp_path):
    config = get_config("tiny")
    source = ImageEncoder(config)
    path = tmp_path / "open_clip_model.bin"
    _open_clip_checkpoint(source.tower.state_dict(), path)
    loaded = ImageEncoder(config.replace(pretrained_image=str(path)))
    x = torch.randn(1, 3, 64, 64)
    assert torch.allclose(loaded(x)[0], source(x)[0])
    # Another image size: the position embedding is resized, not refused.
    bigger = ImageEncoder(config.replace(image_size=96, pretrained_image=str(path)))
    tokens, grid = bigger(torch.randn(1, 3, 96, 96))
    assert grid == (6, 6) and tokens.shape == (1, 36, 32)
    with pytest.raises(ValueError, match="do not fit"):
        ImageEncoder(config.replace(width=64, heads=2, pretrained_image=str(path)))


def test_timm_tower_loads_timm_weights(tmp_path):
    from safetensors.torch import save_file

    config = get_config("tiny-conv")
    source = ImageEncoder(config)
    state = dict(source.tower.trunk.state_dict()) | {"fc.weight": torch.randn(10, 96)}
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "w.safetensors")
    loaded = ImageEncoder(config.replace(pretrained_image=str(tmp_path / "w.safetensors")))
    x = torch.randn(1, 3, 64, 64)
    assert torch.allclose(loaded.eval()(x)[0], source.eval()(x)[0])


def test_audio_encoder_loads_a_whisper_checkpoint(tmp_path):
    config = get_config("tiny")
    source = AudioEncoder(config)
    state = {f"encoder.{k}": v for k, v in source.encoder.state_dict().items()}
    state["encoder.positional_embedding"] = sinusoids(1500, config.audio_width)  # 30 s table
    state["decoder.token_embedding.weight"] = torch.randn(10, config.audio_width)
    dims = {"n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": config.audio_width}
    dims |= {"n_audio_head": config.audio_heads, "n_audio_layer": config.audio_layers}
    path = tmp_path / "whisper.pt"
    torch.save({"dims": dims, "model_state_dict": state}, path)
    loaded = AudioEncoder(config.replace(pretrained_audio=str(path)))
    for key, value in source.encoder.state_dict().items():
        assert torch.equal(loaded.encoder.state_dict()[key], value), key
    with pytest.raises(ValueError, match="n_audio_layer"):
        AudioEncoder(config.replace(audio_layers=2, pretrained_audio=str(path)))


def test_missing_pretrained_file_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        ImageEncoder(get_config("tiny").replace(pretrained_image=str(tmp_path / "none.bin")))
