"""The camera: uneven lighting, vignetting, optical blur, sensor noise, 8-bit quantisation."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from inspection.synth.surfaces import LIGHT_DIR

READ_NOISE = 1.0 / 255  # std of the read noise, in full scale
SHOT_NOISE_AT_WHITE = 2.2 / 255  # std of the shot noise for a white pixel


def expose(radiance: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Photograph the scene radiance.

    Parameters
    ----------
    radiance : np.ndarray
        ``(H, W, 3)`` float32 sRGB in ``[0, 1]``, the scene as lit evenly.
    rng : np.random.Generator
        The part's sensor stream (independent of its defects, so a part with and without
        a defect differs only around the defect).

    Returns
    -------
    np.ndarray
        ``(H, W, 3)`` uint8 RGB.
    """
    toward_light, r2 = _lens_basis(*radiance.shape[:2])
    # The station's light sits upper left: a gentle gradient towards it, and the lens's
    # vignetting (cos^4-like fall-off, here quadratic, 7-9% in the corners).
    tilt = np.float32(rng.uniform(0.025, 0.04))
    gain = np.float32(rng.uniform(0.98, 1.02))
    vignetting = np.float32(rng.uniform(0.07, 0.09))
    illumination = gain * (1.0 + tilt * toward_light) * (1.0 - vignetting * r2)
    img = radiance * illumination[:, :, None]
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.55, 0.7))
    variance = np.float32(SHOT_NOISE_AT_WHITE**2) * np.clip(img, 0.0, 1.0)
    sigma = np.sqrt(variance + np.float32(READ_NOISE**2))
    img += sigma * rng.standard_normal(img.shape, dtype=np.float32)
    return quantise(img)


@lru_cache(maxsize=4)
def _lens_basis(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Projection on the light direction and squared radius (1 in the corners), float32."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    xn, yn = xs / (w - 1) * 2 - 1, ys / (h - 1) * 2 - 1
    toward_light = xn * LIGHT_DIR[0] + yn * LIGHT_DIR[1]
    r2 = (xn**2 + yn**2) / 2
    for a in (toward_light, r2):
        a.flags.writeable = False
    return toward_light, r2


def quantise(img: np.ndarray) -> np.ndarray:
    """Float ``[0, 1]`` to uint8 with rounding."""
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
