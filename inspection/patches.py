"""Faint colour patches, which a detector's map can miss.

A painted face's colour deviation of ΔE 1.5-3 over a few millimetres is plain to a
colourimeter and barely there for a model that sees the face a patch at a time: the
default model's map missed three of panel's held-out colour patches, ΔE 1.65-2.76
(benchmarks/README.md, "Colour patches the map missed"), one of them rejectable.

The face's own light is what hides them: a gloss paint mirrors the station's light as a
band across the part, its level changing across the band many times more than a faint
patch's. So each pixel's colour is first divided by the surface's under it, read along
the light (:func:`~inspection.measure.surface_along_light`, as a region's colour is
measured); a patch then stands in that ratio as a box of :data:`PATCH_BOX_SHARE` of the
frame whose mean colour is off the ring around it (:func:`highest_contrast`, CIEDE2000).

Only a patch broad and even is one (:data:`PATCH_EVEN`): a speck of dirt is far more off
at a few pixels than over the box, and is left to the map, as are the regions it found
(read as no surface: neither the light nor a ring is read on them, nor on a patch once
found, whose colour would pull both).

How far off a good face's boxes read is learned from the station's good parts, not
assumed (:func:`learn_patches`, when its normality model is fitted): the search takes a
box only past the most any of them showed (:class:`PatchRule`), so that a glazed face's
speckle raises its own level, and a face too small or unread gives no rule at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from inspection.grain import FrameTally, _square, part_face
from inspection.measure import (
    _SAME_SURFACE,
    Component,
    _channels,
    _full_scale,
    colour_along_px,
    delta_e,
    measure_region,
    surface_along_light,
)
from inspection.silhouette import MIN_GOOD_PARTS

PATCH_BOX_SHARE = 7 / 256
"""The box a patch's colour is read over, as a share of the frame's longer side (7 px at
256: the synthetic line's smallest colour patches are 31-97 px in area, 6-10 px across)."""

PATCH_RING_BOXES = 3
"""The ring a box is compared with is this many boxes wide (21 px at 256), less the box
and :data:`PATCH_GAP_PX` around it: the surface beside a patch, under the same light."""

PATCH_GAP_PX = 2
"""Pixels either side of the box that neither it nor its ring reads (a patch's soft edge)."""

PATCH_FINE_SHARE = 3 / 256
"""The small box whose contrast tells a speck from a patch (:data:`PATCH_EVEN`), as a
share of the frame's longer side (3 px at 256)."""

PATCH_EVEN = 1.6
"""A patch is at most this many times as far off over :data:`PATCH_FINE_SHARE` as over the
box, anywhere on it: a speck of dirt, a few pixels, reads several times more. Chosen on
validation parts (seed 11): benchmarks/README.md."""

PATCH_MARGIN = 0.1
"""The share over the most any good part's box showed at which the search takes a box:
a brushed face's faint smudge read 3.21 where 200 good bracket parts had shown 2.97 at
most (one of 90 good validation parts, seed 11); a patch the map missed on painted panel
reads 1.9-2.5 over panel's 1.46."""

PATCH_MIN_COVER = 0.8
"""Share of a box (and half of its ring) that must be good surface for it to be read:
a box over a hole's or the face's edge reads the edge."""

PATCH_READ_SIDE = 512
"""The longest side (px) a frame is read at: a larger one is read on a shrunk copy, so a
megapixel camera's frame costs what a 512 px one does (about 0.2 s on this CPU)."""

PATCH_KEY = "colour_patches"
"""Where a normality model's metadata records its station's rule
(:meth:`PatchRule.to_dict`); absent: frames are not searched."""


@dataclass(frozen=True)
class PatchRule:
    """A station whose faces are searched for faint colour patches (:func:`learn_patches`).

    Attributes
    ----------
    good_parts : int
        Good parts it was learned from.
    good_max : float
        The most ΔE any of their boxes read off its ring (:func:`highest_contrast`).
    """

    good_parts: int
    good_max: float

    @property
    def level(self) -> float:
        """The ΔE from which a box is taken for a patch."""
        return self.good_max * (1.0 + PATCH_MARGIN)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: Any) -> PatchRule | None:
        """The rule a model's metadata records, or ``None`` (none recorded, or a record
        that is not one: the frames are then not searched)."""
        try:
            rule = cls(int(record["good_parts"]), float(record["good_max"]))
        except (TypeError, KeyError, ValueError):
            return None
        return rule if rule.good_parts > 0 and np.isfinite(rule.good_max) else None


