"""Defect renderers: one per class, each drawing on the part and returning exact truth.

A renderer changes the scene radiance in place and returns one :class:`SynthDefect` per
instance, with the boolean mask of exactly the pixels it changed and the physical
attributes a defect standard refers to (mm, mm², ΔE). Every renderer first finds a place
inside the part, away from its edge, its features and earlier defects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from skimage.color import lab2rgb, rgb2lab

from inspection.measure import delta_e, measure_region
from inspection.synth.scene import Scene
from inspection.synth.surfaces import LIGHT_DIR
from inspection.types import BBox, Defect

INTERNAL_CRACK_RATE = 0.3
SCRATCH_LENGTH_MM = (2.0, 30.0)
SCRATCH_WIDTH_PX = (1.0, 4.0)
MAX_SAGITTA = 0.05  # of the chord
SCRATCH_GAUGE_TOLERANCE = 0.035  # accepted |gauge / truth - 1| for a rasterised scratch
DENT_LENGTH_MM = (1.0, 8.0)
DENT_DEPTH_MM = (0.05, 1.0)
DELTA_E_RANGE = (0.8, 12.0)
CRACK_LENGTH_MM = (2.0, 20.0)
SPOT_DIAMETER_MM = (0.4, 3.0)
_ROUND = 6  # decimals kept in attributes (far below a pixel's area)


@dataclass(frozen=True)
class SynthDefect:
    """One rendered defect and its ground truth.

    Attributes
    ----------
    defect_class : str
        One of :data:`DEFECT_CLASSES`.
    mask : np.ndarray
        ``(H, W)`` bool, exactly the pixels the defect changed (all False when invisible).
    attributes : dict[str, float]
        Physical sizes: ``length_mm``, ``width_mm``, ``area_mm2``, and per class
        ``depth_mm`` (dent) or ``delta_e`` (colour deviation).
    visible : bool
        False for an internal crack, which only the tap test can hear.
    feature : str | None
        For ``missing_feature``, the id of the feature that is missing.
    relief : np.ndarray | None
        float32 change of the surface's height in mm over ``relief_window`` of the
        frame (a dent's depression, negative), what a 3D profiler would see; ``None``
        for a mark that leaves the surface flat. A window, not the frame: a dent is
        small and a frame may be large.
    relief_window : tuple[slice, slice] | None
        The rows and columns of the frame ``relief`` covers.
    """

    defect_class: str
    mask: np.ndarray
    attributes: dict[str, float] = field(default_factory=dict)
    visible: bool = True
    feature: str | None = None
    relief: np.ndarray | None = field(default=None, repr=False, compare=False)
    relief_window: tuple[slice, slice] | None = field(default=None, repr=False, compare=False)

    def add_relief(self, height: np.ndarray) -> None:
        """Add the defect's relief to a frame's ``height`` map, in place."""
        if self.relief is not None:
            height[self.relief_window] += self.relief

    @property
    def bbox(self) -> BBox | None:
        """Box around the mask, ``None`` when nothing is visible."""
        if not self.mask.any():
            return None
        ys, xs = np.nonzero(self.mask)
        return BBox(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)

    @property
    def centroid(self) -> tuple[float, float] | None:
        """``(x, y)`` mean of the mask pixels, ``None`` when nothing is visible."""
        if not self.mask.any():
            return None
        ys, xs = np.nonzero(self.mask)
        return float(xs.mean()), float(ys.mean())

    def as_defect(self) -> Defect:
        """The pipeline's :class:`inspection.types.Defect` for this ground truth."""
        return Defect(
            defect_class=self.defect_class,
            attributes=dict(self.attributes),
            bbox=self.bbox,
            mask=self.mask if self.visible else None,
        )

    def to_json(self) -> dict[str, Any]:
        """Manifest view (the mask itself lives in the ground-truth image)."""
        bbox, centroid = self.bbox, self.centroid
        return {
            "defect_class": self.defect_class,
            "visible": self.visible,
            "bbox": bbox.as_list() if bbox else None,
            "centroid": [round(c, 3) for c in centroid] if centroid else None,
            "attributes": dict(self.attributes),
            "feature": self.feature,
        }


Renderer = Callable[[np.ndarray, Scene, np.random.Generator, np.ndarray], list[SynthDefect]]


def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """A magnitude spread evenly over its orders: faint and strong both drawn often."""
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _rounded(attrs: dict[str, float]) -> dict[str, float]:
    return {k: round(float(v), _ROUND) for k, v in attrs.items()}


def _gauge(mask: np.ndarray, mm_per_px: float, defect_class: str) -> dict[str, float]:
    """Length, width and area as :func:`inspection.measure.measure_region` reads them
    (the width as a standard means it for the class:
    :meth:`~inspection.measure.Component.width_mm_of`)."""
    comp = measure_region(mask, mm_per_px)
    width = comp.width_mm_of(defect_class)
    return {"length_mm": comp.length_mm, "width_mm": width, "area_mm2": comp.area_mm2}


def _area_mm2(mask: np.ndarray, mm_per_px: float) -> float:
    return int(np.count_nonzero(mask)) * mm_per_px**2


def _candidates(free: np.ndarray, reach: float) -> np.ndarray:
    """Flat indices of free pixels whose surroundings within ``reach`` px are free too."""
    # Distance to the nearest non-free pixel: linear time whatever the reach.
    clearance = cv2.distanceTransform(free.astype(np.uint8), cv2.DIST_L2, 5)
    return np.flatnonzero(clearance > reach + 1.0)


def _sample(rng: np.random.Generator, candidates: np.ndarray, width: int) -> tuple[float, float]:
    i = int(candidates[rng.integers(candidates.size)])
    jitter = rng.uniform(-0.5, 0.5, size=2)
    return i % width + float(jitter[0]), i // width + float(jitter[1])


def _pick_centre(
    rng: np.random.Generator, free: np.ndarray, reach: float
) -> tuple[float, float] | None:
    """A random point (sub-pixel) with free surroundings within ``reach`` px."""
    candidates = _candidates(free, reach)
    return _sample(rng, candidates, free.shape[1]) if candidates.size else None


def _window(cx: float, cy: float, reach: float, size: int) -> tuple[slice, slice, np.ndarray]:
    """Pixel window around a point and the ``(2, h, w)`` coordinates of its pixel centres."""
    r = int(np.ceil(reach)) + 2
    x0, x1 = max(0, int(cx) - r), min(size, int(cx) + r + 2)
    y0, y1 = max(0, int(cy) - r), min(size, int(cy) + r + 2)
    grid = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    return slice(y0, y1), slice(x0, x1), grid


def _full(size: int, sy: slice, sx: slice, local: np.ndarray) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[sy, sx] = local
    return mask


def _reserve(free: np.ndarray, mask: np.ndarray, gap_px: int) -> None:
    """Take a defect's surroundings out of the free area, in place."""
    k = 2 * gap_px + 1
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool)
    free &= ~grown


