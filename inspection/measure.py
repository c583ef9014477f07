"""Measurement: defect masks to physical sizes, and colour difference (CIEDE2000).

Sizes come from connected components of a binary mask. ``length_mm`` is the long side
of the component's minimum-area rotated rectangle (the extent a gauge would read),
``width_mm`` its area divided by that length (mean width of a thin stroke), and
``area_mm2`` its pixel count at the station's scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from skimage.color import deltaE_ciede2000, rgb2lab

from inspection.types import BBox, Defect


@dataclass(frozen=True)
class Component:
    """One connected region of a mask, measured."""

    mask: np.ndarray  # (H, W) bool
    bbox: BBox
    centroid: tuple[float, float]  # (x, y) px
    area_px: int
    length_px: float
    width_px: float
    mm_per_px: float

    @property
    def length_mm(self) -> float:
        return self.length_px * self.mm_per_px

    @property
    def width_mm(self) -> float:
        return self.width_px * self.mm_per_px

    @property
    def area_mm2(self) -> float:
        return self.area_px * self.mm_per_px**2

    def attributes(self) -> dict[str, float]:
        return {
            "length_mm": round(self.length_mm, 4),
            "width_mm": round(self.width_mm, 4),
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
) -> float:
    """ΔE between the mean colour inside ``mask`` and the part's reference colour.

    With ``surround_px``, the region's colour is first divided by the mean of a ring of
    that width around it and multiplied by the reference: a local white balance, so
    that a lighting gradient across the part is not read as a colour deviation.
    """
    mask = np.asarray(mask, dtype=bool)
    box = mask_bbox(mask)
    if box is not None:  # only the box and its surround matter: crop to them
        pad = surround_px or 0
        rows = slice(max(0, box.y0 - pad), box.y1 + pad)
        cols = slice(max(0, box.x0 - pad), box.x1 + pad)
        image, mask = image[rows, cols], mask[rows, cols]
    region = _mean_rgb(image, mask)
    reference = np.asarray(reference_rgb, dtype=np.float64) / 255.0
    if surround_px:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * surround_px + 1,) * 2)
        ring = cv2.dilate(mask.astype(np.uint8), kernel).astype(bool) & ~mask
        if ring.any():
            region = np.clip(region * reference / np.maximum(_mean_rgb(image, ring), 1e-3), 0, 1)
    return float(delta_e(region, reference))


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
    attributes = comp.attributes() if mm_per_px else {}
    if image is not None and reference_rgb is not None:
        surround = max(3, round(0.05 * max(image.shape[:2])))
        attributes["delta_e"] = round(
            region_delta_e(image, comp.mask, reference_rgb, surround_px=surround), 3
        )
    return Defect(defect_class, attributes, bbox=comp.bbox, mask=comp.mask, score=score)


def _full_scale(image: np.ndarray) -> float:
    return 65535.0 if image.dtype == np.uint16 else 255.0


def _as_unit_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.dtype == np.uint8:
        return rgb.astype(np.float64) / 255.0
    return np.clip(rgb.astype(np.float64), 0.0, 1.0)
