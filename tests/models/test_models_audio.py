"""The torch-free log-mel front end matches whisper's."""

from __future__ import annotations

import numpy as np
import pytest

from inspection.io import InputError
from inspection.models.audio import audio_to_mel, fit_mel_frames, log_mel_spectrogram
from inspection.synth.audio import tap_audio
from inspection.synth.products import get_product
from inspection.types import AudioClip


def _tap() -> np.ndarray:
    return tap_audio(get_product("bracket"), np.random.default_rng(0)).samples


@pytest.mark.parametrize("length", [16_000, 12_345, 3_000])
def test_log_mel_matches_whisper(length):
    torch = pytest.importorskip("torch")
    whisper_audio = pytest.importorskip("whisper.audio")
    samples = np.resize(_tap(), length).astype(np.float32)
    expected = whisper_audio.log_mel_spectrogram(torch.from_numpy(samples)).numpy()
    got = log_mel_spectrogram(samples)
    assert got.shape == expected.shape == (80, length // 160)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_clip_is_cropped_or_padded_to_the_model_length():
    tap = _tap()
    assert audio_to_mel(AudioClip(tap), n_frames=100).shape == (80, 100)
    assert audio_to_mel(tap[:8000], n_frames=100).shape == (80, 100)  # 0.5 s, padded
    assert audio_to_mel(np.tile(tap, 3), n_frames=100).shape == (80, 100)  # 3 s, cropped
    resampled = audio_to_mel(np.zeros(44_100, np.float32) + 0.1, sample_rate=44_100)
    assert resampled.shape == (80, 100) and resampled.dtype == np.float32


@pytest.mark.parametrize("samples", [np.zeros(0, np.float32), np.array([0.1, np.nan] * 900)])
def test_empty_or_nan_audio_is_an_input_error(samples):
    with pytest.raises(InputError):
        audio_to_mel(samples)
    with pytest.raises(InputError):
        audio_to_mel(AudioClip(samples.astype(np.float32)))


def test_fit_mel_frames_matches_the_torch_twin():
    torch = pytest.importorskip("torch")
    from inspection.models.audio_encoder import fit_frames

    mel = np.random.default_rng(0).standard_normal((2, 80, 70)).astype(np.float32)
    for n in (50, 70, 100):
        np.testing.assert_array_equal(
            fit_mel_frames(mel, n), fit_frames(torch.from_numpy(mel), n).numpy()
        )