def _perturbed_disc(
    rng: np.random.Generator,
    ys: np.ndarray,
    xs: np.ndarray,
    cx: float,
    cy: float,
    a: float,
    b: float,
    wobble: float,
) -> np.ndarray:
    """Pixel centres inside an ellipse whose radius wobbles with a few low harmonics."""
    phi = rng.uniform(0, np.pi)
    c, s = np.cos(phi), np.sin(phi)
    du, dv = xs - cx, ys - cy
    pu, pv = (c * du + s * dv) / a, (-s * du + c * dv) / b
    theta = np.arctan2(pv, pu)
    radius = np.ones_like(theta)
    for k in range(2, 6):
        radius += wobble / k * rng.uniform(0.3, 1.0) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return np.hypot(pu, pv) <= radius


# --------------------------------------------------------------------------- scratch


def _arc_distance(
    xs: np.ndarray, ys: np.ndarray, p0: np.ndarray, p1: np.ndarray, sagitta: float
) -> np.ndarray:
    """Distance of points to the circular arc from ``p0`` to ``p1`` bulging by ``sagitta``."""
    d = p1 - p0
    chord = float(np.hypot(*d))
    if sagitta < 1e-3 * chord:  # a straight segment
        t = np.clip(((xs - p0[0]) * d[0] + (ys - p0[1]) * d[1]) / chord**2, 0.0, 1.0)
        return np.hypot(xs - p0[0] - t * d[0], ys - p0[1] - t * d[1])
    radius = (chord**2 / 4 + sagitta**2) / (2 * sagitta)
    normal = np.array([-d[1], d[0]]) / chord
    centre = (p0 + p1) / 2 + normal * (radius - sagitta)
    half_angle = np.arcsin(min(1.0, chord / (2 * radius)))
    mid_dir = np.arctan2(-normal[1], -normal[0])  # from the centre to the arc's midpoint
    ang = np.arctan2(ys - centre[1], xs - centre[0])
    on_arc = np.abs((ang - mid_dir + np.pi) % (2 * np.pi) - np.pi) <= half_angle
    to_circle = np.abs(np.hypot(xs - centre[0], ys - centre[1]) - radius)
    to_ends = np.minimum(np.hypot(xs - p0[0], ys - p0[1]), np.hypot(xs - p1[0], ys - p1[1]))
    return np.where(on_arc, to_circle, to_ends)


