"""Anomalies synthesised on good images, so a model learns defects from good parts alone.

The DRAEM / TransFusion recipe, with no downloaded texture set: Perlin-style blobs
filled with foreign textures (generated here, or taken from the image itself,
transformed), cut-paste of a patch of the same image, and the physical defects the line
reports: scratches, dents, colour shifts, cracks and spots. Each returns the augmented
image, the exact mask of the pixels it changed and the defect class it teaches (or
``None`` for a generic anomaly that only teaches "anomalous").

Works on any ``(H, W, 3)`` uint8 image, colour or grey; every size is relative to the
image, so no constant is tied to one dataset.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from skimage.color import lab2rgb, rgb2lab

from inspection.grain import grain_of
from inspection.silhouette import foreground_split
from inspection.synth.defects import log_uniform
from inspection.synth.surfaces import smooth_noise


@dataclass(frozen=True)
class Anomaly:
    image: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray  # (H, W) bool, the pixels changed
    defect_class: str | None  # None: generic "anomalous"
    kind: str  # the recipe that made it


def _blob_mask(rng: np.random.Generator, shape: tuple[int, int], coverage: float) -> np.ndarray:
    """Perlin-style blobs: smooth noise above a quantile, about ``coverage`` of the image."""
    side = min(shape)
    scale = side * rng.uniform(0.04, 0.25)
    noise = smooth_noise(rng, shape, scale)
    mask = noise > np.quantile(noise, 1.0 - coverage)
    return _keep_some_components(mask, rng)


def _keep_some_components(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n, labels = cv2.connectedComponents(mask.astype(np.uint8))
    if n <= 2:
        return mask
    keep = rng.choice(np.arange(1, n), size=min(n - 1, int(rng.integers(1, 4))), replace=False)
    return np.isin(labels, keep)


def _foreign_texture(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """A texture that does not belong on the part: generated, or the image transformed."""
    h, w = image.shape[:2]
    choice = rng.integers(4)
    if choice == 0:  # coloured smooth noise at a random scale
        channels = [smooth_noise(rng, (h, w), rng.uniform(2, 30)) for _ in range(3)]
        tex = np.stack(channels, axis=2) * rng.uniform(20, 70) + rng.uniform(30, 220, 3)
    elif choice == 1:  # stripes / weave
        yy, xx = np.mgrid[:h, :w].astype(np.float32)
        theta, period = rng.uniform(0, np.pi), rng.uniform(3, 20)
        wave = np.sin((xx * np.cos(theta) + yy * np.sin(theta)) * 2 * np.pi / period)
        tex = wave[:, :, None] * rng.uniform(30, 90) + rng.uniform(40, 200, 3)
    elif choice == 2:  # the image itself, rotated and flipped: plausible but misplaced
        tex = np.rot90(image, k=int(rng.integers(1, 4)))
        tex = cv2.resize(np.ascontiguousarray(tex), (w, h)).astype(np.float32)
        tex = tex[:, ::-1] * rng.uniform(0.6, 1.4)
    else:  # speckle / granular
        tex = rng.normal(rng.uniform(40, 200), rng.uniform(10, 60), (h, w, 1)) * np.ones(3)
        tex = cv2.GaussianBlur(tex.astype(np.float32), (0, 0), rng.uniform(0.5, 2))
    return np.clip(tex, 0, 255).astype(np.float32)


def perlin_texture(rng: np.random.Generator, image: np.ndarray) -> Anomaly:
    """DRAEM: blobs filled with a foreign texture at opacity beta."""
    mask = _blob_mask(rng, image.shape[:2], rng.uniform(0.005, 0.06))
    beta = rng.uniform(0.3, 1.0)
    tex = _foreign_texture(rng, image)
    out = image.astype(np.float32)
    out[mask] = (1 - beta) * out[mask] + beta * tex[mask]
    return _finish(image, out, mask, None, "perlin_texture")


def cut_paste(rng: np.random.Generator, image: np.ndarray) -> Anomaly:
    """A patch of the part pasted elsewhere, rotated and jittered in brightness."""
    h, w = image.shape[:2]
    ph, pw = (int(rng.uniform(0.04, 0.18) * s) + 2 for s in (h, w))
    y0, x0 = rng.integers(0, h - ph), rng.integers(0, w - pw)
    patch = image[y0 : y0 + ph, x0 : x0 + pw].astype(np.float32) * rng.uniform(0.7, 1.3)
    patch = np.rot90(patch, k=int(rng.integers(4)))
    ph, pw = patch.shape[:2]
    y1, x1 = rng.integers(0, h - ph), rng.integers(0, w - pw)
    out = image.astype(np.float32)
    out[y1 : y1 + ph, x1 : x1 + pw] = patch
    mask = np.zeros((h, w), bool)
    mask[y1 : y1 + ph, x1 : x1 + pw] = True
    return _finish(image, out, mask, None, "cut_paste")


def _curve(
    rng: np.random.Generator, shape: tuple[int, int], length: float, bend: float, theta: float
):
    """Points of a gently curved path of about ``length`` px inside the image, heading
    ``theta`` (radians from the x axis)."""
    h, w = shape
    cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h
    t = np.linspace(-0.5, 0.5, max(8, int(length / 2)))
    normal = np.array([-np.sin(theta), np.cos(theta)])
    pts = np.stack([cx + t * length * np.cos(theta), cy + t * length * np.sin(theta)], 1)
    pts += np.outer(bend * length * (0.25 - t**2), normal)
    return np.round(pts).astype(np.int32)


def scratch(rng: np.random.Generator, image: np.ndarray) -> Anomaly:
    """A thin bright or dark stroke; half of them run along the surface's grain, where
    a faint one looks most like the grain itself (the scratches a model misses)."""
    side = min(image.shape[:2])
    if rng.random() < 0.5:
        theta = grain_of(image).direction + rng.normal(0, np.radians(4))
    else:
        theta = rng.uniform(0, np.pi)
    length = rng.uniform(0.05, 0.5) * side
    pts = _curve(rng, image.shape[:2], length, rng.uniform(-0.2, 0.2), theta)
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.polylines(mask, [pts], False, 1, int(rng.integers(1, max(2, side // 100) + 2)))
    mask = mask.astype(bool)
    out = image.astype(np.float32)
    # Log-uniform contrast: a line's scratches are mostly faint (a few grey levels over
    # the surface's own grain) and sometimes glaring; faint ones are the ones missed.
    out[mask] += rng.choice([-1, 1]) * log_uniform(rng, 8, 90)
    return _finish(image, out, mask, "scratch", "scratch")


def crack(rng: np.random.Generator, image: np.ndarray) -> Anomaly:
    """A jagged dark random walk."""
    h, w = image.shape[:2]
    steps = int(rng.uniform(0.05, 0.35) * min(h, w) / 2) + 4
    angle = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.5, steps))
    start = np.array([rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h])
    pts = start + np.cumsum(np.stack([np.cos(angle), np.sin(angle)], 1) * 2.0, axis=0)
    mask = np.zeros((h, w), np.uint8)
    cv2.polylines(mask, [np.round(pts).astype(np.int32)], False, 1, 1 + int(rng.integers(2)))
    mask = mask.astype(bool)
    out = image.astype(np.float32)
    out[mask] *= rng.uniform(0.2, 0.6)
    return _finish(image, out, mask, "crack", "crack")


def dent(rng: np.random.Generator, image: np.ndarray) -> Anomaly:
    """A shaded elliptical depression: highlight on one side, shadow on the other."""
    h, w = image.shape[:2]
    r = rng.uniform(0.015, 0.08) * min(h, w) + 2
    cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    a, b = r, r * rng.uniform(0.5, 1.0)
    theta = rng.uniform(0, np.pi)
    u = ((xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)) / a
    v = (-(xx - cx) * np.sin(theta) + (yy - cy) * np.cos(theta)) / b
    d2 = u**2 + v**2
    mask = d2 < 1
    height = np.where(mask, (1 - d2) ** 2, 0)
    gy, gx = np.gradient(height)
    light = rng.uniform(0, 2 * np.pi)
    shade = (gx * np.cos(light) + gy * np.sin(light)) * r * rng.uniform(40, 120)
    shade[~mask] = 0  # the gradient's stencil reaches one pixel past the rim
    out = image.astype(np.float32) + shade[:, :, None]
    return _finish(image, out, mask, "dent", "dent")


def colour_shift(rng: np.random.Generator, image: np.ndarray) -> Anomaly:
    """A blob whose colour (or, on grey parts, lightness) is shifted in CIELAB."""
    mask = _blob_mask(rng, image.shape[:2], rng.uniform(0.01, 0.08))
    grey = _is_grey(image)
    shift = rng.normal(0, 1, 3) * ([1.0, 0.0, 0.0] if grey else [0.5, 1.0, 1.0])
    shift *= log_uniform(rng, 1.5, 20) / (np.linalg.norm(shift) + 1e-6)  # ΔE*ab, faint to plain
    # Only the blob goes through CIELAB: a round trip would nudge every other pixel.
    lab = rgb2lab(image[mask][None].astype(np.float32) / 255.0) + shift  # (1, N, 3)
    out = image.astype(np.float32)
    out[mask] = lab2rgb(lab)[0] * 255.0
    return _finish(image, out, mask, "color_deviation", "colour_shift")


def spot(rng: np.random.Generator, image: np.ndarray) -> Anomaly:
    """Dark or tinted contamination spots."""
    h, w = image.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        r = max(1, int(rng.uniform(0.004, 0.025) * min(h, w)))
        cv2.circle(mask, (int(rng.uniform(0, w)), int(rng.uniform(0, h))), r, 1, -1)
    mask = mask.astype(bool)
    out = image.astype(np.float32)
    out[mask] = out[mask] * rng.uniform(0.2, 0.6) + rng.uniform(0, 40, 3)
    return _finish(image, out, mask, "contamination", "spot")


def _is_grey(image: np.ndarray) -> bool:
    return bool(
        np.array_equal(image[..., 0], image[..., 1])
        and np.array_equal(image[..., 1], image[..., 2])
    )


def shading(rng: np.random.Generator, image: np.ndarray) -> Anomaly:
    """A large, low-contrast darker or lighter region with a soft or hard rim: a stain,
    a burn, uneven grinding, a worn patch; what a defect looks like when it is neither
    thin nor small."""
    mask = _blob_mask(rng, image.shape[:2], rng.uniform(0.02, 0.2))
    soft = rng.random() < 0.5
    weight = mask.astype(np.float32)
    if soft:  # fades in over a few pixels; the mask keeps only what visibly changed
        weight = cv2.GaussianBlur(weight, (0, 0), max(1.0, min(image.shape[:2]) / 80)) * mask
    gain = 1.0 + rng.choice([-1, 1]) * rng.uniform(0.12, 0.45)
    out = image.astype(np.float32) * (1 + (gain - 1) * weight[:, :, None])
    return _finish(image, out, mask, None, "shading")


def _finish(
    original: np.ndarray, out: np.ndarray, mask: np.ndarray, cls: str | None, kind: str
) -> Anomaly:
    if _is_grey(original):
        # A grey camera sees no colour: a tinted anomaly on a grey part would teach the
        # shortcut "colour = defect", which no real grey defect shows.
        out = np.repeat(out.mean(axis=2, keepdims=True), 3, axis=2)
    out = np.clip(np.round(out), 0, 255).astype(np.uint8)
    changed = mask & np.any(out != original, axis=2)  # exact: only pixels that changed
    return Anomaly(out, changed, cls, kind)


RECIPES: dict[str, Callable[[np.random.Generator, np.ndarray], Anomaly]] = {
    "perlin_texture": perlin_texture,
    "cut_paste": cut_paste,
    "scratch": scratch,
    "crack": crack,
    "dent": dent,
    "colour_shift": colour_shift,
    "spot": spot,
    "shading": shading,
}


def synthesise_anomaly(
    rng: np.random.Generator,
    image: np.ndarray,
    recipes: tuple[str, ...] | None = None,
    foreground: np.ndarray | None = None,
    min_pixels: int = 4,
) -> Anomaly:
    """Apply one recipe drawn from ``recipes`` (all by default).

    ``foreground`` (``(H, W)`` bool) confines the anomaly to the part: a defect on the
    conveyor behind an object teaches nothing. Retries until at least ``min_pixels``
    changed.
    """
    names = recipes or tuple(RECIPES)
    for _ in range(8):
        anomaly = RECIPES[names[int(rng.integers(len(names)))]](rng, image)
        if foreground is not None:
            keep = anomaly.mask & foreground
            out = np.where(keep[:, :, None], anomaly.image, image)
            anomaly = Anomaly(out, keep, anomaly.defect_class, anomaly.kind)
        if anomaly.mask.sum() >= min_pixels:
            return anomaly
    return anomaly


def estimate_foreground(
    good_images: list[np.ndarray], min_separation: float = 0.8
) -> np.ndarray | None:
    """The part's region from good images, or ``None`` for a texture (anomalies anywhere).

    Otsu splits the blurred median of the good images in two; the class owning most of
    the image border is the background. The split counts as an object only when it
    explains at least ``min_separation`` of the grey-level variance (a bright part on a
    dark conveyor, not shading across a texture) and leaves 20-95 % foreground.
    """
    grey = np.median(np.stack([im.mean(axis=2) for im in good_images]), axis=0)
    blurred = cv2.GaussianBlur(grey.astype(np.uint8), (0, 0), max(1.0, grey.shape[0] / 100))
    foreground, separation = foreground_split(blurred)
    if separation < min_separation or not 0.2 <= foreground.mean() <= 0.95:
        return None
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    return cv2.erode(foreground.astype(np.uint8), kernel).astype(bool)
