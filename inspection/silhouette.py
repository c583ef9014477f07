"""The part's silhouette: where the part lies in a frame that shows it on a background.

A station that presents each part on a fixture or belt of another brightness shows the
part as one bright (or dark) shape. Its silhouette is cut at Otsu's threshold of the
blurred grey image: the class holding most of the frame's border is the background, the
largest connected shape of the other class is the part, and its convex hull (filled,
so the part's own holes, slots and chipped corners belong to it) is the silhouette.

Whether a station shows parts so is learned from its good parts, not assumed
(:func:`learn_silhouette`): on a texture that fills the frame (magnetic tile's crops, a
web of cloth) Otsu's cut splits the texture itself, and a "background" found there would
hide defects. The rule holds only where nearly every good part gives a silhouette that
stands well apart from its background and keeps to the area good parts cover; a frame that
does not (a part missing, two parts, the light off) gets no silhouette
(:func:`part_interior` returns ``None``) and is judged whole.

Used by the fused detector (:mod:`inspection.models.fusion`): a region only the normality
model finds that reaches nowhere into the part's interior is the background's, not the
part's (benchmarks/README.md, "The part's silhouette").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

SILHOUETTE_KEY = "silhouette"
"""Where a normality model's metadata records its station's rule
(:meth:`SilhouetteRule.to_dict`); absent: frames are judged whole."""

MIN_SEPARATION = 0.8
"""Otsu's between-class share of the grey variance a silhouette needs: a part and a
background of two brightnesses reach 0.9 and more, most textures split in two 0.55-0.8
(magnetic tile at most 0.78); bricks and mortar reach 0.88, and the border stops them."""

MAX_BORDER_SHARE = 0.02
"""Share of the frame's border the silhouette may cover: a part that runs off the frame
is not wholly seen."""

GOOD_SHARE = 0.98
"""Share of good parts that must give a silhouette for a station to get the rule."""

MIN_GOOD_PARTS = 20
"""Good parts a rule is learned from, at the least."""

AREA_SLACK = 0.1
"""A frame's silhouette may cover up to this much (relative) less or more of the frame
than the good parts' least and most."""

MARGIN = 0.03
"""The part's interior is its silhouette less a band this share of the frame's shorter
side wide: the normality model's coarse features (stride 16) and smoothing spread a mark
of the background a few pixels over the part's edge, where a mark of the part's own
reaches well in."""

BLUR_PX = 5  # the grey image's Gaussian blur before the cut: specks do not split it
OUTLINE_SIDE = 512  # a larger frame is outlined at this longest side, then scaled back


@dataclass(frozen=True)
class SilhouetteRule:
    """What a station's good parts' silhouettes look like (:func:`learn_silhouette`).

    Attributes
    ----------
    min_area, max_area : float
        The least and most share of the frame a good part's silhouette covers, widened
        by :data:`AREA_SLACK`.
    good_parts : int
        Good parts it was learned from.
    """

    min_area: float
    max_area: float
    good_parts: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: Any) -> SilhouetteRule | None:
        """The rule a model's metadata records, or ``None`` (none recorded, or a record
        that is not one: the frame is then judged whole, never less)."""
        try:
            rule = cls(
                float(record["min_area"]), float(record["max_area"]), int(record["good_parts"])
            )
        except (TypeError, KeyError, ValueError):
            return None
        return rule if 0.0 <= rule.min_area <= rule.max_area <= 1.0 else None


@dataclass(frozen=True)
class Outline:
    """One frame's silhouette before it is judged: the filled convex hull ``mask``
    (``(H, W)`` bool), the share of the frame it covers, of the border it covers, and
    Otsu's between-class share of the grey variance (``separation``)."""

    mask: np.ndarray
    area: float
    border: float
    separation: float

    @property
    def plausible(self) -> bool:
        """Two brightnesses well apart, and a part wholly in the frame."""
        apart = self.separation >= MIN_SEPARATION
        return apart and self.border <= MAX_BORDER_SHARE and self.area > 0