def _scratch_geometry(
    rng: np.random.Generator, free: np.ndarray, total_px: float, width: float
) -> tuple[np.ndarray, np.ndarray, tuple[slice, slice]] | None:
    """Place one arc stroke whose raster a gauge reads at its true length.

    Returns the distance field and mask of the stroke in a window, or ``None``.
    """
    size = free.shape[0]
    ratio = rng.uniform(0.0, MAX_SAGITTA)
    half_angle = 2 * np.arctan(2 * ratio)  # sagitta/chord -> half the arc's angle
    stretch = half_angle / np.sin(half_angle) if half_angle > 1e-9 else 1.0
    chord = (total_px - width) / stretch  # arc length + width == total_px exactly
    candidates = _candidates(free, total_px / 2 + 1)
    if candidates.size == 0:
        return None
    for _ in range(40):
        centre = _sample(rng, candidates, size)
        theta = rng.uniform(0, np.pi)
        d = np.array([np.cos(theta), np.sin(theta)]) * chord / 2
        c = np.asarray(centre)
        sy, sx, (ys, xs) = _window(c[0], c[1], total_px / 2 + width, size)
        p0, p1 = c - d, c + d
        if rng.random() < 0.5:
            p0, p1 = p1, p0  # bulge to either side
        dist = _arc_distance(xs, ys, p0, p1, ratio * chord)
        mask = dist <= width / 2
        if not mask.any() or not free[sy, sx][mask].all():
            continue
        # At a few pixels' length the raster's end pixels decide the gauge reading; keep
        # only strokes whose raster a gauge reads at the drawn length.
        gauge = measure_region(mask, 1.0).length_px
        if abs(gauge / total_px - 1.0) <= SCRATCH_GAUGE_TOLERANCE:
            return dist, mask, (sy, sx)
    return None


