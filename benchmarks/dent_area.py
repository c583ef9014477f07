"""A photographed dent's area: the region the line measures it on (the fused map's, cut at
its pixel threshold) against three other readings, on every region the line calls a dent
and matches to a true dent of one or more synthetic sets (the shipped default, fused
with the product's normality model, as the demo runs it). Tried for issue 23; none is
built (benchmarks/README.md, "Dent depth from shading", the paragraphs after the table):

- the region eroded by one pixel (a 3 x 3 cross, and a 3 x 3 square): the map's blur is
  about a pixel around a small pit;
- the region cut higher on the fused map, at a share of its own peak logit;
- the footprint of the dent's shading: the pixels near the region whose relative shading
  (:func:`~inspection.measure.relative_shading`'s luminance over the surface, smoothed
  by a pixel) reaches a share of the region's peak and clears the surface's noise,
  connected to the region, and their convex hull.

Printed per reading: the median of read / true area (all, and pits under 7 mm²), the
median and 90th percentile of |log(read / true)|, and the pits read on the wrong side
of 4 mm² (tile's T30: over it and truly under, under it and truly over).

    python benchmarks/dent_area.py --data runs/s48/heldout-tile --also runs/s48/val-tile \
        --normality runs/s48/normality/tile-560
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from inspection import evaluate as ev
from inspection.datasets import load_dataset
from inspection.measure import mask_bbox
from inspection.pipeline import DEPTH_CLASSES, decide, thresholds_of
from inspection.types import Frame

sys.path.insert(0, str(Path(__file__).parent))
from stroke_join import line_parser, load_line

LIMIT_MM2 = 4.0  # tile's T30
SMALL_MM2 = 7.0
PAD_PX = 24  # the window kept around each region


def found_dents(detector, thresholds, dataset) -> list[dict]:
    """Each region the line calls a dent and matches to a true one: a window around it of
    the image, the region, the fused map's logits, with the scale and the true area."""
    standard = ev.dataset_standard(dataset)
    dents = []
    for sample in tqdm(dataset.samples, desc="parts", unit="part", mininterval=2.0):
        image, audio, _ = ev.read_sample(sample)
        mm = dataset.scale_of(sample)
        detection = detector.detect(image, audio)
        frame = Frame(image=image, camera="bench", mm_per_px=mm)
        result = decide(
            detection, frame, standard, thresholds, sample.part_id, dataset.reference_of(sample)
        )
        found = [d.defect for d in result.decisions]
        for defect, truth in ev.matched_defects(found, sample):
            if defect.defect_class not in DEPTH_CLASSES or "area_mm2" not in truth:
                continue
            box = mask_bbox(defect.mask)
            ys = slice(max(0, box.y0 - PAD_PX), box.y1 + PAD_PX)
            xs = slice(max(0, box.x0 - PAD_PX), box.x1 + PAD_PX)
            dents.append(
                {
                    "image": image[ys, xs],
                    "region": defect.mask[ys, xs],
                    "map": np.asarray(detection.maps[0, 0, ys, xs]),
                    "mm": mm,
                    "read": float(defect.attributes["area_mm2"]),
                    "true": float(truth["area_mm2"]),
                }
            )
    return dents


def eroded(dent: dict, shape: int) -> float:
    kernel = cv2.getStructuringElement(shape, (3, 3))
    return float(cv2.erode(dent["region"].astype(np.uint8), kernel).sum())


def cut_at_peak(dent: dict, share: float) -> float:
    """Pixels of the region whose logit reaches ``share`` of its peak logit."""
    logits = dent["map"]
    return float((dent["region"] & (logits >= share * logits[dent["region"]].max())).sum())


def shading_footprint(dent: dict, share: float, search_px: int = 2) -> float:
    """The convex hull of the pixels within ``search_px`` of the region whose |relative
    shading| reaches ``share`` of the region's peak, over the ring's noise (3 robust
    deviations), connected to the region; the region's own area where too few."""
    region = dent["region"]
    luminance = dent["image"].astype(np.float32)
    if luminance.ndim == 3:
        luminance = luminance.mean(axis=2)
    near = cv2.dilate(region.astype(np.uint8), np.ones((2 * search_px + 1,) * 2, np.uint8)) > 0
    ring = (cv2.dilate(near.astype(np.uint8), np.ones((17, 17), np.uint8)) > 0) & ~near
    contrast = np.abs(cv2.GaussianBlur(luminance / np.median(luminance[ring]) - 1, (0, 0), 1.0))
    around = contrast[ring]
    floor = 3 * 1.4826 * np.median(np.abs(around - np.median(around)))
    lobes = near & (contrast >= share * contrast[region].max()) & (contrast > floor)
    _, labels = cv2.connectedComponents(lobes.astype(np.uint8), connectivity=8)
    touching = np.unique(labels[lobes & region])
    lobes &= np.isin(labels, touching[touching > 0])
    if lobes.sum() < 3:
        return float(region.sum())
    ys, xs = np.nonzero(lobes)
    hull = cv2.convexHull(np.stack([xs, ys], 1).astype(np.int32))
    filled = np.zeros(lobes.shape, np.uint8)
    cv2.fillConvexPoly(filled, hull, 1)
    return float(filled.sum())


READINGS = {
    "the map's region (the line's)": lambda d: d["read"] / d["mm"] ** 2,
    "eroded, 3 x 3 cross": lambda d: eroded(d, cv2.MORPH_CROSS),
    "eroded, 3 x 3 square": lambda d: eroded(d, cv2.MORPH_RECT),
    **{
        f"map cut at {s:.0%} of its peak": (lambda d, s=s: cut_at_peak(d, s))
        for s in (0.1, 0.2, 0.3)
    },
    **{
        f"shading footprint, {s:.0%} of its peak": (lambda d, s=s: shading_footprint(d, s))
        for s in (0.1, 0.2, 0.3)
    },
}


def main() -> None:
    parser = line_parser(__doc__)
    parser.add_argument("--also", type=Path, action="append", default=[], help="more sets")
    args = parser.parse_args()
    detector, metadata, dataset = load_line(args)
    thresholds = thresholds_of(metadata)
    dents = found_dents(detector, thresholds, dataset)
    for more in args.also:
        dents += found_dents(detector, thresholds, load_dataset(more))
    true = np.array([d["true"] for d in dents])
    small = true < SMALL_MM2
    print(f"{len(dents)} matched dents ({int(small.sum())} under {SMALL_MM2} mm²)")
    for name, read in READINGS.items():
        area = np.array([read(d) * d["mm"] ** 2 for d in dents])
        ratio = area / true
        error = np.abs(np.log(ratio))
        over = int(((area > LIMIT_MM2) & (true <= LIMIT_MM2)).sum())
        under = int(((area <= LIMIT_MM2) & (true > LIMIT_MM2)).sum())
        print(
            f"  {name:34s} read/true median {np.median(ratio):.2f} "
            f"(under {SMALL_MM2} mm²: {np.median(ratio[small]):.2f})  |log| median "
            f"{np.median(error):.3f}, 90th {np.quantile(error, 0.9):.3f}  "
            f"over {LIMIT_MM2} mm² and truly under: {over}, under and truly over: {under}"
        )


if __name__ == "__main__":
    main()
