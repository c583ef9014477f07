"""Scratches along a surface's grain, which a detector's map can miss.

A brushed, ground or rolled face is streaked along one direction, its grain. A thin
scratch running nearly along it looks, to a model that sees the face a patch at a time,
like one more streak: the default model's map missed three of bracket's held-out
scratches, 4.6-18.6 mm long (benchmarks/README.md, "Scratches along the grain").

The grain itself is what sets them apart. A streak of the grain runs on with little
change along its direction, so the image less its mean along the grain
(:data:`GRAIN_ALONG_PX`) is the face without its streaks; a scratch, narrower, shorter
and a few degrees off the grain, stands in that residual as a thin line a few deviations
darker (or lighter) than the pixels either side of it across the grain. Where such a
line runs on for :data:`GRAIN_MIN_LENGTH_PX` on the part's face, clear of the regions the
map found, it is a scratch the map missed, or the rest of one it lit in part
(:func:`~inspection.pipeline.with_grain_scratches`).

Only a face with a grain is searched (:data:`GRAIN_COHERENCE`): on a painted or glazed
face the residual holds every mark of its texture, and the map finds scratches there.

Whether a station's faces are searched is learned from its good parts, not assumed
(:func:`learn_grain`, when its normality model is fitted): only where nearly all of them
have a grain and nearly none shows a line. Magnetic tile's ground faces read a coherence
of 0.43-0.72, and 54 % of its good images show a line: there the search would reject
good parts, and it is off. The synthetic bracket's 200 good parts show none.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from inspection.measure import (
    Component,
    _off_surface,
    _robust_deviation,
    bilinear_point,
    least_change,
    line_kernel,
    measure_region,
)
from inspection.silhouette import (
    BLUR_PX,
    GOOD_SHARE,
    MIN_GOOD_PARTS,
    MIN_SEPARATION,
    _largest,
    foreground_split,
)

GRAIN_COHERENCE = 0.5
"""Coherence of a face's fine detail (0: no direction, 1: all along one) from which it has
a grain: the synthetic line's brushed bracket reads 0.70-0.85, painted panel 0.12-0.27
and glazed tile 0.00-0.08 (held out and validation)."""

GRAIN_ALONG_PX = 15
"""Length of the mean along the grain that the residual is taken from: a streak of the
grain runs on longer. A line within 2 degrees of the grain moves half a pixel across
this length, and goes with the streaks."""

GRAIN_ACROSS_PX = 2
"""How far either side, across the grain, a line is compared with (a line 1-3 px wide)."""

GRAIN_RUN_PX = 3
"""The line's contrast is averaged this far along the grain (a pixel's noise is not a line)."""

GRAIN_SEED_SIGMAS = 5.0
"""A line reaches this many robust deviations of the face's residual somewhere..."""

GRAIN_EXTENT_SIGMAS = 3.0
"""...and extends where it stands this many."""

GRAIN_MIN_LENGTH_PX = 10
"""The shortest line taken for a scratch: no good part of the synthetic line's brushed
bracket showed one over 6.8 px (180 parts, validation and held out). A line is read up
to 8 px longer than it is here, the filters' reach past its ends (a 6 px line reads
13-19 px; a 3 px mark, none): where it is taken, it is followed on the image and
measured there."""

GRAIN_MAX_WIDTH_PX = 3.0
"""The widest line (its mean width): a wider mark is no scratch the map would miss."""

GRAIN_FACE_INSET_PX = 4
"""The face is searched this far in from its edges, where the filters read the edge."""

GRAIN_CLEAR_PX = 3
"""A line this close to a region the map found is that region's own (beside a scratch or
crack, the comparison across the grain reads its edges as lines)."""


GRAIN_KEY = "grain"
"""Where a normality model's metadata records its station's rule (:meth:`GrainRule.to_dict`);
absent: frames are not searched."""

