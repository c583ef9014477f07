"""The torch-free log-mel front end matches whisper's."""

from __future__ import annotations

import numpy as np
import pytest

from inspection.io import InputError
from inspection.models.audio import (
    MAX_AUDIO_SECONDS,
    audio_to_mel,
    audio_windows,
    fit_mel_frames,
    log_mel_spectrogram,
    window_starts,
)
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


# --- Clips longer than the model's window ---------------------------------------------


def test_a_clip_that_fits_one_window_is_read_as_before():
    tap = _tap()
    for samples in (tap[:16_000], tap[:8000]):
        windows = audio_windows(samples, n_frames=100)
        assert windows.shape == (1, 80, 100)
        np.testing.assert_array_equal(windows[0], audio_to_mel(samples, n_frames=100))


@pytest.mark.parametrize(
    ("seconds", "starts"),
    [(3.0, [0, 16_000, 32_000]), (2.5, [0, 12_000, 24_000]), (1.0001, [0, 2])],
)
def test_long_clips_are_covered_by_full_windows(seconds, starts):
    """Every sample is heard, and no window is mostly padding: the last is flush."""
    length = round(seconds * 16_000)
    assert window_starts(length, 16_000) == starts
    assert starts[-1] + 16_000 == length
    samples = np.random.default_rng(0).standard_normal(length).astype(np.float32) * 0.1
    windows = audio_windows(samples, n_frames=100)
    assert windows.shape == (len(starts), 80, 100)
    last = log_mel_spectrogram(samples[-16_000:])
    np.testing.assert_array_equal(windows[-1], last)


def test_a_clip_over_the_cap_is_refused_with_its_length():
    samples = np.zeros(round((MAX_AUDIO_SECONDS + 1) * 16_000), np.float32)
    with pytest.raises(InputError, match=r"31\.0 s long, over the 30 s"):
        audio_windows(samples)
    assert audio_windows(samples[: round(MAX_AUDIO_SECONDS * 16_000)]).shape[0] == 30


def test_the_detector_judges_a_long_clip_on_its_worst_window():
    """A 3 s tap test whose worst-sounding second is the last gets that second's scores,
    not the first second's (the old crop to the model's 1 s window heard only that)."""
    torch = pytest.importorskip("torch")
    from inspection.models import create_model
    from inspection.models.detector import TorchDetector

    torch.manual_seed(0)
    detector = TorchDetector(create_model("tiny"))
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    tap = _tap()[:16_000]
    seconds = [  # three different seconds: a tap, a loud tap, background noise
        tap,
        np.clip(tap * 4.0, -1, 1) + 0.05 * rng.standard_normal(16_000).astype(np.float32),
        0.01 * rng.standard_normal(16_000).astype(np.float32),
    ]
    alone = [detector.detect(image, s) for s in seconds]
    logits = [float(d.audio_logit[0]) for d in alone]
    worst = int(np.argmax(logits))
    assert sorted(logits)[-1] > sorted(logits)[-2]  # one second is the worst
    order = [i for i in range(3) if i != worst] + [worst]  # the worst second last
    first = order[0]
    clip = np.concatenate([seconds[i] for i in order])

    whole = detector.detect(image, clip.astype(np.float32))

    for field in ("audio_logit", "part_logit", "image_logit", "maps"):
        np.testing.assert_allclose(getattr(whole, field), getattr(alone[worst], field), atol=1e-5)
    assert abs(float(whole.audio_logit[0]) - logits[first]) > 1e-3
    assert whole.audio_score[0] == pytest.approx(alone[worst].audio_score[0], abs=1e-6)
