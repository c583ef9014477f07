"""Reading and writing images, masks and audio, with errors that name the file.

Every reader accepts what real stations produce (8/16-bit, grayscale/RGB/RGBA, any
size) and raises :class:`InputError` for anything it cannot use, so callers can report
the file and carry on instead of crashing.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from inspection.types import AUDIO_SAMPLE_RATE, AudioClip

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg"})


class InputError(ValueError):
    """An input file or array that cannot be used, with the reason."""


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as RGB (or single-channel) at its native bit depth.

    Returns
    -------
    np.ndarray
        ``(H, W)`` for grayscale, ``(H, W, 3)`` RGB otherwise; alpha is dropped.
        uint8 or uint16 as stored.
    """
    path = Path(path)
    data = np.fromfile(path, dtype=np.uint8) if path.is_file() else None
    if data is None:
        raise InputError(f"{path}: no such file")
    if data.size == 0:
        raise InputError(f"{path}: empty file")
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise InputError(f"{path}: not a readable image (corrupt or unsupported format)")
    return _to_rgb(image, path)


def _to_rgb(image: np.ndarray, source: Path | str) -> np.ndarray:
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3:
        if image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
        elif image.shape[2] == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        else:
            raise InputError(f"{source}: unsupported channel count {image.shape[2]}")
    if image.shape[0] < 8 or image.shape[1] < 8:
        raise InputError(f"{source}: image too small ({image.shape[1]}x{image.shape[0]} px)")
    if image.dtype not in (np.uint8, np.uint16):
        if image.dtype.kind == "f" and not np.isfinite(image).all():
            raise InputError(f"{source}: image has NaN or infinite pixels")
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return image


def to_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """Any image from :func:`read_image` as ``(H, W, 3)`` uint8 RGB."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image)


def read_mask(path: str | Path) -> np.ndarray:
    """Read a defect mask as ``(H, W)`` bool.

    Pixels above half the mask's maximum are defect: this reads 0/1 and 0/255 masks
    alike and drops the anti-aliased fringe some datasets' masks carry.
    """
    image = read_image(path)
    if image.ndim == 3:
        image = image.max(axis=2)
    peak = int(image.max())
    return image > peak / 2 if peak > 0 else np.zeros(image.shape, dtype=bool)


def write_image(path: str | Path, image: np.ndarray) -> None:
    """Write an RGB or grayscale image; the format follows the suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    out = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, buf = cv2.imencode(path.suffix or ".png", out)
    if not ok:
        raise InputError(f"{path}: cannot encode image as {path.suffix}")
    buf.tofile(path)


def read_audio(path: str | Path, sample_rate: int = AUDIO_SAMPLE_RATE) -> AudioClip:
    """Read a clip with soundfile (no ffmpeg), mix to mono and resample.

    Raises
    ------
    InputError
        For unreadable, empty, silent-NaN or non-finite audio.
    """
    path = Path(path)
    try:
        samples, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise InputError(f"{path}: not a readable audio file ({exc})") from exc
    return audio_clip(samples.mean(axis=1), rate, sample_rate=sample_rate, source=str(path))


def audio_clip(
    samples: np.ndarray,
    rate: int,
    sample_rate: int = AUDIO_SAMPLE_RATE,
    kind: str = "tap",
    source: str = "audio",
) -> AudioClip:
    """Validate raw samples and resample them to ``sample_rate`` as float32."""
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    if samples.size == 0:
        raise InputError(f"{source}: empty audio")
    if not np.isfinite(samples).all():
        raise InputError(f"{source}: audio has NaN or infinite samples")
    if rate != sample_rate:
        g = np.gcd(int(rate), int(sample_rate))
        samples = resample_poly(samples, sample_rate // g, int(rate) // g).astype(np.float32)
    return AudioClip(samples=samples, sample_rate=sample_rate, kind=kind)


def write_audio(path: str | Path, clip: AudioClip) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.clip(clip.samples, -1.0, 1.0), clip.sample_rate, subtype="PCM_16")
