"""Audio front end, torch-free: whisper's log-mel spectrogram in numpy.

The recipe is whisper's ``log_mel_spectrogram`` (``n_fft`` 400, hop 160, periodic Hann,
reflect-padded centred STFT, last frame dropped, whisper's mel filter bank, ``log10``
clamped at 1e-10, floor at max - 8, ``(x + 4) / 4``), so the torch-free edge runtime
feeds the exported audio encoder exactly what training fed it. Unlike whisper, a clip is
fitted to the model's own length (``2 * n_audio_ctx`` frames, 1 s), not to 30 s: a
shorter clip is padded, and a longer one is cut into windows of that length
(:func:`audio_windows`), each scored by the detector, up to :data:`MAX_AUDIO_SECONDS`.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np

from inspection.io import InputError, audio_clip
from inspection.types import AUDIO_SAMPLE_RATE, AudioClip

MEL_FILTERS = Path(__file__).resolve().parents[1] / "assets" / "mel_filters.npz"
N_FFT = 400
HOP_LENGTH = 160
MAX_AUDIO_SECONDS = 30.0
"""Longest clip the detector scores (30 windows of a 1 s model); a longer one is refused."""


@lru_cache(maxsize=4)
def mel_filters(n_mels: int = 80, path: str | None = None) -> np.ndarray:
    """Whisper's mel filter bank ``(n_mels, 1 + N_FFT // 2)`` float32.

    Read with numpy from whisper's ``mel_filters.npz``, bundled in ``inspection/assets``
    (so an edge box needs neither whisper nor torch), or from ``path``.
    """
    file = Path(path) if path else MEL_FILTERS
    with np.load(file, allow_pickle=False) as data:
        key = f"mel_{n_mels}"
        if key not in data:
            raise ValueError(f"{file}: no {n_mels}-bin filter bank (has {sorted(data)})")
        return data[key].astype(np.float32)


def pad_or_trim(samples: np.ndarray, length: int) -> np.ndarray:
    """Crop the end off, or pad zeros at the end, to exactly ``length`` samples."""
    if samples.shape[-1] >= length:
        return samples[..., :length]
    return np.pad(samples, (0, length - samples.shape[-1]))


def log_mel_spectrogram(samples: np.ndarray, n_mels: int = 80) -> np.ndarray:
    """Whisper's log-mel spectrogram of 16 kHz mono samples.

    Parameters
    ----------
    samples : np.ndarray
        ``(n,)`` float audio at 16 kHz, ``n > 200``.
    n_mels : int
        80 or 128.

    Returns
    -------
    np.ndarray
        ``(n_mels, n // 160)`` float32, matching ``whisper.audio.log_mel_spectrogram``.
    """
    x = np.asarray(samples, dtype=np.float64)
    x = np.pad(x, N_FFT // 2, mode="reflect")  # torch.stft(center=True)
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP_LENGTH]  # (T+1, n_fft)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic Hann
    power = np.abs(np.fft.rfft(frames * window, axis=-1)[:-1]) ** 2  # (T, n_fft//2+1)
    # einsum, not `@`: a product this small is 1 ms either way, but `@` wakes OpenBLAS
    # threads that then spin on a core for ~0.1 s, starving ONNX Runtime's threads:
    # it doubled the edge verdict's latency on a 2-core box (benchmarks/README.md).
    filters = mel_filters(n_mels).astype(np.float64)
    mel = np.einsum("mf,tf->mt", filters, power, optimize=False)  # (n_mels, T)
    log_spec = np.log10(np.maximum(mel, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)


def audio_to_mel(
    audio: AudioClip | np.ndarray,
    n_mels: int = 80,
    n_frames: int = 100,
    sample_rate: int = AUDIO_SAMPLE_RATE,
) -> np.ndarray:
    """The model's audio input: a clip as ``(n_mels, n_frames)`` log-mel, float32.

    The clip is validated (empty or non-finite audio is refused), resampled to 16 kHz,
    and cropped or zero-padded to ``n_frames * 160`` samples, so the whisper encoder gets
    the ``2 * n_audio_ctx`` frames it asserts on. Training reads clips this way; the
    detector scores a longer clip whole, in windows (:func:`audio_windows`).

    Parameters
    ----------
    audio : AudioClip | np.ndarray
        A clip, or raw mono samples at ``sample_rate``.
    n_mels, n_frames : int
        ``config.n_mels`` and ``config.n_audio_frames``.

    Raises
    ------
    inspection.io.InputError
        Empty audio, or NaN / infinite samples.
    """
    samples = _samples_16k(audio, sample_rate)
    return log_mel_spectrogram(pad_or_trim(samples, n_frames * HOP_LENGTH), n_mels)


def audio_windows(
    audio: AudioClip | np.ndarray,
    n_mels: int = 80,
    n_frames: int = 100,
    sample_rate: int = AUDIO_SAMPLE_RATE,
    max_seconds: float = MAX_AUDIO_SECONDS,
) -> np.ndarray:
    """A whole clip as the model's inputs: one log-mel per window of the model's length.

    A clip that fits one window gives exactly :func:`audio_to_mel`'s input. A longer one
    is covered by ``ceil(length / window)`` full windows, spread evenly, the first at the
    start and the last flush with the end (as image tiles are): every sample is heard,
    and no window is mostly padding, which the model never heard in training.

    Parameters
    ----------
    audio : AudioClip | np.ndarray
        A clip, or raw mono samples at ``sample_rate``.
    n_mels, n_frames : int
        ``config.n_mels`` and ``config.n_audio_frames``.
    max_seconds : float
        Longest clip accepted.

    Returns
    -------
    np.ndarray
        ``(W, n_mels, n_frames)`` float32, ``W >= 1`` windows in time order.

    Raises
    ------
    inspection.io.InputError
        Empty audio, NaN / infinite samples, or a clip longer than ``max_seconds``.
    """
    samples = _samples_16k(audio, sample_rate)
    seconds = samples.size / AUDIO_SAMPLE_RATE
    if seconds > max_seconds:
        raise InputError(
            f"audio is {seconds:.1f} s long, over the {max_seconds:g} s a clip may last "
            "(scored in windows of the model's length): cut it to the tap test"
        )
    window = n_frames * HOP_LENGTH
    return np.stack(
        [
            log_mel_spectrogram(pad_or_trim(samples[start:], window), n_mels)
            for start in window_starts(samples.size, window)
        ]
    )


def window_starts(length: int, window: int) -> list[int]:
    """Starts of the fewest windows of ``window`` samples covering ``length``: spread
    evenly, the first at 0 and the last flush with the end (``[0]`` if it fits one)."""
    if length <= window:
        return [0]
    n = math.ceil(length / window)
    return [round(i * (length - window) / (n - 1)) for i in range(n)]


def _samples_16k(audio: AudioClip | np.ndarray, sample_rate: int) -> np.ndarray:
    """Validated mono float32 samples at 16 kHz."""
    if isinstance(audio, AudioClip):
        samples, rate = audio.samples, audio.sample_rate
    else:
        samples, rate = audio, sample_rate
    return audio_clip(samples, rate, sample_rate=AUDIO_SAMPLE_RATE).samples


def fit_mel_frames(mel: np.ndarray, n_frames: int) -> np.ndarray:
    """Crop or pad ``(..., n_mels, F)`` log-mel to ``n_frames`` along time.

    Padding uses each clip's minimum, the floor that zero-padded audio maps to (the numpy
    twin of ``inspection.models.audio_encoder.fit_frames``).
    """
    frames = mel.shape[-1]
    if frames >= n_frames:
        return mel[..., :n_frames]
    floor = mel.min(axis=(-2, -1), keepdims=True)
    pad = np.broadcast_to(floor, (*mel.shape[:-1], n_frames - frames))
    return np.concatenate([mel, pad], axis=-1).astype(np.float32)
