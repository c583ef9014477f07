"""Measurement: defect masks to physical sizes, and colour difference (CIEDE2000).

Sizes come from connected components of a binary mask. ``length_mm`` is the long side
of the component's minimum-area rotated rectangle (the extent a gauge would read),
``width_mm`` its area divided by that length (mean width of a thin stroke), and
``area_mm2`` its pixel count at the station's scale.

A fine defect (scratch, crack, speck of dirt) is measured on the image around the region
the map found (:func:`gauge_on_image`), whose blurred edges read it larger than it is;
the pieces of one broken stroke are measured as one (:func:`join_fragments`); and a
region's colour is read on its core (:func:`region_delta_e`), against the surface under
it read along the light on the face (:func:`surface_along_light`).

On a 3D profiler's height map a dent is measured on its own footprint
(:func:`footprint_below_surface`) with its depth (:func:`depth_below_surface`), and the
map can be searched for depressions the image did not show (:func:`depressions`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from skimage.color import deltaE_ciede2000, rgb2lab

from inspection.types import BBox, Defect

STROKE_CLASSES = frozenset({"scratch", "crack"})
"""Line-shaped defect classes: their width is a stroke's (:meth:`Component.width_mm_of`),
and the pieces of one the map broke are one defect
(:func:`~inspection.pipeline.defects_from_detection`)."""


@dataclass(frozen=True)
class Component:
    """One connected region of a mask, measured.

    ``length_px`` is the long side of its minimum-area rectangle; ``width_px`` its mean
    width (area / length), a stroke's width however it bends; ``breadth_px`` the short
    side of that rectangle, its width across its length as a caliper reads it."""

    mask: np.ndarray  # (H, W) bool
    bbox: BBox
    centroid: tuple[float, float]  # (x, y) px
    area_px: int
    length_px: float
    width_px: float
    mm_per_px: float
    breadth_px: float

    @property
    def length_mm(self) -> float:
        return self.length_px * self.mm_per_px

    @property
    def width_mm(self) -> float:
        return self.width_px * self.mm_per_px

    @property
    def area_mm2(self) -> float:
        return self.area_px * self.mm_per_px**2

    def width_mm_of(self, defect_class: str) -> float:
        """The region's width as a standard means it for ``defect_class``: a stroke's
        (:data:`STROKE_CLASSES`) mean width, since the rectangle around a bowed stroke is
        as wide as its bow; any other defect's breadth, across its length, which its mean
        width reads short (a disc's by a fifth: pi/4 of its diameter)."""
        stroke = defect_class in STROKE_CLASSES
        return (self.width_px if stroke else self.breadth_px) * self.mm_per_px

    def attributes(self, defect_class: str) -> dict[str, float]:
        """``length_mm``, ``width_mm`` (:meth:`width_mm_of`) and ``area_mm2``."""
        return {
            "length_mm": round(self.length_mm, 4),
            "width_mm": round(self.width_mm_of(defect_class), 4),
            "area_mm2": round(self.area_mm2, 4),
        }


def measure_region(mask: np.ndarray, mm_per_px: float) -> Component:
    """Measure one region (all its pixels taken together) of a ``(H, W)`` mask."""
    mask = np.ascontiguousarray(mask, dtype=bool)
    box = mask_bbox(mask)
    if box is None:
        raise ValueError("cannot measure an empty mask")
    return _measure(mask, box, mm_per_px)


def mask_bbox(mask: np.ndarray) -> BBox | None:
    """The box around a ``(H, W)`` mask's pixels (``None`` when empty), in C: the rest of
    a measurement then reads only the box, not the whole frame."""
    x, y, w, h = cv2.boundingRect(np.ascontiguousarray(mask, dtype=bool).view(np.uint8))
    return BBox(x, y, x + w, y + h) if w and h else None


def _measure(mask: np.ndarray, box: BBox, mm_per_px: float) -> Component:
    ys, xs = np.nonzero(mask[box.window])
    xs, ys = xs + box.x0, ys + box.y0
    points = np.stack([xs, ys], axis=1).astype(np.float32)
    # Pixel centres span one pixel less than the pixels themselves: add it back.
    (_, _), (w, h), _ = cv2.minAreaRect(points)
    length = max(w, h) + 1.0
    area = int(xs.size)
    return Component(
        mask=mask,
        bbox=box,
        centroid=(float(xs.mean()), float(ys.mean())),
        area_px=area,
        length_px=float(length),
        width_px=float(area / length),
        mm_per_px=float(mm_per_px),
        breadth_px=float(min(w, h) + 1.0),
    )


def connected_components(
    mask: np.ndarray, mm_per_px: float, min_area_px: int = 1
) -> list[Component]:
    """Split a ``(H, W)`` mask into 8-connected components and measure each.

    Components smaller than ``min_area_px`` are dropped (isolated noise pixels). Each is
    cut from its own box: the cost grows with the regions' size, not regions x frame.
    """
    mask = np.asarray(mask, dtype=np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    comps = []
    for i in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[i])
        if area < min_area_px:
            continue
        box = BBox(x, y, x + w, y + h)
        full = np.zeros(mask.shape, bool)
        full[box.window] = labels[box.window] == i
        comps.append(_measure(full, box, mm_per_px))
    return comps


def join_fragments(components: list[Component], gap_px: int) -> list[Component]:
    """Components within ``gap_px`` of one another (pixel centre to pixel centre), joined
    and measured as one region, each group where its first member was.

    A thin faint stroke can break into pieces where its map dips under the cut; a gauge
    laid along it reads one stroke, and a standard judges one (a 25 mm scratch read as
    four 6 mm ones would pass where it should be rejected). The joined region holds only
    the pieces' own pixels: its length spans the gaps, its area does not.
    """
    pieces_of = [[components[i] for i in group] for group in fragment_groups(components, gap_px)]
    return [pieces[0] if len(pieces) == 1 else _joined(pieces) for pieces in pieces_of]


def fragment_groups(components: list[Component], gap_px: int) -> list[list[int]]:
    """The indices of ``components`` grouped as :func:`join_fragments` joins them, each
    group in order and the groups in the order of their first members."""
    if gap_px < 1:
        return [[i] for i in range(len(components))]
    group = list(range(len(components)))

    def root(i: int) -> int:
        while group[i] != i:
            group[i] = group[group[i]]
            i = group[i]
        return i

    kernel = _disc(gap_px)
    for i, a in enumerate(components):
        window = _grown(a.bbox, gap_px, a.mask.shape)
        near = cv2.dilate(np.ascontiguousarray(a.mask[window], np.uint8), kernel) > 0
        for j in range(i + 1, len(components)):
            b = components[j]
            if _boxes_apart(a.bbox, b.bbox, gap_px) or root(i) == root(j):
                continue
            if (near & b.mask[window]).any():
                group[root(j)] = root(i)
    members: dict[int, list[int]] = {}
    for i in range(len(components)):
        members.setdefault(root(i), []).append(i)
    return list(members.values())


def _grown(box: BBox, pad: int, shape: tuple[int, ...]) -> tuple[slice, slice]:
    return (
        slice(max(0, box.y0 - pad), min(shape[0], box.y1 + pad)),
        slice(max(0, box.x0 - pad), min(shape[1], box.x1 + pad)),
    )


def _boxes_apart(a: BBox, b: BBox, gap: int) -> bool:
    return b.x0 > a.x1 + gap or a.x0 > b.x1 + gap or b.y0 > a.y1 + gap or a.y0 > b.y1 + gap


def _joined(pieces: list[Component]) -> Component:
    mask = np.zeros(pieces[0].mask.shape, bool)
    for piece in pieces:
        mask[piece.bbox.window] |= piece.mask[piece.bbox.window]
    box = BBox(
        min(p.bbox.x0 for p in pieces),
        min(p.bbox.y0 for p in pieces),
        max(p.bbox.x1 for p in pieces),
        max(p.bbox.y1 for p in pieces),
    )
    return _measure(mask, box, pieces[0].mm_per_px)


COLOUR_CORE_PX = 2
"""How far inside a region's edge (px) its colour is read (:func:`region_delta_e`).
Chosen on validation parts (seed 11) among 0-4 px: a colour patch's ΔE read on the map's
whole region was 9-15 % under the truth (median; 8-13 of 24-27 patches more than 15 %
under, the side that passes a patch the standard rejects), on the 2 px core 0.3-2 %
(0-3 more than 15 % under); benchmarks/README.md, "Colour read on the region's core"."""

GAUGE_BACKGROUND_PX = 15
"""Median window (px) that estimates the surface under a fine defect: a median over a
window more than twice a stroke's width, or a speck's, does not see it."""

GAUGE_SEARCH_PX = 3
"""How far (px) around the map's region the gauge looks for the defect's pixels: the
map, coarser than the image, cuts a faint stroke's ends short by about a pixel."""

GAUGE_PEAK_PX = 9
"""Window (px) of a pixel's local peak contrast: the defect is cut at half its own peak
nearby (full width at half maximum), which follows a contrast that varies along a
stroke."""


_RING_PX = 10  # the ring around a region whose contrast is the surface's noise


def gauge_on_image(image: np.ndarray, region: Component, edge: float = 0.5) -> Component | None:
    """A fine defect (a scratch, a crack, a speck of dirt) measured on the image around
    the region the map found.

    The map says where the defect is; its edges are the map's, blurred by its stride, so
    a defect measured on the map reads larger than it is (a stroke 0.2-0.4 mm wider and
    a little shorter, a speck 5-30 % larger in area, on the synthetic line). The gauge
    reads the image instead, as a caliper would: each pixel's contrast is its colour
    distance from the surface under it (a median of ``GAUGE_BACKGROUND_PX``), and the
    defect is the pixels within ``GAUGE_SEARCH_PX`` of the region that reach ``edge``
    of the contrast peak around them (0.5: full width at half maximum) and stand out of
    the surface's own noise (3 robust standard deviations of the contrast in a ring
    around the region), connected to the region, and not clearly on the other side of
    the surface from the mark (:func:`_other_side`: a brushed surface's light streak
    beside a dark speck is the surface's, not the speck's). Half maximum is the edge of a
    hard-edged mark; a speck of oil or dust thins out towards its rim, and a lower
    ``edge`` keeps the rim. A piece of the region the gauge sees nothing on (one of a
    broken stroke's, too faint on a brushed surface) stands as the map cut it.

    Returns ``None`` when the pixels found are fewer than half the region's length (too
    faint to gauge: what stands out is the surface's noise), or 3: the caller keeps the
    map's measurement.
    """
    pad = GAUGE_BACKGROUND_PX + 2 * GAUGE_SEARCH_PX + _RING_PX
    window = _grown(region.bbox, pad, region.mask.shape)
    inside = np.ascontiguousarray(region.mask[window], np.uint8)
    crop = _as_uint8(image[window])
    surface = cv2.medianBlur(crop, GAUGE_BACKGROUND_PX).astype(np.float32)
    contrast = np.abs(crop.astype(np.float32) - surface)  # (h, w) or (h, w, C)
    if contrast.ndim == 3:
        contrast = np.linalg.norm(contrast, axis=2)
    near = cv2.dilate(inside, _disc(GAUGE_SEARCH_PX)) > 0
    ring = (cv2.dilate(inside, _disc(_RING_PX)) > 0) & ~near
    floor = _noise_floor(contrast[ring]) if ring.any() else 0.0
    peak = cv2.dilate(contrast * near, _disc(GAUGE_PEAK_PX // 2))
    stroke = near & (contrast >= edge * peak) & (contrast > floor)
    stroke &= ~_other_side(image[window], stroke & (inside > 0), ring)
    _, labels = cv2.connectedComponents(stroke.view(np.uint8), connectivity=8)
    touching = np.unique(labels[stroke & (inside > 0)])
    stroke &= np.isin(labels, touching[touching > 0])
    if stroke.sum() < max(3.0, 0.5 * region.length_px):
        return None  # not a stroke along the region: a few pixels of the surface's noise
    # A piece of the region (a stroke the map broke, joined) on which the gauge sees
    # nothing over the surface's noise is kept as the map cut it: dropped, it would read
    # the stroke short by that piece.
    _, pieces = cv2.connectedComponents(inside, connectivity=8)
    seen = np.unique(pieces[cv2.dilate(stroke.view(np.uint8), _disc(1)) > 0])
    stroke |= (pieces > 0) & ~np.isin(pieces, seen)
    mask = np.zeros(region.mask.shape, bool)
    mask[window] = stroke
    return _measure(mask, mask_bbox(mask), region.mm_per_px)


def _other_side(crop: np.ndarray, own: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """The pixels of ``crop`` that stand clearly on the other side of the surface from
    the mark's own pixels ``own`` (lighter beside a dark mark: a streak of a brushed
    surface beside a speck; 3 robust deviations of the ``ring``'s luminance off it)."""
    off = _off_surface(crop)
    if not own.any() or not ring.any():
        return np.zeros(off.shape, bool)
    side = 1.0 if np.median(off[own]) >= 0 else -1.0
    return side * off < -3.0 * max(_robust_deviation(off[ring]), 1e-6)


FOLLOW_MIN_SIGMAS = 3.0
"""A step of :func:`follow_stroke` finds the stroke where a pixel's luminance stands this
many robust deviations of the surface's (a ring around the stroke) off the surface, on
the stroke's side (darker or lighter)..."""

FOLLOW_SHARE = 0.4
"""... and at least this share of the stroke's own median contrast: on a printed or
speckled surface, whose deviation undersells its marks, a step must look like the
stroke, not like the print."""

FOLLOW_GAP_PX = 2
"""Steps in a row that find nothing and end :func:`follow_stroke` at that end."""

FOLLOW_BEND_DEG = 30.0
"""How far from the stroke's own direction the follower may turn (a scratch bows
gently; a turn sharper than this is something else)."""

FOLLOW_WINDOW_PX = 96
"""How far around a stroke :func:`follow_stroke` reads the image first (px); the whole
frame where the stroke runs on to that window's edge."""

_FOLLOW_TRAIL = 8  # the last steps whose line is the direction followed


def follow_stroke(image: np.ndarray, stroke: Component) -> Component:
    """A scratch or crack the map saw only in part, followed on the image past its ends.

    A long faint stroke can light the map over a fifth of its length: the region, and
    the gauge around it (:func:`gauge_on_image`), read it a fraction of its length
    (benchmarks/README.md, "Scratches the map sees only in part"). From each end of the
    stroke, along its direction (its pixels' principal axis, then the line of its last
    steps, within :data:`FOLLOW_BEND_DEG` of it), each step takes the pixel of the three
    across its path whose luminance stands farthest off the surface under it (a median
    of ``GAUGE_BACKGROUND_PX``) on the stroke's side, where it stands out as
    :data:`FOLLOW_MIN_SIGMAS` and :data:`FOLLOW_SHARE` say; the end is where
    :data:`FOLLOW_GAP_PX` steps in a row find nothing (or the frame's edge). The pixels
    found are added to the stroke, which is measured again.

    A stroke shorter than 6 px, whose direction is not resolved, or with no surface
    around it to read, comes back as it was.
    """
    if stroke.length_px < 6 or stroke.area_px < 4:
        return stroke
    frame = (slice(0, stroke.mask.shape[0]), slice(0, stroke.mask.shape[1]))
    # Near the stroke first; the whole frame only where the stroke runs on out of that.
    for window in (_grown(stroke.bbox, FOLLOW_WINDOW_PX, stroke.mask.shape), frame):
        found = _followed_in(image, stroke, window)
        if found is None or window == frame or not _touches_edge(found):
            break
    if found is None or not found.any():
        return stroke
    mask = stroke.mask.copy()
    mask[window] |= found
    return _measure(mask, mask_bbox(mask), stroke.mm_per_px)


def _followed_in(
    image: np.ndarray, stroke: Component, window: tuple[slice, slice]
) -> np.ndarray | None:
    """:func:`follow_stroke`'s pixels found in a window of the frame (bool, the window's
    shape); ``None`` with no surface around the stroke to read."""
    off = _off_surface(image[window])
    inside = np.ascontiguousarray(stroke.mask[window], np.uint8)
    ring = (cv2.dilate(inside, _disc(_RING_PX)) > 0) & ~(cv2.dilate(inside, _disc(3)) > 0)
    if ring.sum() < 20:
        return None
    own = off[inside > 0]
    side = 1.0 if np.median(own) >= 0 else -1.0
    level = max(
        FOLLOW_MIN_SIGMAS * _robust_deviation(off[ring]),
        FOLLOW_SHARE * float(np.median(side * own)),
        1e-6,
    )
    points = np.stack(np.nonzero(inside)[::-1], axis=1).astype(np.float64)  # (N, 2) x, y
    centre = points.mean(axis=0)
    axis = np.linalg.svd(points - centre, full_matrices=False)[2][0]  # (2,)
    along = (points - centre) @ axis
    found = np.zeros(inside.shape, bool)
    for sign in (1.0, -1.0):
        start = points[int(np.argmax(sign * along))]
        _follow_from(side * off, start, sign * axis, level, found)
    return found


def _touches_edge(found: np.ndarray) -> bool:
    return bool(found[0].any() or found[-1].any() or found[:, 0].any() or found[:, -1].any())


def _follow_from(
    contrast: np.ndarray, start: np.ndarray, heading: np.ndarray, level: float, found: np.ndarray
) -> None:
    """:func:`follow_stroke` from one end: marks in ``found`` the pixels of ``contrast``
    (signed to the stroke's side) at or over ``level`` stepped on from ``start`` along
    ``heading`` (unit, x y). Plain floats: a step is a few microseconds."""
    height, width = contrast.shape
    x, y = float(start[0]), float(start[1])
    hx, hy = float(heading[0]), float(heading[1])
    dx, dy, misses = hx, hy, 0
    trail = [(x, y)]
    bend = math.cos(math.radians(FOLLOW_BEND_DEG))
    for _ in range(max(height, width)):
        ax, ay = x + dx, y + dy
        best, best_value = None, level
        for offset in (-1, 0, 1):  # across the path
            px, py = round(ax - offset * dy), round(ay + offset * dx)
            if 0 <= px < width and 0 <= py < height and contrast[py, px] >= best_value:
                best, best_value = (px, py), contrast[py, px]
        if best is None:
            misses += 1
            if misses > FOLLOW_GAP_PX:
                return
            x, y = ax, ay
            continue
        misses, (x, y) = 0, (float(best[0]), float(best[1]))
        found[best[1], best[0]] = True
        trail.append((x, y))
        if len(trail) >= _FOLLOW_TRAIL:  # the line of the last steps: a gentle bow
            sx, sy = x - trail[-_FOLLOW_TRAIL][0], y - trail[-_FOLLOW_TRAIL][1]
            norm = math.hypot(sx, sy)
            if norm and (sx * hx + sy * hy) / norm > bend:
                dx, dy = sx / norm, sy / norm


SHARE_NEAR_PX, SHARE_RING_PX = 3, 6  # a mark's pixels, and the ring its surface noise is read on


def one_signed_share(image: np.ndarray, region: Component) -> float:
    """How much of a mark lies on one side of the surface: ``|sum d| / sum |d|`` over the
    pixels near a region whose luminance ``d`` against the surface under them (a median
    of ``GAUGE_BACKGROUND_PX``) stands out of the surface's noise.

    A speck is one colour laid on the surface: 1 for a mark darker (or lighter) than the
    surface throughout. A dent shows only through its shading, a lit slope beside a
    shadowed one: near 0.
    """
    window = _grown(region.bbox, GAUGE_BACKGROUND_PX + SHARE_RING_PX, region.mask.shape)
    inside = np.ascontiguousarray(region.mask[window], np.uint8)
    d = _off_surface(image[window])
    near = cv2.dilate(inside, _disc(SHARE_NEAR_PX)) > 0
    ring = (cv2.dilate(inside, _disc(SHARE_RING_PX)) > 0) & ~near
    floor = _noise_floor(np.abs(d[ring])) if ring.any() else 0.0
    strong = near & (np.abs(d) > floor)
    if not strong.any():
        return 0.0
    return float(abs(d[strong].sum()) / np.abs(d[strong]).sum())


SHADING_RING_PX = 6
"""The ring (outside a dent's region grown by :data:`COLOUR_HOLE_PX`) whose median
luminance is the lit surface a dent's shading is read against."""

SHADING_LINEAR_MAX = 0.4
"""The most a dent may darken the surface (a share of its luminance) for its depth to be
read from its shading: the darkening grows in proportion to the slope only on gentle
slopes. A steeper one falls towards its shadow's floor and reads short (a held-out
tile's 0.42 mm dent read 0.30 mm, a validation tile's 0.21 mm one 0.12 mm): its depth is
left unread, and a depth clause goes to REVIEW. On the held-out synthetic tiles, read
with the validation tiles' fit, the 20 gentle dents the line found read their depth
within 0.010 mm at the median and 0.023 mm in nine of ten
(``benchmarks/shading_depth.py``)."""


@dataclass(frozen=True)
class DentShading:
    """How a dent shades the surface around it, as the station's light falls on it.

    A smooth depression lit from one side darkens the slope that faces the light (it
    turns away from it) and brightens the far one. Under a light at a moderate
    elevation the darkening is about proportional to the slope along the light, so its
    integral along the light, across the dark slope to the bottom, is proportional to
    the depth (Pentland's linear shape from shading): ``depth = integral / gain``, with
    the station's ``gain`` fitted on dents of known depth
    (:func:`~inspection.standards.guard.fit_shading_depth`).

    Attributes
    ----------
    darkening : np.ndarray
        ``(h, w)`` float32: the odd part of the relative shading (``luminance / surface
        - 1``) about the region's centre, where it darkens, on the region grown by
        :data:`COLOUR_HOLE_PX`; 0 elsewhere. A dent's two slopes shade oppositely across
        its centre; a patch darker all over (a colour deviation, a speck, a region the
        maps took for a dent) shades alike on both sides and cancels.
    toward_light : tuple[float, float]
        The first moment (x, y) of the region's relative shading about its centre,
        negated: it points to the dark slope, towards the light (the station's light is
        the sum of many dents' moments).
    deepest : float
        The most the region darkens the surface, a share of its luminance.
    lit : float
        The most it brightens the surface (the highest 3 x 3 mean of the relative
        shading), a share of its luminance: a dent's far slope turns towards the light
        and catches it, where a dark spot (a speck, a pair of the glaze's speckle dots)
        only darkens. Too dark to read a depth from (:attr:`linear`), a region lit this
        little is no dent (:meth:`~inspection.standards.guard.ShadingDepth.depth_mm`).
    """

    darkening: np.ndarray
    toward_light: tuple[float, float]
    deepest: float
    lit: float

    @property
    def linear(self) -> bool:
        """Whether the dent is gentle enough for its shading to read its depth
        (:data:`SHADING_LINEAR_MAX`)."""
        return self.deepest <= SHADING_LINEAR_MAX

    def integral_px(self, azimuth: float) -> float:
        """The most darkening summed along a line heading ``azimuth`` (radians, image
        axes), in px: across the dark slope through its deepest point."""
        length = 2 * max(self.darkening.shape) + 1  # any chord of the region, whole
        kernel = line_kernel(length, azimuth) * (length - 1)  # a sum along it
        along = cv2.filter2D(self.darkening, -1, kernel, borderType=cv2.BORDER_CONSTANT)
        return max(0.0, float(along.max()))


def dent_shading(image: np.ndarray, mask: np.ndarray) -> DentShading | None:
    """A region's :class:`DentShading` on ``image`` (colour or grey, any scale);
    ``None`` where no surface around it can be read (a ring all off the frame or NaN)."""
    shaded = relative_shading(image, mask)
    return None if shaded is None else shading_of(*shaded)


def shading_of(relative: np.ndarray, region: np.ndarray, hole: np.ndarray) -> DentShading:
    """The :class:`DentShading` of a region's relative shading (:func:`relative_shading`'s
    ``(relative, region, hole)``)."""
    ys, xs = np.nonzero(region)
    cx, cy = float(xs.mean()), float(ys.mean())
    # Each pixel against its mirror through the centre (what falls off the window, 0)
    turned = np.float32([[-1, 0, 2 * cx], [0, -1, 2 * cy]])
    mirrored = cv2.warpAffine(relative, turned, relative.shape[::-1], flags=cv2.INTER_LINEAR)
    darkening = np.clip((mirrored - relative) / 2, 0.0, None)  # (h, w)
    ys, xs = np.nonzero(hole)
    shade = relative[ys, xs]
    moment = (-float(((xs - cx) * shade).sum()), -float(((ys - cy) * shade).sum()))
    lit = max(0.0, float(cv2.blur(relative, (3, 3))[hole].max()))  # one bright pixel: noise
    deepest = max(0.0, -float(shade.min()))
    return DentShading(darkening.astype(np.float32), moment, deepest, lit)


def relative_shading(
    image: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(relative, region, hole)`` on a window around a region: ``luminance / surface -
    1`` on the region grown by :data:`COLOUR_HOLE_PX` (``hole``), 0 elsewhere and where
    unreadable, the surface the median of the ring :data:`SHADING_RING_PX` wide around
    it; ``None`` for an empty region or one with no surface readable around it."""
    mask = np.asarray(mask, dtype=bool)
    box = mask_bbox(mask)
    if box is None:
        return None
    window = _grown(box, COLOUR_HOLE_PX + SHADING_RING_PX + 1, mask.shape)
    region = mask[window]
    luminance = _channels(image[window]).mean(axis=2)  # (h, w)
    hole = _grown_by(region, COLOUR_HOLE_PX)
    ring = _grown_by(region, COLOUR_HOLE_PX + SHADING_RING_PX) & ~hole
    around = luminance[ring]
    around = around[np.isfinite(around)]
    surface = float(np.median(around)) if around.size else 0.0
    if surface <= 0:
        return None
    relative = luminance / surface - 1.0  # (h, w)
    relative = np.where(hole & np.isfinite(relative), relative, 0.0).astype(np.float32)
    return relative, region, hole


DEPTH_RING_PX = 6  # the ring around a region whose median height is the surface's
FOOTPRINT_SMOOTHING_PX = 1.0  # Gaussian sigma on the height map before its footprint is cut
FOOTPRINT_NOISE_SIGMAS = 4.0  # how far below the surface, in the ring's noise, is depressed
FOOTPRINT_FLOOR_MM = 0.001  # the least depression counted, where a map has no noise (1 um)
FOOTPRINT_PASSES = 3  # cuts, each around the last, for a region inside a wider depression
DEPRESSION_SEARCH_MM = 10.0  # the widest depression a height map is searched for whole
DEPRESSION_MIN_PX = 9  # the least footprint taken for a depression (3x3 px)
DEPRESSION_SEED_SIGMAS = 8.0  # how far a depression must reach somewhere, in deviations
FACE_MIN_SHARE = 0.05  # the least share of a height map a piece of the part's face covers
WALL_SLOPE = 1.0
"""Steeper than 45 degrees between neighbouring points of a height map is a wall, not a
dent's side: the part's edge over its belt, the side of a hole or a notch. A dent is a
dished face; the synthetic ones are at most 25 degrees (depth at most 0.3 of the radius)."""


DROPOUT_MAX_PX = 4
"""The largest piece of points (8-connected) a height map lacks that
:func:`fill_dropouts` fills from the points around it. A profiler loses single points to
a glint or a dark speck (its own gap filling closes such gaps too), and one in a
dent's ring would leave the dent unmeasured and out of the search; a larger gap (the belt
in the part's shadow, a hole the laser does not reach) is a place it did not see, and
stays so."""


def fill_dropouts(height_map: np.ndarray) -> np.ndarray:
    """A 3D profiler's height map with its dropouts filled: each piece of at most
    :data:`DROPOUT_MAX_PX` points it read nothing for (NaN, 8-connected) takes the mean of
    the points read around it, from its rim inwards. Larger gaps stay NaN. The map
    itself when it has no dropout.

    Fill a frame's map once, before it is measured (:func:`depth_below_surface`,
    :func:`footprint_below_surface`, :func:`depressions`), which give nothing where a
    point of a region or its ring is missing: a footprint cut short there would read the
    dent small."""
    missing = ~np.isfinite(height_map)
    if not missing.any():
        return height_map
    _, labels, stats, _ = cv2.connectedComponentsWithStats(missing.view(np.uint8), connectivity=8)
    small = stats[:, cv2.CC_STAT_AREA] <= DROPOUT_MAX_PX
    small[0] = False  # the points read
    todo = small[labels]
    if not todo.any():
        return height_map
    filled = np.asarray(height_map, np.float32).copy()
    while todo.any():  # a rim at a time: a piece of 4 points is filled in two
        read = np.isfinite(filled)
        total = cv2.boxFilter(np.where(read, filled, 0), -1, (3, 3), normalize=False)
        neighbours = cv2.boxFilter(read.astype(np.float32), -1, (3, 3), normalize=False)
        ready = todo & (neighbours > 0)
        if not ready.any():
            break  # nothing read around it: a map (almost) all unread
        filled[ready] = total[ready] / neighbours[ready]
        todo &= ~ready
    return filled


def depth_below_surface(
    height_map: np.ndarray, mask: np.ndarray, mm_per_px: float | None = None
) -> float | None:
    """How far a region's deepest point lies below the surface around it, in mm, on a
    3D profiler's height map: the median height of a ring ``DEPTH_RING_PX`` wide around
    the region (2 px off it, clear of its blurred edge) less the region's lowest height.
    Never under 0; ``None`` where the profiler saw nothing in the region or around it
    (NaN). With the scale, the ring is the region's own face: points beyond a wall
    (:data:`WALL_SLOPE`: a hole's side, the part's edge) are not its surface, and a
    region that holds a wall has no depth a dent could have (``None``).

    The lowest point is taken as read: a 3x3 median under it took 30 % off a pit 3 px
    across (its bottom is a point), and the profiler's noise can only add to the depth
    (about 2.5 of its standard deviations over a region of a few dozen points), which
    errs towards REVIEW or REJECT, never towards a PASS."""
    around = _surroundings(height_map, mask, mm_per_px)
    return None if around is None else _depth_in(around)


def _depth_in(around: tuple) -> float | None:
    """:func:`depth_below_surface` on a region's :func:`_surroundings`."""
    _, inside, heights, ring, face = around
    if (inside.astype(bool) & ~face & np.isfinite(heights)).any():
        return None  # the region holds a wall: a cut's depth, not a dent's
    surface = heights[ring & face]
    surface = surface[np.isfinite(surface)]
    bottom = heights[(inside > 0) & np.isfinite(heights)]
    if surface.size == 0 or bottom.size == 0:
        return None
    return max(0.0, float(np.median(surface)) - float(bottom.min()))


def footprint_below_surface(
    height_map: np.ndarray, mask: np.ndarray, mm_per_px: float | None = None
) -> np.ndarray | None:
    """The ``(H, W)`` footprint of the depression a region lies in, on a 3D profiler's
    height map: where the map, smoothed over ``FOOTPRINT_SMOOTHING_PX``, lies below the
    plane fitted through the ring around the region (:func:`depth_below_surface`'s) by
    more than ``FOOTPRINT_NOISE_SIGMAS`` of the ring's own noise (1.4826 MAD of its
    residual), taken as the connected pieces that meet the region.

    A dent's sizes read here, not off the anomaly map, whose blurred region reads a pit
    of a few pixels a third too large (synthetic tile: median error 1.0 mm2 against 0.6
    here). ``None`` where nothing lies that far below, or where the profiler missed a
    point of the region or its ring (NaN): a footprint cut short there would read the
    dent small, and a small reading can pass a part. With the scale, ``None`` too where
    the region or the points within 2 px of it hold a wall (:data:`WALL_SLOPE`): a hole,
    a notch or the belt beside the part lies below the face, but is not a dent of it;
    and the ring is the region's own face."""
    region = np.asarray(mask, dtype=bool)
    for _ in range(FOOTPRINT_PASSES):
        footprint = _depressed_around(height_map, region, mm_per_px)
        if footprint is None or not (footprint & ~region).any():
            break
        # The footprint runs past the region, so the ring may have lain on the
        # depression's own slope (raising its surface and its noise): cut again around
        # what was found, the ring then further out.
        region = region | footprint
    return footprint


def depressions(height_map: np.ndarray, mm_per_px: float) -> list[np.ndarray]:
    """The footprints (``(H, W)`` bool, :func:`footprint_below_surface`) of every
    depression on a height map, each at least ``DEPRESSION_MIN_PX`` large.

    Candidates are where a closing ``DEPRESSION_SEARCH_MM`` wide (which fills anything
    narrower and leaves a step, such as a part's edge, as it is) lies above the smoothed
    map by more than 4 robust deviations of that difference, and somewhere by
    ``DEPRESSION_SEED_SIGMAS`` (hysteresis: the profiler's noise alone reached 5.4 on
    600 synthetic parts, their shallowest dents 27); each is then cut as a region's
    footprint, on the plane through its own ring and in its ring's noise, and kept only
    where it lies that far below. The map's dropouts are filled first
    (:func:`fill_dropouts`); a candidate touching a larger gap the profiler did not read
    (NaN: a through-hole, the belt in the part's shadow) gives none, nor one walled in (a
    through-hole or notch the profiler reads the belt in, the belt beside the part:
    :data:`WALL_SLOPE`)."""
    height_map = fill_dropouts(height_map)
    finite = np.isfinite(height_map)
    if not finite.any():
        return []
    level = np.where(finite, height_map, float(np.median(height_map[finite])))
    smoothed = cv2.GaussianBlur(level.astype(np.float32), (0, 0), FOOTPRINT_SMOOTHING_PX)
    # No wider than the frame (a closing's cost grows with its width; a scale too fine
    # would ask for one of thousands of pixels).
    width = max(3, min(round(DEPRESSION_SEARCH_MM / mm_per_px), min(height_map.shape))) | 1
    square = cv2.getStructuringElement(cv2.MORPH_RECT, (width, width))  # separable: fast
    filled = cv2.morphologyEx(smoothed, cv2.MORPH_CLOSE, square) - smoothed  # >= 0
    steep = walls(height_map, WALL_SLOPE * mm_per_px)
    face = top_face(height_map, steep)
    count, labels, middle, spread = _candidates(filled, finite, face, steep)
    found: list[np.ndarray] = []
    for label in range(1, count):
        candidate = labels == label
        if filled[candidate].max() < middle + DEPRESSION_SEED_SIGMAS * spread:
            continue  # noise: it never rises far above the rest
        if any((candidate & footprint).any() for footprint in found):
            continue  # a piece of a depression already cut
        footprint = footprint_below_surface(height_map, candidate, mm_per_px)
        if footprint is None or footprint.sum() < DEPRESSION_MIN_PX:
            continue
        if _deep_enough(height_map, footprint, mm_per_px):
            found.append(footprint)
    return found


def _deep_enough(height_map: np.ndarray, footprint: np.ndarray, mm_per_px: float) -> bool:
    """Whether a depression's depth (:func:`depth_below_surface`) reaches
    ``DEPRESSION_SEED_SIGMAS`` deviations of the profiler's noise on the face around it
    (its ring's residual from their plane). A face's own waviness, dished between two
    crests, leaves hollows of a few noise deviations that a dent (0.05 mm and deeper on
    the synthetic line: 10 deviations) is not."""
    around = _surroundings(height_map, footprint, mm_per_px)
    depth = None if around is None else _depth_in(around)
    if depth is None:
        return False
    _, _, heights, ring, face = around
    ring = ring & face & np.isfinite(heights)
    if ring.sum() < 3:
        return False
    noise = _robust_deviation((heights - plane_through(heights, ring))[ring])
    return depth >= DEPRESSION_SEED_SIGMAS * max(noise, FOOTPRINT_FLOOR_MM / 4)


def _candidates(
    filled: np.ndarray, finite: np.ndarray, face: np.ndarray, steep: np.ndarray
) -> tuple[int, np.ndarray, float, float]:
    """:func:`depressions`' candidates (``count`` and ``labels`` of the connected
    pieces) on the part's ``face`` (:func:`top_face`), and the level and spread of
    ``filled`` there that they stand out of. The belt beside the part and through its
    holes is left out of both (filled by the closing, 1-10 mm down, it would be a
    candidate and hide every dent: the belt a third of the frame spreads it 0.27 mm), and
    so is the face as far as the smoothing carries a wall's drop onto it (3 sigma)."""
    reach = _disc(max(1, round(3 * FOOTPRINT_SMOOTHING_PX)))
    searched = face & finite & ~(cv2.dilate(steep.astype(np.uint8), reach) > 0)
    rest = filled[searched] if searched.any() else filled.ravel()
    middle = float(np.median(rest))
    spread = max(_robust_deviation(rest), FOOTPRINT_FLOOR_MM / 4)
    over = (filled > middle + FOOTPRINT_NOISE_SIGMAS * spread) & searched
    count, labels = cv2.connectedComponents(over.astype(np.uint8), connectivity=8)
    return count, labels, middle, spread


def top_face(heights: np.ndarray, steep: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: the part's face on a height map, the highest of the wall-free
    pieces (4-connected) that cover at least :data:`FACE_MIN_SHARE` of it (by their
    median): the part stands on its belt, and its holes go down to it. A raised boss or a
    step smaller than that is not searched, nor a lower level of a stepped part. The
    whole map where no piece is that large."""
    # What the profiler did not read parts pieces as a wall does: the belt in the part's
    # shadow borders the face with no step to see.
    open_ = ~steep & np.isfinite(heights)
    _, labels = cv2.connectedComponents(open_.astype(np.uint8), connectivity=4)
    sizes = np.bincount(labels.ravel())
    large = [k for k in np.flatnonzero(sizes >= FACE_MIN_SHARE * labels.size) if k > 0]
    levels = {k: np.nanmedian(heights[labels == k]) for k in large}
    levels = {k: level for k, level in levels.items() if np.isfinite(level)}
    if not levels:
        return np.ones(heights.shape, bool)
    return labels == max(levels, key=levels.get)


def walls(heights: np.ndarray, max_step: float) -> np.ndarray:
    """``(H, W)`` bool: where a height map rises or falls more than ``max_step`` (its
    unit) from one point to the next (on the map as read; NaN is no wall: nothing was
    read there). With the scale, ``WALL_SLOPE * mm_per_px``. Beside a point not read,
    where the 3x3 gradient has nothing to go on, the largest step to a read neighbour
    decides: the part's edge still stands where its shadow begins beside it."""
    heights = np.asarray(heights, np.float32)
    gx = cv2.Sobel(heights, cv2.CV_32F, 1, 0, ksize=3)  # 8 x the step per point
    gy = cv2.Sobel(heights, cv2.CV_32F, 0, 1, ksize=3)
    step = np.hypot(gx, gy) / 8.0
    unsure = ~np.isfinite(step) & np.isfinite(heights)
    if unsure.any():
        step[unsure] = _largest_steps(heights, np.nonzero(unsure))
    return step > max_step


def _largest_steps(heights: np.ndarray, points: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Each of ``points``' (rows, columns) largest height difference to a 4-neighbour
    read (0 with none): read at those points alone, the rim of what was not read."""
    padded = np.pad(heights, 1, constant_values=np.nan)
    rows, cols = points[0] + 1, points[1] + 1
    here = padded[rows, cols]
    step = np.zeros(here.shape, np.float32)
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        step = np.fmax(step, np.abs(here - padded[rows + dy, cols + dx]))  # NaN: no step
    return step


def _depressed_around(
    height_map: np.ndarray, mask: np.ndarray, mm_per_px: float | None
) -> np.ndarray | None:
    """One cut of :func:`footprint_below_surface`, around ``mask``."""
    around = _surroundings(height_map, mask, mm_per_px)
    if around is None:
        return None
    window, inside, heights, ring, face = around
    near = cv2.dilate(inside, _disc(2)) > 0
    if not ring.any() or not np.isfinite(heights[near | ring]).all():
        return None
    if (near & ~face).any():
        return None  # it meets a wall: a hole, a notch, the part's edge
    ring = ring & face
    if ring.sum() < 3:
        return None  # no face around it to fit a plane through
    plane = plane_through(heights, ring)
    # Off the face (beyond a wall) the plane stands in, so that the smoothing does not
    # carry a hole's or the belt's drop onto the face beside it.
    smoothed = cv2.GaussianBlur(np.where(face, heights, plane), (0, 0), FOOTPRINT_SMOOTHING_PX)
    below = plane - smoothed
    noise = _robust_deviation(below[ring])
    depressed = (below > max(FOOTPRINT_NOISE_SIGMAS * noise, FOOTPRINT_FLOOR_MM)) & face
    depressed = depressed.astype(np.uint8)
    _, labels = cv2.connectedComponents(depressed, connectivity=8)
    pieces = np.unique(labels[near & (depressed > 0)])
    pieces = pieces[pieces > 0]
    if pieces.size == 0:
        return None
    footprint = np.zeros(mask.shape, bool)
    footprint[window] = np.isin(labels, pieces)
    return footprint


def _surroundings(
    height_map: np.ndarray, mask: np.ndarray, mm_per_px: float | None = None
) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """A region's window on a height map: the window, the region in it (uint8), the
    heights in it (float32), the ring ``DEPTH_RING_PX`` wide, 2 px off the region, whose
    heights are the surface's, and the region's face (bool: :func:`_face`; all of the
    window without the scale). ``None`` for an empty region."""
    mask = np.asarray(mask, dtype=bool)
    box = mask_bbox(mask)
    if box is None:
        return None
    # Twice the ring's reach: room for a depression the region covers only part of.
    window = _grown(box, 2 * (DEPTH_RING_PX + 2), mask.shape)
    inside = np.ascontiguousarray(mask[window], np.uint8)
    heights = np.ascontiguousarray(height_map[window], np.float32)
    ring = (cv2.dilate(inside, _disc(DEPTH_RING_PX + 2)) > 0) & ~(cv2.dilate(inside, _disc(2)) > 0)
    face = np.ones(heights.shape, bool) if mm_per_px is None else _face(heights, inside, mm_per_px)
    return window, inside, heights, ring, face


def _face(heights: np.ndarray, inside: np.ndarray, mm_per_px: float) -> np.ndarray:
    """``(h, w)`` bool: the points of a window's heights that the region ``inside``
    lies on without crossing a wall (:data:`WALL_SLOPE`, on the map as read): the
    4-connected piece of the wall-free points holding most of the region's. None where
    the region is all wall."""
    open_ = ~walls(heights, WALL_SLOPE * mm_per_px) & np.isfinite(heights)
    _, labels = cv2.connectedComponents(open_.astype(np.uint8), connectivity=4)
    own = labels[(inside > 0) & open_]
    if own.size == 0:
        return np.zeros(heights.shape, bool)
    return labels == np.bincount(own).argmax()


def plane_through(heights: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """The least-squares plane through the ring's heights (through an even sample of
    20,000 where it holds more), over the whole window: a tilted part's surface, which a
    single level would read as a depression on one side."""
    ys, xs = np.nonzero(ring)
    step = max(1, ys.size // 20_000)
    ys, xs = ys[::step], xs[::step]
    design = np.column_stack([xs, ys, np.ones(xs.size)])
    (gx, gy, level), *_ = np.linalg.lstsq(design, heights[ys, xs].astype(np.float64), rcond=None)
    yy, xx = np.mgrid[: heights.shape[0], : heights.shape[1]]
    return (gx * xx + gy * yy + level).astype(np.float32)


def line_kernel(length: int, direction: float) -> np.ndarray:
    """A mean along a segment of ``length`` px heading ``direction``."""
    kernel = np.zeros((length, length), np.float32)
    centre, half = (length - 1) / 2, (length - 1) / 2
    for t in np.linspace(-half, half, 4 * length):
        bilinear_point(
            kernel, centre + t * math.cos(direction), centre + t * math.sin(direction), 1.0
        )
    return kernel / kernel.sum()


def bilinear_point(kernel: np.ndarray, x: float, y: float, weight: float) -> None:
    """Adds ``weight`` at a point between pixels, shared among the four around it."""
    x0, y0 = math.floor(x), math.floor(y)
    fx, fy = x - x0, y - y0
    for dx, dy, share in (
        (0, 0, (1 - fx) * (1 - fy)),
        (1, 0, fx * (1 - fy)),
        (0, 1, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        if 0 <= y0 + dy < kernel.shape[0] and 0 <= x0 + dx < kernel.shape[1]:
            kernel[y0 + dy, x0 + dx] += weight * share


def _disc(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2)


def _off_surface(image: np.ndarray) -> np.ndarray:
    """``(h, w)`` float32: each pixel's luminance less the surface's under it (a median of
    ``GAUGE_BACKGROUND_PX``): signed, a mark darker than the surface below 0."""
    crop = _as_uint8(image).astype(np.float32)
    luminance = crop.mean(axis=2) if crop.ndim == 3 else crop  # (h, w)
    surface = cv2.medianBlur(luminance.astype(np.uint8), GAUGE_BACKGROUND_PX)
    return luminance - surface.astype(np.float32)


def _noise_floor(contrast: np.ndarray) -> float:
    """Median + 3 robust standard deviations of a surface's contrast."""
    return float(np.median(contrast)) + 3.0 * _robust_deviation(contrast)


def _robust_deviation(values: np.ndarray) -> float:
    """The standard deviation as the median absolute deviation estimates it (1.4826
    MAD): what a few outliers (a defect's own pixels) do not move."""
    return 1.4826 * float(np.median(np.abs(values - np.median(values))))


def _as_uint8(image: np.ndarray) -> np.ndarray:
    """8-bit (OpenCV's median over a wide window takes only 8-bit), contiguous, one
    channel as ``(H, W)`` (OpenCV drops a lone channel axis)."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.dtype != np.uint8:
        image = np.clip(image.astype(np.float32) * (255.0 / _full_scale(image)), 0, 255)
    return np.ascontiguousarray(image, dtype=np.uint8)


def delta_e(rgb_a: np.ndarray, rgb_b: np.ndarray) -> float | np.ndarray:
    """CIEDE2000 colour difference between sRGB colours (uint8 or floats in 0..1).

    Broadcasts over leading dimensions; the last dimension holds R, G, B.
    """
    a, b = (_as_unit_rgb(x) for x in (rgb_a, rgb_b))
    result = deltaE_ciede2000(rgb2lab(a), rgb2lab(b))
    return float(result) if np.ndim(result) == 0 else result


def region_delta_e(
    image: np.ndarray,
    mask: np.ndarray,
    reference_rgb: np.ndarray,
    surround_px: int | None = None,
    core_px: int = 0,
) -> float:
    """ΔE between the mean colour inside ``mask`` and the part's reference colour.

    With ``surround_px``, the region's colour is white-balanced against the surface under
    it (a local white balance, so that the light across the part is not read as a colour
    deviation): each pixel of the region is divided by the surface's colour there, read
    along the light on the face (:func:`surface_along_light`), and the mean of these
    ratios by the same ratio's mean over a ring of that width around the region, then
    multiplied by the reference. Where the surface along the light cannot be read (a
    region on a frame's edge, a face too small), by the ring's mean colour alone.

    With ``core_px``, the colour is read on the region's core, ``mask`` eroded by that
    many pixels (the whole region when the core would hold under 9 pixels), while the
    ring stays around the whole region: a region cut from a map is blurred past the
    defect's edge, and the good surface it takes in dilutes the defect's colour.
    """
    mask = np.asarray(mask, dtype=bool)
    reference = np.asarray(reference_rgb, dtype=np.float64) / 255.0
    along = colour_along_px(image.shape)
    box = mask_bbox(mask)
    if box is not None:  # only the box and its surround matter: crop to them
        pad = surround_px + along // 2 + COLOUR_HOLE_PX if surround_px else 0
        rows = slice(max(0, box.y0 - pad), box.y1 + pad)
        cols = slice(max(0, box.x0 - pad), box.x1 + pad)
        image, mask = image[rows, cols], mask[rows, cols]
    core = _core(mask, core_px)
    region = _mean_rgb(image, core)
    if surround_px:
        hole, ring = _grown_by(mask, COLOUR_HOLE_PX), _grown_by(mask, surround_px)
        ring &= ~hole
        if ring.any():
            balanced = _balanced_on_surface(image, core, hole, ring, along)
            if balanced is None:  # no surface along the light: the ring's mean colour
                balanced = region / np.maximum(_mean_rgb(image, ring), 1e-3)
            region = np.clip(balanced * reference, 0, 1)
    return float(delta_e(region, reference))


COLOUR_ALONG_SHARE = 0.3125
"""How far along the light on the face (a share of the frame's longer side: 81 px at
256) the surface under a colour region is read (:func:`surface_along_light`). A gloss
paint mirrors the station's light as a band across the part: its level changes across
the band within a few pixels but hardly along it, so a ring around a region on the
band's edge averages the band's inside with its outside, and a faint patch there reads
1-1.5 ΔE off. Chosen on validation parts (seed 11) among 61, 81 and 121 px at 256:
benchmarks/README.md, "Colour read against the surface along the light"."""

COLOUR_HOLE_PX = 2
"""The map's blurred edge around a region (px): read as neither the region nor the
surface beside it."""

LIGHT_BLUR_PX = 3.0
"""Gaussian sigma (px, on the copy :func:`surface_along_light` reads) of the luminance
whose gradients give the light's direction on the face: wider than a paint's orange
peel, narrower than a reflection band's edge."""

_LIGHT_ALONG_PX = 81  # the longest segment the surface along the light is read on (px)
_SAME_SURFACE = 0.25  # luminance this share off the ring's: another surface (belt, hole, mark)
_MIN_SUPPORT = 0.3  # share of a line's weight on the surface under which it reads nothing


def colour_along_px(shape: tuple[int, ...]) -> int:
    """The length (px, odd) along the light on which the surface under a region is read
    in a frame of ``shape`` (:data:`COLOUR_ALONG_SHARE` of its longer side)."""
    return max(3, round(COLOUR_ALONG_SHARE * max(shape[:2]))) | 1


def surface_along_light(image: np.ndarray, surface: np.ndarray, along_px: int) -> np.ndarray:
    """The colour of the surface at each pixel, read along the light on the face.

    The light's direction is the one along which the blurred luminance of the
    ``surface`` pixels changes least (their structure tensor: a reflection band's edges
    lie along it); each pixel's colour is then the mean of the ``surface`` pixels on a
    segment of ``along_px`` through it in that direction (a normalised convolution).
    Read on a copy shrunk until the segment is at most 81 px long, as the light is smooth
    along itself.

    Parameters
    ----------
    image : np.ndarray
        ``(H, W, 3)`` or ``(H, W)``.
    surface : np.ndarray
        ``(H, W)`` bool: the pixels that show the good surface.
    along_px : int
        The segment's length (:func:`colour_along_px` of the whole frame).

    Returns
    -------
    np.ndarray
        ``(H, W, C)`` float32 on the image's scale (``C`` 3, or 1 for a grey frame); NaN
        where under :data:`_MIN_SUPPORT` of the segment lies on the surface.
    """
    pixels = _channels(image)
    h, w = surface.shape
    scale = min(1.0, _LIGHT_ALONG_PX / along_px)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    # The frame as it is (unreadable pixels as 0) for the light's direction; each shrunk
    # pixel's sum of the surface's colour (what is not surface is not read) and the share
    # of it the surface covers, for the mean along the light.
    readable = np.where(np.isfinite(pixels), pixels, 0.0).astype(np.float32)
    colour = cv2.resize(readable, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], -1)
    on_surface = np.where(surface[..., None], readable, 0.0).astype(np.float32)
    sums = cv2.resize(on_surface, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], -1)
    weight = cv2.resize(surface.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    length = max(3, round(along_px * scale)) | 1
    kernel = line_kernel(length, _light_direction(colour, weight))
    support = cv2.filter2D(weight, -1, kernel, borderType=cv2.BORDER_CONSTANT)
    sums = cv2.filter2D(sums, -1, kernel, borderType=cv2.BORDER_CONSTANT)
    along = sums.reshape((*support.shape, -1)) / np.maximum(support, 1e-6)[..., None]
    along[support < _MIN_SUPPORT] = np.nan
    if scale < 1.0:
        along = cv2.resize(along, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, -1)
    return along


def _light_direction(pixels: np.ndarray, weight: np.ndarray) -> float:
    """The direction (radians) along which the luminance of the surface (``weight``
    near 1) changes least; 0 where it cannot be read."""
    grey = cv2.GaussianBlur(pixels.mean(axis=2), (0, 0), LIGHT_BLUR_PX)
    # Only where the blur saw the surface alone: the belt's or a hole's edge is no light.
    inside = cv2.erode((weight > 0.99).astype(np.uint8), _disc(round(2 * LIGHT_BLUR_PX))) > 0
    if inside.sum() < 9:
        return 0.0
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)[inside]
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)[inside]
    return least_change(gx, gy)[0]


def least_change(gx: np.ndarray, gy: np.ndarray) -> tuple[float, float]:
    """The direction (radians, in [0, pi)) across the dominant one of the gradients
    ``gx``, ``gy`` (their structure tensor), along which the image changes least, and
    their coherence (0: no direction stands out; 1: all gradients parallel)."""
    jxx, jyy, jxy = float((gx * gx).mean()), float((gy * gy).mean()), float((gx * gy).mean())
    across = 0.5 * np.arctan2(2 * jxy, jxx - jyy)  # the dominant gradient's direction
    total = jxx + jyy
    coherence = math.hypot(jxx - jyy, 2 * jxy) / total if total > 0 else 0.0
    return float((across + np.pi / 2) % np.pi), float(coherence)


def _channels(image: np.ndarray) -> np.ndarray:
    """``(H, W, C)`` float32 on the image's scale: its colour channels, or a grey frame's
    one."""
    pixels = np.asarray(image, np.float32)
    return pixels[..., :3] if pixels.ndim == 3 else pixels[..., None]


def _balanced_on_surface(
    image: np.ndarray, core: np.ndarray, hole: np.ndarray, ring: np.ndarray, along_px: int
) -> np.ndarray | None:
    """The core's mean colour divided by the surface's under it
    (:func:`surface_along_light`), over the same ratio's mean on the ring: RGB ratios,
    or ``None`` where the surface cannot be read under the core or on the ring."""
    pixels = _channels(image)
    luminance = pixels.mean(axis=2)
    level = max(float(np.nanmedian(luminance[ring])), 1e-6)  # NaN where all is unreadable
    same = ~hole & (np.abs(luminance / level - 1.0) < _SAME_SURFACE)
    ratio = pixels / np.maximum(surface_along_light(pixels, same, along_px), 1e-3)
    on_core, on_ring = ratio[core], ratio[ring]
    on_core = on_core[np.isfinite(on_core).all(axis=1)]
    on_ring = on_ring[np.isfinite(on_ring).all(axis=1)]
    if len(on_core) == 0 or len(on_ring) == 0:
        return None
    balanced = on_core.mean(axis=0) / np.maximum(on_ring.mean(axis=0), 1e-6)
    return np.repeat(balanced, 3) if balanced.size == 1 else balanced.astype(np.float64)


def _grown_by(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` dilated by a disc of ``radius``, dilated within the box grown by it only:
    the frame around a region read along the light is far larger than its ring."""
    near = _grown(mask_bbox(mask), radius, mask.shape)
    grown = np.zeros(mask.shape, bool)
    grown[near] = cv2.dilate(mask[near].astype(np.uint8), _disc(radius)) > 0
    return grown


def surround_px(image: np.ndarray) -> int:
    """The width of the white-balance ring around a region (:func:`region_delta_e`) the
    line uses: 5 % of the frame's longer side, at least 3 px."""
    return max(3, round(0.05 * max(image.shape[:2])))


def _core(mask: np.ndarray, core_px: int) -> np.ndarray:
    if core_px < 1:
        return mask
    core = cv2.erode(np.ascontiguousarray(mask, np.uint8), _disc(core_px)) > 0
    return core if core.sum() >= 9 else mask


def _mean_rgb(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean colour in ``mask`` as RGB floats in 0..1 (grayscale repeated)."""
    pixels = image[mask]
    if pixels.size == 0:
        raise ValueError("cannot measure colour of an empty mask")
    if pixels.ndim == 1:
        pixels = np.repeat(pixels[:, None], 3, axis=1)
    return pixels.astype(np.float64).mean(axis=0) / _full_scale(image)


def defects_from_mask(
    mask: np.ndarray,
    defect_class: str,
    mm_per_px: float | None,
    image: np.ndarray | None = None,
    reference_rgb: np.ndarray | None = None,
    min_area_px: int = 4,
    score: float = 1.0,
) -> list[Defect]:
    """One measured :class:`Defect` per connected component of a class mask."""
    return [
        measure_defect(comp, defect_class, mm_per_px, image, reference_rgb, score)
        for comp in connected_components(mask, mm_per_px or 1.0, min_area_px=min_area_px)
    ]


def measure_defect(
    comp: Component,
    defect_class: str,
    mm_per_px: float | None,
    image: np.ndarray | None = None,
    reference_rgb: np.ndarray | None = None,
    score: float = 1.0,
) -> Defect:
    """A component as a :class:`Defect` with its physical attributes.

    ``length_mm``, ``width_mm`` and ``area_mm2`` need the station's scale: without it
    (``mm_per_px=None``) they are left out, so that a standard's size clauses cannot be
    decided and the part goes to review instead of being judged on pixels. ``delta_e``
    (against the reference under local light) needs the image and the reference colour.
    """
    attributes = comp.attributes(defect_class) if mm_per_px else {}
    if image is not None and reference_rgb is not None:
        attributes["delta_e"] = round(
            region_delta_e(
                image,
                comp.mask,
                reference_rgb,
                surround_px=surround_px(image),
                core_px=COLOUR_CORE_PX,
            ),
            3,
        )
    return Defect(defect_class, attributes, bbox=comp.bbox, mask=comp.mask, score=score)


def _full_scale(image: np.ndarray) -> float:
    return 65535.0 if image.dtype == np.uint16 else 255.0


def _as_unit_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.dtype == np.uint8:
        return rgb.astype(np.float64) / 255.0
    return np.clip(rgb.astype(np.float64), 0.0, 1.0)