def outline(image: np.ndarray) -> Outline:
    """The frame's candidate silhouette (see the module), whatever it looks like.

    Parameters
    ----------
    image : np.ndarray
        ``(H, W, 3)`` or ``(H, W)``, any dtype the line reads.
    """
    grey = _grey(image)
    height, width = grey.shape
    scale = min(1.0, OUTLINE_SIDE / max(height, width))  # a silhouette needs no detail
    if scale < 1.0:
        small = (max(1, round(width * scale)), max(1, round(height * scale)))
        grey = cv2.resize(grey, small, interpolation=cv2.INTER_AREA)
    blurred = cv2.GaussianBlur(grey, (BLUR_PX, BLUR_PX), 0)
    part, separation = foreground_split(blurred)
    mask = _filled_hull(_largest(part))
    if scale < 1.0:
        nearest = cv2.INTER_NEAREST
        mask = cv2.resize(mask.astype(np.uint8), (width, height), interpolation=nearest) > 0
    return Outline(mask, float(mask.mean()), float(_border(mask).mean()), separation)


def foreground_split(grey: np.ndarray) -> tuple[np.ndarray, float]:
    """Otsu's split of an 8-bit grey image: the class that does not hold most of the
    image's border (the foreground, ``(H, W)`` bool), and the share of the grey variance
    between the two classes (0 when the image is flat)."""
    _, cut = cv2.threshold(grey, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    foreground = cut == 0 if _border(cut).mean() > 0.5 else cut == 1
    values = grey.astype(np.float64)
    total, share = values.var(), foreground.mean()
    if total <= 0 or share in (0.0, 1.0):
        return foreground, 0.0
    gap = values[foreground].mean() - values[~foreground].mean()
    return foreground, float(share * (1 - share) * gap * gap / total)


def learn_silhouette(good_images: Iterable[np.ndarray]) -> SilhouetteRule | None:
    """The station's silhouette rule from its good parts, or ``None`` where they do not
    show a part on a background (see the module): fewer than :data:`GOOD_SHARE` of them
    give a plausible silhouette, or fewer than :data:`MIN_GOOD_PARTS` were given.

    Parameters
    ----------
    good_images : Iterable[np.ndarray]
        Good parts as the station frames them.
    """
    found = [(o.plausible, o.area) for o in map(outline, good_images)]  # no masks kept
    areas = [area for plausible, area in found if plausible]
    if len(found) < MIN_GOOD_PARTS or len(areas) < GOOD_SHARE * len(found):
        return None
    return SilhouetteRule(
        min_area=max(0.0, min(areas) * (1 - AREA_SLACK)),
        max_area=min(1.0, max(areas) * (1 + AREA_SLACK)),
        good_parts=len(found),
    )


def part_interior(image: np.ndarray, rule: SilhouetteRule) -> np.ndarray | None:
    """Where the part lies in ``image``, less a band :data:`MARGIN` wide at its outline
    (``(H, W)`` bool), or ``None`` where the frame's silhouette is not like the good
    parts' (the frame is then judged whole)."""
    found = outline(image)
    if not (found.plausible and rule.min_area <= found.area <= rule.max_area):
        return None
    radius = max(1, round(MARGIN * min(found.mask.shape)))
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.erode(found.mask.astype(np.uint8), disc).astype(bool)


def _grey(image: np.ndarray) -> np.ndarray:
    """8-bit grey of any image the line reads (a flat image stays flat)."""
    a = np.asarray(image, dtype=np.float32)
    if a.ndim == 3:
        a = a[..., :3].mean(-1)
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return ((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _largest(mask: np.ndarray) -> np.ndarray:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=8
    )
    if count < 2:
        return np.zeros(mask.shape, bool)
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def _filled_hull(mask: np.ndarray) -> np.ndarray:
    filled = np.zeros(mask.shape, np.uint8)
    points = cv2.findNonZero(mask.astype(np.uint8))
    if points is not None:
        cv2.fillConvexPoly(filled, cv2.convexHull(points), 1)
    return filled.astype(bool)


def _border(image: np.ndarray) -> np.ndarray:
    """The image's outermost pixels, each once."""
    return np.concatenate([image[0], image[-1], image[1:-1, 0], image[1:-1, -1]])
