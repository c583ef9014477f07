"""Surface textures: one generator per surface kind, plus the conveyor belt.

Every generator returns a float32 ``(size, size, 3)`` sRGB image in ``[0, 1]`` whose mean
is close to the nominal colour, in the part's own coordinates (brushing along x). Noise is
built from coarse random grids resized up and from separable blurs, which keeps one
texture at 256 px to a few milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import cv2
import numpy as np

Texture = Callable[[np.random.Generator, int, tuple[int, int, int]], np.ndarray]

# Light comes from the upper left of the station (x right, y down), slightly above.
LIGHT_DIR = np.array([-0.6, -0.8], dtype=np.float32)


@lru_cache(maxsize=4)
def pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Read-only ``(ys, xs)`` float32 coordinates of the pixel centres of a square image."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    ys.flags.writeable = False
    xs.flags.writeable = False
    return ys, xs


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Zero-mean, unit-std noise with correlation length about ``scale`` pixels."""
    h, w = shape
    gh, gw = int(np.ceil(h / scale)) + 3, int(np.ceil(w / scale)) + 3
    grid = rng.standard_normal((gh, gw), dtype=np.float32)
    big = cv2.resize(grid, (int(gw * scale), int(gh * scale)), interpolation=cv2.INTER_CUBIC)
    # Crop away the border cells, where cubic interpolation is one-sided.
    off = int(scale)
    out = big[off : off + h, off : off + w]
    return (out - out.mean()) / (out.std() + 1e-6)