class PatchTally(FrameTally):
    """:func:`learn_patches`'s reading (a :class:`~inspection.grain.FrameTally`)."""

    def __init__(self) -> None:
        self.read = 0
        self.good_max = 0.0

    def add(self, image: np.ndarray) -> None:
        """Reads one good frame: the most its boxes stand off their rings."""
        highest = highest_contrast(image)
        if highest is not None:
            self.read += 1
            self.good_max = max(self.good_max, highest)

    def rule(self) -> PatchRule | None:
        """The rule of the frames read; ``None`` from fewer than
        :data:`~inspection.silhouette.MIN_GOOD_PARTS` readable ones."""
        if self.read < MIN_GOOD_PARTS:
            return None
        return PatchRule(good_parts=self.read, good_max=round(self.good_max, 4))


def learn_patches(good_images: Iterable[np.ndarray]) -> PatchRule | None:
    """The station's rule from its good parts (:class:`PatchTally`)."""
    return PatchTally().learned(good_images)


def colour_patches(
    image: np.ndarray,
    rule: PatchRule,
    mm_per_px: float | None,
    found: Sequence[np.ndarray] = (),
) -> list[Component]:
    """The faint colour patches on the part's face that no region ``found`` reaches
    (see the module), measured: each is a piece of boxes past ``rule``'s level, cut
    where its own box reads half its peak (its edge), and read a second time without
    itself in the light or the rings (its colour pulls both).

    Parameters
    ----------
    image : np.ndarray
        The frame, ``(H, W, 3)`` or ``(H, W)``, on the line's scales (8 or 16 bits, or
        floats on the 8-bit scale).
    rule : PatchRule
        The station's (:func:`learn_patches`).
    mm_per_px : float or None
        The station's scale (``None``: sizes in pixels).
    found : sequence of np.ndarray
        ``(H, W)`` bool masks of the regions the map found: a patch within a box of one
        is left to it, and no light or ring is read on them.
    """
    pixels = _read_pixels(image)
    taken = np.zeros(image.shape[:2], bool)
    for region in found:
        taken |= np.asarray(region, bool)
    taken = _shrunk(taken, pixels.shape[:2])
    face = _read_face(pixels, image.shape[:2], unlit=taken)
    if face is None:
        return []
    first = face.candidates(rule.level, taken)
    if not first:
        return []
    # Read again with them out of the surface the light and the rings are read on: a
    # patch's colour pulls the light read along it, and the rings of the boxes around it
    unlit = taken.copy()
    for covered, _ in first:
        unlit |= covered
    unlit = cv2.dilate(unlit.astype(np.uint8), _square(face.box_px // 2)) > 0
    face = _read_face(pixels, image.shape[:2], unlit=unlit)
    if face is None:
        return []
    pieces = face.candidates(rule.level, taken)
    if not pieces:
        return []
    fine = face.contrast(face.fine_px, np.logical_or.reduce([c for c, _ in pieces]))
    return [
        measure_region(face.full_size(covered), mm_per_px or 1.0)
        for covered, peak in pieces
        # not a speck, far more off at a few pixels than over the box
        if float(fine[covered].max()) <= PATCH_EVEN * peak
    ]


def highest_contrast(image: np.ndarray) -> float | None:
    """The most any box of the part's face stands off the ring around it (ΔE, see the
    module); ``None`` where the face is too small to read."""
    face = _read_face(_read_pixels(image), image.shape[:2])
    if face is None:
        return None
    return float(face.contrast(face.box_px, face.ringed).max())


def box_px(shape: tuple[int, ...]) -> int:
    """The box (px, odd) a patch's colour is read over in a frame of ``shape``."""
    return max(3, round(PATCH_BOX_SHARE * max(shape[:2]))) | 1


@dataclass(frozen=True)
class _Face:
    """A frame's face as the search reads it: on a copy no larger than
    :data:`PATCH_READ_SIDE` (the box is a share of the frame: it covers the same surface
    on the copy), each pixel's colour divided by the surface's under it read along the
    light, and each box's ring's mean of that ratio."""

    shape: tuple[int, int]  # the frame's (H, W)
    surface: np.ndarray  # (h, w) bool: the good surface read
    ringed: np.ndarray  # (h, w) bool: of it, the pixels whose box's ring is read
    ratio: np.ndarray  # (h, w, 3): colour over the surface's along the light (0 off it)
    ring: np.ndarray  # (h, w, 3): the mean ratio on the ring around each pixel's box
    colour: np.ndarray  # (3,): the face's median colour, RGB in 0..1
    box_px: int
    fine_px: int

    def contrast(self, size: int, where: np.ndarray) -> np.ndarray:
        """``(h, w)``: ΔE between the mean ratio over the ``size`` box centred on each
        pixel of ``where`` and its ring's, on the face's colour (0 elsewhere, and where
        the box or its ring lies too little on the surface)."""
        weight = self.surface.astype(np.float32)
        weights = _sums(weight, size)
        read = where & self.ringed & (weights >= PATCH_MIN_COVER * size * size)
        out = np.zeros(read.shape, np.float64)
        if read.any():
            mean = _sums(self.ratio, size)[read] / weights[read][:, None]
            box, ring = (np.clip(r * self.colour, 0, 1) for r in (mean, self.ring[read]))
            out[read] = delta_e(box, ring)
        return out

    def candidates(self, level: float, taken: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """Each piece of boxes at ``level`` or more, none within a box of the regions
        ``taken``, and its highest contrast: the piece is the surface its boxes reach
        whose own box reads at least half that (a box half on a patch reads half its
        contrast: the patch's edge)."""
        boxes = self.contrast(self.box_px, self.ringed)
        near = cv2.dilate(taken.astype(np.uint8), _square(self.box_px)) > 0
        count, labels = cv2.connectedComponents((boxes >= level).astype(np.uint8))
        pieces = []
        for i in range(1, count):
            centres = labels == i
            reach = cv2.dilate(centres.astype(np.uint8), _square(self.box_px // 2)) > 0
            if (reach & near).any():
                continue
            peak = float(boxes[centres].max())
            pieces.append((reach & self.surface & (boxes >= peak / 2), peak))
        return pieces

    def full_size(self, mask: np.ndarray) -> np.ndarray:
        """A mask on the copy read, at the frame's size."""
        if mask.shape == self.shape:
            return mask
        size = (self.shape[1], self.shape[0])
        return cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0


def _read_pixels(image: np.ndarray) -> np.ndarray:
    """``(h, w, 3)`` float32 RGB in 0..1 (a grey frame's lightness in each), on a copy no
    larger than :data:`PATCH_READ_SIDE`."""
    pixels = _channels(image) / _full_scale(image)
    if pixels.shape[2] == 1:  # a grey frame: its lightness alone
        pixels = np.repeat(pixels, 3, axis=2)
    h, w = image.shape[:2]
    scale = PATCH_READ_SIDE / max(h, w)
    if scale >= 1.0:
        return pixels.astype(np.float32)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    pixels = cv2.resize(pixels.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    return pixels.reshape(size[1], size[0], 3)


def _shrunk(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A frame-size mask on the copy read (any of a shrunk pixel's)."""
    if mask.shape == shape:
        return mask
    size = (shape[1], shape[0])
    return cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0


def _read_face(
    pixels: np.ndarray, frame: tuple[int, int], unlit: np.ndarray | None = None
) -> _Face | None:
    """The :class:`_Face` of a frame of size ``frame`` read as ``pixels``
    (:func:`_read_pixels`), the light and the rings read without the pixels ``unlit``
    (regions found: their colour is no surface's); ``None`` where the face is too small
    to read."""
    face = part_face(pixels.mean(axis=2))
    box = box_px(pixels.shape)
    if face.sum() < box**2:
        return None
    luminance = pixels.mean(axis=2)
    level = max(float(np.median(luminance[face])), 1e-6)
    surface = face & (np.abs(luminance / level - 1.0) < _SAME_SURFACE)
    lit = surface if unlit is None else surface & ~unlit
    along = surface_along_light(pixels, lit, colour_along_px(pixels.shape))
    ratio = pixels / np.maximum(along, 1e-6)
    surface &= np.isfinite(ratio).all(axis=2)
    lit &= surface
    if not lit.any():
        return None
    ratio = np.where(surface[..., None], ratio, 0.0).astype(np.float32)
    weight = lit.astype(np.float32)
    on_lit = ratio * weight[..., None]
    outer, inner = PATCH_RING_BOXES * box, box + 2 * PATCH_GAP_PX
    ring_weight = _sums(weight, outer) - _sums(weight, inner)
    ring = (_sums(on_lit, outer) - _sums(on_lit, inner)) / np.maximum(ring_weight, 1e-6)[..., None]
    ringed = surface & (ring_weight >= 0.5 * PATCH_MIN_COVER * (outer**2 - inner**2))
    colour = np.median(pixels[surface], axis=0).astype(np.float64)
    fine = max(3, round(PATCH_FINE_SHARE * max(pixels.shape[:2]))) | 1
    return _Face(frame, surface, ringed, ratio, ring, colour, box, fine)


def _sums(values: np.ndarray, size: int) -> np.ndarray:
    """Each pixel's sum of ``values`` over the ``size`` box centred on it (0 off the frame)."""
    return cv2.boxFilter(values, -1, (size, size), normalize=False, borderType=cv2.BORDER_CONSTANT)