def render_scratch(
    image: np.ndarray, scene: Scene, rng: np.random.Generator, free: np.ndarray
) -> list[SynthDefect]:
    """One or two thin, gently curved strokes.

    ``length_mm`` is the stroke's end-to-end length with its round caps (arc length of the
    centreline plus the width), ``width_mm`` the stroke width and ``area_mm2`` the mask's
    pixel count at scale. Strokes are specular on metal, hazy white on paint and dirty
    grey on ceramic.
    """
    mpp, size = scene.mm_per_px, scene.size
    out = []
    for _ in range(1 if rng.random() < 0.65 else 2):
        length_mm = log_uniform(rng, *SCRATCH_LENGTH_MM)
        width = (
            SCRATCH_WIDTH_PX[0] + (SCRATCH_WIDTH_PX[1] - SCRATCH_WIDTH_PX[0]) * rng.random() ** 1.5
        )
        placed = None
        for _attempt in range(8):
            total_px = max(length_mm / mpp, 2.5 * width)
            placed = _scratch_geometry(rng, free, total_px, width)
            if placed is not None:
                break
            length_mm *= 0.8  # no room for it: a shorter one
        if placed is None:
            continue
        dist, local, (sy, sx) = placed
        _paint_stroke(image, scene, rng, dist, local, (sy, sx), width)
        mask = _full(size, sy, sx, local)
        _reserve(free, mask, 3)
        attrs = {
            "length_mm": total_px * mpp,
            "width_mm": width * mpp,
            "area_mm2": _area_mm2(mask, mpp),
        }
        out.append(SynthDefect("scratch", mask, _rounded(attrs)))
    return out


def _paint_stroke(
    image: np.ndarray,
    scene: Scene,
    rng: np.random.Generator,
    dist: np.ndarray,
    local: np.ndarray,
    window: tuple[slice, slice],
    width: float,
) -> None:
    sy, sx = window
    # Anti-aliased inside the mask only, so that no pixel outside it changes.
    alpha = np.where(local, np.clip(width / 2 - dist + 0.5, 0.5, 1.0), 0.0)
    h, w = local.shape
    # Scratch depth varies along its length.
    along = cv2.resize(rng.uniform(0.55, 1.0, (3, 3)).astype(np.float32), (w, h))
    strength = rng.uniform(0.45, 0.85) * min(1.0, 0.55 + 0.2 * width)
    a = (alpha * along * strength)[:, :, None].astype(np.float32)
    patch = image[sy, sx]
    surface = scene.product.surface
    if surface == "brushed_metal" and rng.random() < 0.75:
        target = np.array([0.97, 0.97, 0.98], np.float32)  # catches the light
    elif surface == "brushed_metal":
        target = patch * 0.45  # facing away from the light
    elif surface == "painted":
        target = np.array([0.78, 0.8, 0.82], np.float32)  # scuffed clear coat / primer
    else:
        target = np.array([0.42, 0.41, 0.4], np.float32)  # dirt in a glaze scratch
    image[sy, sx] = patch * (1 - a) + target * a


# --------------------------------------------------------------------------- dent


def render_dent(
    image: np.ndarray, scene: Scene, rng: np.random.Generator, free: np.ndarray
) -> list[SynthDefect]:
    """A smooth elliptical depression, visible only through its shading.

    Height ``h = -depth * (1 - d^2)^2`` inside the ellipse (``d`` the normalised elliptical
    radius), zero outside; lit from the station's light, so the side facing the light is
    in shadow and the far slope catches it. Mask = the ellipse.
    """
    mpp, size = scene.mm_per_px, scene.size
    min_len = max(DENT_LENGTH_MM[0], 6.0 * mpp)
    length_mm = log_uniform(rng, min_len, max(DENT_LENGTH_MM[1], 2 * min_len))
    width_mm = max(length_mm * rng.uniform(0.5, 1.0), 5.0 * mpp)
    depth_mm = min(log_uniform(rng, *DENT_DEPTH_MM), 0.15 * length_mm)
    a, b = length_mm / mpp / 2, width_mm / mpp / 2
    for _ in range(30):
        centre = _pick_centre(rng, free, a + 1)
        if centre is not None:
            break
        a, b = a * 0.85, b * 0.85
    if centre is None:
        return []
    length_mm, width_mm = 2 * a * mpp, 2 * b * mpp
    cx, cy = centre
    sy, sx, (ys, xs) = _window(cx, cy, a + 1, size)
    phi = rng.uniform(0, np.pi)
    c, s = np.cos(phi), np.sin(phi)
    pu, pv = c * (xs - cx) + s * (ys - cy), -s * (xs - cx) + c * (ys - cy)
    d2 = (pu / a) ** 2 + (pv / b) ** 2
    local = d2 <= 1.0
    # Slope of the height field in mm/mm, in the dent's axes and then the image's.
    k = np.where(local, 4.0 * depth_mm * (1.0 - d2), 0.0)
    hu = k * pu / (a * a) / mpp
    hv = k * pv / (b * b) / mpp
    hx, hy = c * hu - s * hv, s * hu + c * hv
    elevation = np.deg2rad(40.0)
    light = np.array([*(LIGHT_DIR * np.cos(elevation)), np.sin(elevation)])
    normal_dot = (-hx * light[0] - hy * light[1] + light[2]) / np.sqrt(1 + hx**2 + hy**2)
    shade = normal_dot / light[2] - 1.0
    gain = {"brushed_metal": 1.5, "painted": 1.2, "ceramic": 1.0}[scene.product.surface]
    # Soft-clipped: the lit slope runs towards a highlight, the other into shadow.
    s = np.tanh(gain * shade / 0.5)[:, :, None].astype(np.float32)
    patch = image[sy, sx]
    image[sy, sx] = np.where(s > 0, patch + (0.96 - patch) * 0.65 * s, patch * (1 + 0.6 * s))
    mask = _full(size, sy, sx, local)
    _reserve(free, mask, 3)
    relief = np.where(local, -depth_mm * (1.0 - d2) ** 2, 0.0).astype(np.float32)
    attrs = {
        "length_mm": length_mm,
        "width_mm": width_mm,
        "area_mm2": _area_mm2(mask, mpp),
        "depth_mm": depth_mm,
    }
    return [SynthDefect("dent", mask, _rounded(attrs), relief=relief, relief_window=(sy, sx))]


