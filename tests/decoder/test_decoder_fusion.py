"""The fusion resampler: fixed (B, N, D) output whatever the inputs; payload size."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from inspection.decoder.fusion import FusionConfig, FusionResampler, payload_bytes  # noqa: E402

CONFIG = FusionConfig(image_dim=32, audio_dim=24, map_channels=7, dim=64, queries=8, map_grid=4)


@pytest.fixture(scope="module")
def fusion():
    torch.manual_seed(0)
    return FusionResampler(CONFIG).eval()


@pytest.mark.parametrize("n_patches", [16, 64])  # one tile, four tiles
def test_shapes_with_and_without_audio(fusion, n_patches):
    patches = torch.randn(3, n_patches, 32)
    maps = torch.randn(3, 7, 64, 64)
    audio = torch.randn(3, 50, 24)
    with torch.no_grad():
        without = fusion(patches, maps)
        with_audio = fusion(patches, maps, audio)
    assert without.shape == with_audio.shape == (3, 8, 64)
    assert torch.isfinite(with_audio).all()
    assert not torch.allclose(without, with_audio)  # the audio is heard


def test_a_small_defect_survives_map_pooling(fusion):
    maps = torch.full((1, 7, 64, 64), -8.0)
    spot = maps.clone()
    spot[0, :, 10:12, 20:22] = 8.0  # a 2 px defect
    with torch.no_grad():
        assert not torch.allclose(fusion.map_tokens(maps), fusion.map_tokens(spot))


def test_payload_bytes(fusion):
    with torch.no_grad():
        fused = fusion(torch.randn(1, 16, 32), torch.randn(1, 7, 64, 64))
    assert payload_bytes(CONFIG) == fused.half().numpy().nbytes == 8 * 64 * 2
    assert payload_bytes(CONFIG, batch=16) == 16 * 1024