def _normalise(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (x.std() + 1e-6)


def _tint(intensity: np.ndarray, rgb: tuple[int, int, int]) -> np.ndarray:
    base = np.asarray(rgb, dtype=np.float32) / 255.0
    return intensity[:, :, None] * base[None, None, :]


def brushed_metal(rng: np.random.Generator, size: int, rgb: tuple[int, int, int]) -> np.ndarray:
    """Brushed aluminium: long fine streaks along x, band-to-band sheen, faint grain.

    Parameters
    ----------
    rng : np.random.Generator
        Source of randomness (the part's scene stream).
    size : int
        Side of the square texture in pixels.
    rgb : tuple[int, int, int]
        Nominal colour.

    Returns
    -------
    np.ndarray
        ``(size, size, 3)`` float32 in ``[0, 1]``.
    """
    s = size
    # Long streaks: each row is a slow random walk along x (the brushing direction) and
    # rows are independent -> crisp one-pixel lines about a third of the part long.
    coarse = rng.standard_normal((s, s // 32 + 2), dtype=np.float32)
    long_streaks = cv2.resize(coarse, (s + 64, s), interpolation=cv2.INTER_LINEAR)[:, 32:-32]
    # Fine grain: short streaks.
    grain = cv2.blur(rng.standard_normal((s, s), dtype=np.float32), (15, 1))
    # A few deep brushing lines, stronger than the rest, fading in and out.
    deep = np.zeros((s, s), np.float32)
    rows = rng.integers(0, s, size=max(4, s // 16))
    deep[rows, :] = rng.normal(0.0, 1.0, size=(rows.size, 1)).astype(np.float32)
    deep *= cv2.resize(rng.random((s, 4), dtype=np.float32), (s, s))
    # Band-to-band variation across the brushing, and the broad anisotropic sheen that
    # brushed metal throws across the brushing direction.
    bands = smooth_noise(rng, (s, 2), scale=s / 20)[:, :1]
    x = np.linspace(-1.0, 1.0, s, dtype=np.float32)
    centre, width = rng.uniform(-0.5, 0.5), rng.uniform(0.3, 0.6)
    sheen = np.exp(-(((x - centre) / width) ** 2))[None, :]
    sheen = sheen - sheen.mean()
    intensity = (
        1.0
        + 0.04 * _normalise(long_streaks)
        + 0.025 * _normalise(grain)
        + 0.04 * deep
        + 0.015 * bands
        + 0.06 * sheen
    )
    img = _tint(intensity, rgb)
    # Highlights on aluminium go slightly cool.
    img[:, :, 2] += 0.012 * sheen
    return np.clip(img, 0.0, 1.0)


def painted(rng: np.random.Generator, size: int, rgb: tuple[int, int, int]) -> np.ndarray:
    """Solid appliance paint: orange-peel relief, and a softbox reflection with wavy edges.

    Parameters and return as in :func:`brushed_metal`.
    """
    s = size
    white = rng.standard_normal((s, s), dtype=np.float32)
    # Orange peel: band-pass relief of a few pixels' wavelength.
    relief = cv2.GaussianBlur(white, (0, 0), 1.3) - cv2.GaussianBlur(white, (0, 0), 3.2)
    relief = _normalise(relief)
    gy, gx = np.gradient(relief)
    slope = gx * LIGHT_DIR[0] + gy * LIGHT_DIR[1]
    slope = slope / (slope.std() + 1e-6)
    # Reflection of the station's softbox: a soft diagonal bar, its edges displaced by the
    # relief's slopes, which is what makes orange peel visible in a gloss highlight.
    yy, xx = pixel_grid(s)
    angle = rng.uniform(-0.6, -0.3)
    offset = rng.uniform(-0.25, 0.15) * s
    along = -(xx - s / 2) * np.sin(angle) + (yy - s / 2) * np.cos(angle)
    across = (xx - s / 2) * np.cos(angle) + (yy - s / 2) * np.sin(angle) - offset
    across = across + 1.8 * (gx + 0.6 * gy) * s / 256
    half = rng.uniform(0.06, 0.11) * s
    soft = 0.04 * s
    bar = np.clip((half - np.abs(across)) / soft + 0.5, 0.0, 1.0)
    bar = bar * bar * (3 - 2 * bar)
    bar *= 0.75 + 0.25 * np.cos(np.clip(along / s, -1.0, 1.0) * 2.2)  # softbox fall-off
    thickness = smooth_noise(rng, (s, s), scale=s / 6)
    intensity = 1.0 + 0.009 * slope + 0.01 * thickness
    img = _tint(intensity, rgb)
    gloss = rng.uniform(0.07, 0.11) * bar * (1.0 + 0.15 * slope)
    img = img + gloss[:, :, None] * (1.0 - img)
    img -= 0.5 * gloss.mean()  # keep the mean near the nominal colour
    return np.clip(img, 0.0, 1.0)


def ceramic(rng: np.random.Generator, size: int, rgb: tuple[int, int, int]) -> np.ndarray:
    """Glazed ceramic: soft mottling, warm/cool cloudiness and scattered speckles.

    Parameters and return as in :func:`brushed_metal`.
    """
    s = size
    mottle = smooth_noise(rng, (s, s), scale=s / 10)
    cloud = smooth_noise(rng, (s, s), scale=s / 5)
    fine = cv2.GaussianBlur(rng.standard_normal((s, s), dtype=np.float32), (0, 0), 0.8)
    intensity = 1.0 + 0.014 * mottle + 0.01 * _normalise(fine)
    img = _tint(intensity, rgb)
    warm = np.array([0.008, 0.003, -0.006], np.float32)  # warmer / cooler clouds in the body
    img += cloud[:, :, None] * warm[None, None, :]
    # Speckles: sparse impulses blurred to small round dots, mostly fine grey-brown ones.
    for sigma, density, strength, colour in _SPECKLES:
        count = rng.poisson(density * s * s)
        dots = np.zeros((s, s), np.float32)
        ys, xs = rng.integers(0, s, count), rng.integers(0, s, count)
        dots[ys, xs] = rng.uniform(0.5, 1.3, count).astype(np.float32) * strength
        alpha = np.clip(cv2.GaussianBlur(dots, (0, 0), sigma) * 2 * np.pi * sigma**2, 0, 0.8)
        img = img * (1 - alpha[:, :, None]) + alpha[:, :, None] * np.asarray(colour, np.float32)
    return np.clip(img, 0.0, 1.0)


# (blur sigma px, dots per px², strength, colour) of the ceramic body's speckle kinds.
_SPECKLES = (
    (0.5, 0.0022, 0.9, (0.42, 0.37, 0.32)),
    (0.5, 0.0012, 0.8, (0.55, 0.54, 0.52)),
    (0.8, 0.0004, 1.4, (0.5, 0.36, 0.25)),
    (1.0, 0.00015, 2.0, (0.36, 0.33, 0.31)),
)


def conveyor(rng: np.random.Generator, size: int) -> np.ndarray:
    """Dark rubber conveyor belt running along x, with fine texture and a little dust.

    Returns
    -------
    np.ndarray
        ``(size, size, 3)`` float32 in ``[0, 1]``, in image coordinates.
    """
    s = size
    fine = cv2.GaussianBlur(rng.standard_normal((s, s), dtype=np.float32), (0, 0), 0.9)
    wear = cv2.blur(rng.standard_normal((s, s), dtype=np.float32), (31, 1))
    patch = smooth_noise(rng, (s, s), scale=s / 4)
    intensity = 1.0 + 0.05 * _normalise(fine) + 0.04 * _normalise(wear) + 0.04 * patch
    img = _tint(intensity, (52, 54, 55))
    dust = np.zeros((s, s), np.float32)
    count = rng.poisson(0.002 * s * s)
    dust[rng.integers(0, s, count), rng.integers(0, s, count)] = rng.uniform(0.5, 1.5, count)
    dust = np.clip(cv2.GaussianBlur(dust, (0, 0), 0.7) * 3.0, 0.0, 0.6)
    img = img * (1 - dust[:, :, None]) + dust[:, :, None] * 0.42
    return np.clip(img, 0.0, 1.0)


TEXTURES: dict[str, Texture] = {
    "brushed_metal": brushed_metal,
    "painted": painted,
    "ceramic": ceramic,
}


def surface_texture(
    surface: str, rng: np.random.Generator, size: int, rgb: tuple[int, int, int]
) -> np.ndarray:
    """Texture for a surface kind by name (see :data:`TEXTURES`)."""
    try:
        return TEXTURES[surface](rng, size, rgb)
    except KeyError:
        raise ValueError(f"unknown surface {surface!r}; valid: {', '.join(TEXTURES)}") from None