# --------------------------------------------------------------------------- colour


def lab_shift_for(
    reference_rgb: tuple[int, int, int], target: float, direction: np.ndarray
) -> tuple[np.ndarray, float]:
    """Scale a CIELAB direction so the shifted reference is ``target`` ΔE00 away.

    Returns
    -------
    tuple[np.ndarray, float]
        The Lab shift and the achieved CIEDE2000 (short of ``target`` only at the gamut).
    """
    ref = np.asarray(reference_rgb, np.float64) / 255.0
    ref_lab = rgb2lab(ref[None, None, :])[0, 0]

    def de(t: float) -> float:
        shifted = np.clip(lab2rgb((ref_lab + t * direction)[None, None, :])[0, 0], 0.0, 1.0)
        return float(delta_e(ref, shifted))

    lo, hi = 0.0, max(1.0, 3.0 * target)
    while de(hi) < target and hi < 200:
        hi *= 2
    for _ in range(30):  # ΔE00 grows monotonically along a ray: bisect
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if de(mid) < target else (lo, mid)
    t = (lo + hi) / 2
    return t * direction, de(t)


def render_color_deviation(
    image: np.ndarray, scene: Scene, rng: np.random.Generator, free: np.ndarray
) -> list[SynthDefect]:
    """An irregular hard-edged patch whose colour is shifted in CIELAB.

    ``delta_e`` is CIEDE2000 between the product's reference colour and the reference
    plus the applied shift; the texture inside the patch keeps its relief.
    """
    mpp, size = scene.mm_per_px, scene.size
    length_mm = log_uniform(rng, max(3.0, 8 * mpp), 20.0)
    aspect = rng.uniform(0.5, 1.0)
    target = log_uniform(rng, *DELTA_E_RANGE)
    # Mostly a hue/chroma drift (heat tint, pigment), with some lightness change.
    direction = rng.normal(size=3) * np.array([0.6, 1.0, 1.0])
    direction /= np.linalg.norm(direction)
    shift, achieved = lab_shift_for(scene.product.reference_rgb, target, direction)
    a = length_mm / mpp / 2
    centre = None
    for _ in range(20):
        centre = _pick_centre(rng, free, 1.25 * a)
        if centre is not None:
            break
        a *= 0.85
    if centre is None:
        return []
    sy, sx, (ys, xs) = _window(centre[0], centre[1], 1.25 * a, size)
    local = _perturbed_disc(rng, ys, xs, centre[0], centre[1], a / 1.2, aspect * a / 1.2, 0.35)
    local &= free[sy, sx]
    patch = image[sy, sx]
    lab = rgb2lab(patch[local][:, None, :].astype(np.float64))
    shifted = np.clip(lab2rgb(lab + shift[None, None, :]), 0.0, 1.0)[:, 0, :]
    patch[local] = shifted.astype(np.float32)
    mask = _full(size, sy, sx, local)
    _reserve(free, mask, 3)
    attrs = {**_gauge(mask, mpp, "color_deviation"), "delta_e": achieved}
    return [SynthDefect("color_deviation", mask, _rounded(attrs))]


