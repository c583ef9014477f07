"""How far inside a region's edge its colour is read (measure.COLOUR_CORE_PX): each colour
patch of a synthetic set that the line finds (the shipped default, fused with the
product's normality model as the demo runs it) has its ΔE read on the map's region with
its core eroded by 0-4 px, the ring of the local white balance always around the whole
region, and on the true mask for comparison; printed against the true ΔE. Two readings
against the surface under the region instead of a ring around it (the region inpainted
from its surroundings, ``cv2.inpaint``, grown by 1 px past the map's edge) were tried
as well: the region's colour over that surface's, per pixel, times the reference (a
white balance under each pixel), and the mean CIELAB shift from that surface added to
the reference (the synthesiser's own model of a patch).

    python benchmarks/colour_core.py --data runs/val-bracket --normality runs/normality/bracket-560

Results: benchmarks/README.md, section "Colour read on the region's core" (read against
the ring's mean colour: since 2026-12-07 ``region_delta_e`` reads against the surface along
the light, ``benchmarks/colour_light.py``, so the figures this prints now are that
reading's).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from skimage.color import deltaE_ciede2000, rgb2lab
from tqdm import tqdm

from inspection import evaluate as ev
from inspection.measure import COLOUR_CORE_PX, _core, _disc, region_delta_e, surround_px
from inspection.pipeline import part_defects, thresholds_of

sys.path.insert(0, str(Path(__file__).parent))
from stroke_join import line_parser, load_line

CORES = (0, 1, 2, 3, 4)


def main() -> None:
    args = line_parser(__doc__).parse_args()
    rows = []  # (true ΔE, on the true mask, on the region's core for each of CORES)
    for image, reference, patch, region, true_delta_e in found_patches(*load_line(args)):
        surround = surround_px(image)
        read = [region_delta_e(image, patch, reference, surround)]
        read += [region_delta_e(image, region, reference, surround, core) for core in CORES]
        read += [on_surface(image, region, reference, mode) for mode in SURFACE_MODES]
        rows.append([true_delta_e, *read])
    table = np.array(rows)
    print(f"{args.data}: {len(table)} patches found")
    names = ["true mask", *(f"region, core {c} px" for c in CORES)]
    names += [f"surface under, {mode}" for mode in SURFACE_MODES]
    for i, name in enumerate(names, start=1):
        rel = (table[:, i] - table[:, 0]) / table[:, 0]
        diff, faint = table[:, i] - table[:, 0], table[:, 0] < 3
        print(
            f"  {name:18s} median relative error {np.median(rel):+.3f}  "
            f"median |relative error| {np.median(np.abs(rel)):.3f}  "
            f"more than 15 % under: {int((rel < -0.15).sum())}  "
            f"|error| where ΔE < 3: median {np.median(np.abs(diff[faint])):.2f}, "
            f"90th percentile {np.quantile(np.abs(diff[faint]), 0.9):.2f}"
        )


SURFACE_MODES = ("ratio", "lab shift")


def on_surface(image: np.ndarray, region: np.ndarray, reference: np.ndarray, mode: str) -> float:
    """ΔE of ``region`` (read on its core) against the surface inpainted under it."""
    hole = cv2.dilate(region.astype(np.uint8), _disc(1))
    surface = cv2.inpaint(image, hole, 5, cv2.INPAINT_TELEA)
    core = _core(region, COLOUR_CORE_PX)
    pixels, under = (x[core].astype(np.float64) / 255.0 for x in (image, surface))
    ref = reference.astype(np.float64)[None] / 255.0
    ref_lab = rgb2lab(ref[None])[0]
    if mode == "ratio":
        balanced = np.clip((pixels / np.maximum(under, 1e-3)).mean(0) * ref, 0.0, 1.0)
        return float(deltaE_ciede2000(ref_lab, rgb2lab(balanced[None])[0])[0])
    shift = (rgb2lab(pixels[None])[0] - rgb2lab(under[None])[0]).mean(0)
    return float(deltaE_ciede2000(ref_lab, ref_lab + shift)[0])


def found_patches(detector, metadata, dataset) -> Iterator[tuple]:
    """``(image, reference, true patch, the map's region, true ΔE)`` for each colour patch
    of ``dataset`` the line finds (the region the maps call a colour deviation that
    overlaps the patch's box most)."""
    thresholds = thresholds_of(metadata)
    patches = [s for s in dataset.samples if s.label == "color_deviation"]
    for sample in tqdm(patches, desc="patches", unit="part", mininterval=2.0):
        image, audio, truth = ev.read_sample(sample)
        reference = np.asarray(dataset.reference_of(sample), np.float64)
        found = part_defects(
            detector.detect(image, audio), thresholds, dataset.scale_of(sample), image, reference
        )
        for true in sample.attributes["defects"]:
            if true["defect_class"] != "color_deviation" or not true.get("bbox"):
                continue
            x0, y0, x1, y1 = true["bbox"]
            region = _best_region(found, (x0, y0, x1, y1))
            if region is None:
                continue
            patch = np.zeros(truth.shape, bool)
            patch[y0:y1, x0:x1] = truth[y0:y1, x0:x1] > 0
            yield image, reference, patch, region, true["attributes"]["delta_e"]


def _best_region(found, box) -> np.ndarray | None:
    x0, y0, x1, y1 = box
    hits = [
        d.mask
        for d in found
        if d.defect_class == "color_deviation" and d.mask is not None and d.mask[y0:y1, x0:x1].any()
    ]
    return max(hits, key=lambda m: m[y0:y1, x0:x1].sum()) if hits else None


if __name__ == "__main__":
    main()