GRAIN_GOOD_LINES = 0.01
"""The most good parts, as a share, that may show a line for the station to be searched:
the image threshold's own target of false rejects."""


@dataclass(frozen=True)
class GrainRule:
    """A station whose faces are searched for lines along their grain (:func:`learn_grain`).

    Attributes
    ----------
    good_parts : int
        Good parts it was learned from.
    with_lines : int
        Of them, those that showed a line.
    """

    good_parts: int
    with_lines: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: Any) -> GrainRule | None:
        """The rule a model's metadata records, or ``None`` (none recorded, or a record
        that is not one: the frames are then not searched)."""
        try:
            rule = cls(int(record["good_parts"]), int(record["with_lines"]))
        except (TypeError, KeyError, ValueError):
            return None
        return rule if 0 <= rule.with_lines <= rule.good_parts else None


class FrameTally:
    """A station's rule read from its good frames a frame at a time (:meth:`add`), so
    that a fit reading its good frames once learns every rule from the same pass
    (:meth:`passing`)."""

    def add(self, image: np.ndarray) -> None:
        raise NotImplementedError

    def rule(self) -> Any:
        raise NotImplementedError

    def passing(self, images: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """``images``, each read as it goes by."""
        for image in images:
            self.add(image)
            yield image

    def learned(self, images: Iterable[np.ndarray]) -> Any:
        """The rule of ``images`` read whole."""
        for image in images:
            self.add(image)
        return self.rule()


class GrainTally(FrameTally):
    """:func:`learn_grain`'s count (a :class:`FrameTally`)."""

    def __init__(self) -> None:
        self.seen = self.grained = self.lined = 0

    def add(self, image: np.ndarray) -> None:
        """Counts one good frame: whether its face has a grain, and shows a line in it."""
        self.seen += 1
        grey = _grey(image)
        grained_face = _grained_face(grey)
        if grained_face is not None:
            self.grained += 1
            self.lined += bool(_lines_on(image, grey, *grained_face, mm_per_px=None, found=()))

    def rule(self) -> GrainRule | None:
        """The rule of the frames counted (see :func:`learn_grain`)."""
        seen, too_many = self.seen, GRAIN_GOOD_LINES * self.seen
        if seen < MIN_GOOD_PARTS or self.grained < GOOD_SHARE * seen or self.lined > too_many:
            return None
        return GrainRule(good_parts=seen, with_lines=self.lined)


def learn_grain(good_images: Iterable[np.ndarray]) -> GrainRule | None:
    """The station's rule from its good parts, or ``None`` where its faces are not to be
    searched: fewer than :data:`~inspection.silhouette.MIN_GOOD_PARTS` were given, fewer
    than :data:`~inspection.silhouette.GOOD_SHARE` of them have a grain, or more than
    :data:`GRAIN_GOOD_LINES` show a line (:func:`grain_scratches`)."""
    return GrainTally().learned(good_images)


@dataclass(frozen=True)
class Grain:
    """A face's grain: its ``direction`` (radians from the image's x axis, in ``[0, pi)``)
    and ``coherence``, how much of its fine detail runs along it (0 to 1)."""

    direction: float
    coherence: float


def grain_of(image: np.ndarray, where: np.ndarray | None = None) -> Grain:
    """The grain of an image's surface: along the streaks of brushed, ground or rolled
    metal, where the fine texture's gradients are weakest.

    The structure tensor of the image's fine detail (the image less a blur of it), each
    pixel's gradient capped so that a straight edge (the part's outline, a slot) does
    not count for more than its few pixels. On a surface without grain the direction is
    arbitrary and the coherence low.

    Parameters
    ----------
    image : np.ndarray
        ``(H, W, 3)`` or ``(H, W)``.
    where : np.ndarray, optional
        ``(H, W)`` bool: the pixels read (the part's face); all of them by default.
    """
    grey = _grey(image)
    detail = grey - cv2.GaussianBlur(grey, (0, 0), 4)
    gx = cv2.Sobel(detail, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(detail, cv2.CV_32F, 0, 1, ksize=3)
    if where is not None:
        gx, gy = gx[where], gy[where]
    magnitude = np.hypot(gx, gy)
    cap = np.quantile(_sampled(magnitude.ravel()), 0.9) if magnitude.size else 0.0
    scale = np.minimum(1.0, cap / np.maximum(magnitude, 1e-6))
    gx, gy = gx * scale, gy * scale
    return Grain(*least_change(gx, gy))


def grain_scratches(
    image: np.ndarray, mm_per_px: float | None, found: Sequence[np.ndarray] = ()
) -> list[Component]:
    """The thin lines along a face's grain that no region ``found`` covers (see the
    module), measured; none on a face without a grain.

    Parameters
    ----------
    image : np.ndarray
        The frame, ``(H, W, 3)`` or ``(H, W)``, any dtype the line reads.
    mm_per_px : float or None
        The station's scale (``None``: sizes in pixels).
    found : sequence of np.ndarray
        ``(H, W)`` bool masks of the regions the map found: a line within
        :data:`GRAIN_CLEAR_PX` of one is left to it.
    """
    grey = _grey(image)
    grained_face = _grained_face(grey)
    if grained_face is None:
        return []
    return _lines_on(image, grey, *grained_face, mm_per_px=mm_per_px, found=found)


def _grained_face(grey: np.ndarray) -> tuple[np.ndarray, Grain] | None:
    """The part's face (:func:`part_face`) and its grain; ``None`` where the face is too
    small to read or has no grain (:data:`GRAIN_COHERENCE`)."""
    face = part_face(grey)
    if face.sum() < GRAIN_ALONG_PX**2:
        return None
    grain = grain_of(grey, face)
    return (face, grain) if grain.coherence >= GRAIN_COHERENCE else None


def _lines_on(
    image: np.ndarray,
    grey: np.ndarray,
    face: np.ndarray,
    grain: Grain,
    *,
    mm_per_px: float | None,
    found: Sequence[np.ndarray],
) -> list[Component]:
    """:func:`grain_scratches` on a face with a grain."""
    lines = _line_contrast(grey, grain.direction)  # (H, W): + a dark line, - a light one
    values = _sampled(lines[face])
    spread = _robust_deviation(values) or 1.0
    z = (lines - float(np.median(values))) / spread
    taken = np.zeros(face.shape, bool)
    for region in found:
        taken |= region
    clear = face & ~(cv2.dilate(taken.astype(np.uint8), _square(GRAIN_CLEAR_PX)) > 0)
    dark = _lines_in(z, clear, mm_per_px or 1.0)
    light = _lines_in(-z, clear, mm_per_px or 1.0)
    if not (dark and light):
        return dark + light
    off = _off_surface(image)  # the image's own contrast: - darker than the surface
    return _without_echoes(dark, light, -off) + _without_echoes(light, dark, off)


def _without_echoes(
    lines: list[Component], others: list[Component], contrast: np.ndarray
) -> list[Component]:
    """``lines`` less the echoes of a line of the other side beside them: the residual
    and the comparison across the grain read a dark line's sides as faint light lines
    (and a light line's as dark ones). Of two lines of opposite sides within
    :data:`GRAIN_ACROSS_PX` + 1 px, the echo is the one that stands less off the surface
    on the image itself (``contrast``, signed to ``lines``' side)."""
    kept = []
    for line in lines:
        own = float(np.median(contrast[line.mask]))
        reach = cv2.dilate(line.mask.astype(np.uint8), _square(GRAIN_ACROSS_PX + 1)) > 0
        rivals = [other for other in others if (reach & other.mask).any()]
        if all(own >= float(np.median(-contrast[other.mask])) for other in rivals):
            kept.append(line)
    return kept


def _line_contrast(grey: np.ndarray, direction: float) -> np.ndarray:
    """``(H, W)`` float32: how much darker each pixel of the image less its mean along the
    grain is than the pixels :data:`GRAIN_ACROSS_PX` either side of it across the grain,
    averaged over :data:`GRAIN_RUN_PX` along it."""
    residual = grey - cv2.filter2D(grey, -1, line_kernel(GRAIN_ALONG_PX, direction))
    across = np.zeros((2 * GRAIN_ACROSS_PX + 3,) * 2, np.float32)
    centre = GRAIN_ACROSS_PX + 1
    across[centre, centre] = -1.0  # minus the pixel: a dark line reads positive
    nx, ny = -math.sin(direction), math.cos(direction)  # across the grain
    for side in (1, -1):
        bilinear_point(
            across, centre + side * GRAIN_ACROSS_PX * nx, centre + side * GRAIN_ACROSS_PX * ny, 0.5
        )
    contrast = cv2.filter2D(residual, -1, across)
    return cv2.filter2D(contrast, -1, line_kernel(GRAIN_RUN_PX, direction))


def _lines_in(z: np.ndarray, clear: np.ndarray, mm_per_px: float) -> list[Component]:
    """The long thin lines of a signed contrast ``z`` on the ``clear`` face. (Labelled
    once; only the seeded pieces whose box could hold a line long enough are measured:
    the extent holds thousands of specks of the texture on a large frame.)"""
    extent = ((z >= GRAIN_EXTENT_SIGMAS) & clear).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(extent, connectivity=8)
    seeded = np.bincount(labels[(z >= GRAIN_SEED_SIGMAS) & clear], minlength=count) > 0
    lines = []
    for i in np.nonzero(seeded[1:])[0] + 1:
        x, y, w, h, area = (int(v) for v in stats[i])
        if area < GRAIN_MIN_LENGTH_PX // 2 or math.hypot(w, h) < GRAIN_MIN_LENGTH_PX:
            continue
        mask = np.zeros(z.shape, bool)
        mask[y : y + h, x : x + w] = labels[y : y + h, x : x + w] == i
        comp = measure_region(mask, mm_per_px)
        if comp.length_px >= GRAIN_MIN_LENGTH_PX and comp.width_px <= GRAIN_MAX_WIDTH_PX:
            lines.append(comp)
    return lines


def part_face(grey: np.ndarray) -> np.ndarray:
    """The part's own pixels (not its holes, nor the belt around it), inset by
    :data:`GRAIN_FACE_INSET_PX`; the whole frame, inset, where no part stands apart from
    a background (:func:`~inspection.silhouette.foreground_split`)."""
    scaled = cv2.normalize(grey, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    part, separation = foreground_split(cv2.GaussianBlur(scaled, (BLUR_PX, BLUR_PX), 0))
    part = np.ones(grey.shape, bool) if separation < MIN_SEPARATION else _largest(part)
    part[[0, -1], :] = False
    part[:, [0, -1]] = False
    return cv2.erode(part.astype(np.uint8), _square(GRAIN_FACE_INSET_PX)) > 0


STATISTICS_SAMPLE = 1 << 18
"""The most values a face's median or quantile is read from: a large frame's every k-th
pixel (a 512 px frame's face and smaller, all of them)."""


def _sampled(values: np.ndarray) -> np.ndarray:
    """``values`` (1-D), or every k-th of them, at most :data:`STATISTICS_SAMPLE`."""
    return values[:: -(-values.size // STATISTICS_SAMPLE)] if values.size else values


def _square(radius: int) -> np.ndarray:
    return np.ones((2 * radius + 1,) * 2, np.uint8)


def _grey(image: np.ndarray) -> np.ndarray:
    """``(H, W)`` float32 luminance, on the image's own scale (what is read here is
    relative: directions, and contrasts in the face's own deviations)."""
    grey = np.asarray(image, dtype=np.float32)
    return grey[..., :3].mean(axis=2) if grey.ndim == 3 else grey