# --------------------------------------------------------------------------- crack


def _crack_path(
    rng: np.random.Generator, start: np.ndarray, heading: float, length_px: float
) -> np.ndarray:
    """Jagged random walk: short steps, heading wandering around its mean."""
    steps = max(3, int(length_px / 2.0))
    wander = np.zeros(steps)
    kicks = rng.normal(0.0, 0.32, steps)
    for i in range(1, steps):
        wander[i] = 0.6 * wander[i - 1] + kicks[i]
    angles = heading + wander
    step = length_px / steps
    moves = np.stack([np.cos(angles), np.sin(angles)], axis=1) * step
    return np.vstack([start, start + np.cumsum(moves, axis=0)])


def _draw_crack(size: int, main: np.ndarray, branches: list[np.ndarray]) -> np.ndarray:
    canvas = np.zeros((size, size), np.uint8)
    scale = 8  # cv2 sub-pixel coordinates (shift=3)
    for path in (main, *branches):
        cv2.polylines(canvas, [np.round(path * scale).astype(np.int32)], False, 1, 1, cv2.LINE_8, 3)
    n = len(main)
    if n > 20:
        # A long crack has opened one pixel wider in its middle.
        mid = np.zeros_like(canvas)
        stretch = main[int(0.4 * n) : int(0.6 * n) + 1]
        cv2.polylines(mid, [np.round(stretch * scale).astype(np.int32)], False, 1, 1, cv2.LINE_8, 3)
        canvas |= cv2.dilate(mid, np.ones((2, 2), np.uint8))
    return canvas.astype(bool)


def render_crack(
    image: np.ndarray, scene: Scene, rng: np.random.Generator, free: np.ndarray
) -> list[SynthDefect]:
    """A thin jagged dark line, sometimes branched; about 30% are internal (invisible).

    Sizes come from the crack's mask through :func:`inspection.measure.measure_region`,
    so the truth is what a gauge reads. An internal crack carries the same geometric
    sizes but an empty mask and ``visible=False``.
    """
    mpp, size = scene.mm_per_px, scene.size
    internal = rng.random() < INTERNAL_CRACK_RATE
    length_px = log_uniform(rng, *CRACK_LENGTH_MM) / mpp
    mask = None
    for attempt in range(60):
        centre = _pick_centre(rng, free, 3)
        if centre is None:
            return []
        heading = rng.uniform(0, 2 * np.pi)
        main = _crack_path(rng, np.asarray(centre), heading, length_px)
        main -= (main[-1] - main[0]) / 2  # centre the crack on the chosen point
        branches = []
        if rng.random() < 0.35:
            at = main[int(len(main) * rng.uniform(0.3, 0.7))]
            turn = rng.choice([-1, 1]) * rng.uniform(0.4, 1.0)
            branches.append(
                _crack_path(rng, at, heading + turn, length_px * rng.uniform(0.2, 0.45))
            )
        candidate = _draw_crack(size, main, branches)
        inside = (main.min() >= 0) and (main.max() < size - 1)
        if inside and candidate.any() and free[candidate].all():
            mask = candidate
            break
        if attempt % 10 == 9:
            length_px *= 0.8
    if mask is None:
        return []
    attrs = _gauge(mask, mpp, "crack")
    _reserve(free, mask, 3)
    if internal:
        return [SynthDefect("crack", np.zeros_like(mask), _rounded(attrs), visible=False)]
    darkness = rng.uniform(0.45, 0.7) * cv2.resize(
        rng.uniform(0.85, 1.15, (4, 4)).astype(np.float32), (size, size)
    )
    image[mask] *= darkness[mask][:, None]
    return [SynthDefect("crack", mask, _rounded(attrs))]


# --------------------------------------------------------------------------- spots

_SPOT_COLOURS = {
    "oil": np.array([0.16, 0.13, 0.09], np.float32),
    "dust": np.array([0.45, 0.41, 0.36], np.float32),
    "residue": np.array([0.55, 0.42, 0.18], np.float32),
}


def render_contamination(
    image: np.ndarray, scene: Scene, rng: np.random.Generator, free: np.ndarray
) -> list[SynthDefect]:
    """One to four irregular round spots (oil, dust, residue), one defect per spot."""
    mpp, size = scene.mm_per_px, scene.size
    count = int(rng.choice([1, 2, 3, 4], p=[0.4, 0.3, 0.2, 0.1]))
    out = []
    for _ in range(count):
        diameter_px = max(log_uniform(rng, *SPOT_DIAMETER_MM) / mpp, 3.0)
        r = diameter_px / 2
        centre = _pick_centre(rng, free, 1.3 * r + 1)
        if centre is None:
            break
        sy, sx, (ys, xs) = _window(centre[0], centre[1], 1.3 * r + 1, size)
        local = _perturbed_disc(rng, ys, xs, centre[0], centre[1], r, r * rng.uniform(0.7, 1), 0.2)
        if not local.any():
            continue
        kind = str(rng.choice(list(_SPOT_COLOURS)))
        colour = _SPOT_COLOURS[kind] * rng.uniform(0.85, 1.15)
        opacity = {"oil": (0.35, 0.6), "dust": (0.45, 0.8), "residue": (0.3, 0.55)}[kind]
        # Thicker in the middle; dust is grainy.
        rr = np.hypot(xs - centre[0], ys - centre[1]) / (1.3 * r)
        body = rng.uniform(*opacity) * (1.0 - 0.45 * np.clip(rr, 0, 1) ** 2)
        if kind == "dust":
            body = body * rng.uniform(0.7, 1.2, body.shape)
        alpha = np.where(local, np.clip(body, 0.15, 0.95), 0.0)[:, :, None].astype(np.float32)
        patch = image[sy, sx]
        image[sy, sx] = patch * (1 - alpha) + colour * alpha
        mask = _full(size, sy, sx, local)
        _reserve(free, mask, 3)
        out.append(SynthDefect("contamination", mask, _rounded(_gauge(mask, mpp, "contamination"))))
    return out


# --------------------------------------------------------------------------- features


def render_missing_feature(
    image: np.ndarray, scene: Scene, rng: np.random.Generator, free: np.ndarray
) -> list[SynthDefect]:
    """The feature named by ``scene.omitted`` was never made; mask = its footprint.

    The compositor already left it out (the surface texture runs through), so this only
    records the truth.
    """
    if scene.omitted is None:
        raise ValueError("missing_feature needs a scene built with an omitted feature")
    feature = scene.product.feature(scene.omitted)
    mask = scene.footprint(feature)
    attrs = _rounded(_gauge(mask, scene.mm_per_px, "missing_feature"))
    return [SynthDefect("missing_feature", mask, attrs, feature=feature.id)]


def choose_missing_feature(scene_features: tuple[str, ...], rng: np.random.Generator) -> str:
    """Which feature a missing-feature part lacks."""
    return str(scene_features[int(rng.integers(len(scene_features)))])


RENDERERS: dict[str, Renderer] = {
    "scratch": render_scratch,
    "dent": render_dent,
    "color_deviation": render_color_deviation,
    "crack": render_crack,
    "contamination": render_contamination,
    "missing_feature": render_missing_feature,
}
