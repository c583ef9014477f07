"""A colour patch's ΔE read against the surface along the light (measure.region_delta_e,
now) and against a ring around it (before), side by side: each colour patch of a
synthetic set that the line finds (the shipped default, fused with the product's
normality model as the demo runs it) is read on the map's region (its 2 px core) and on
the true mask, both ways, and with the light's segment 61, 81 and 121 px long at 256
(``COLOUR_ALONG_SHARE``); printed against the true ΔE, with how many readings fall on
the true side of every ΔE limit of the product's standard, and the time of a reading.

    python benchmarks/colour_light.py --data runs/val-panel --normality runs/normality/panel-560

Results: benchmarks/README.md, section "Colour read against the surface along the light".
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import cv2
import numpy as np

from inspection import evaluate as ev
from inspection import measure
from inspection.measure import COLOUR_CORE_PX, _core, _disc, delta_e, region_delta_e, surround_px

sys.path.insert(0, str(Path(__file__).parent))
from colour_core import found_patches
from stroke_join import line_parser, load_line

ALONG_SHARES = {"61 px": 61 / 256, "81 px (shipped)": 81 / 256, "121 px": 121 / 256}


def by_ring(image: np.ndarray, mask: np.ndarray, reference: np.ndarray, surround: int) -> float:
    """The reading before: the core's mean colour over the ring's, times the reference."""
    core = _core(mask, COLOUR_CORE_PX)
    ring = (cv2.dilate(mask.astype(np.uint8), _disc(surround)) > 0) & ~mask
    pixels = image.astype(np.float64)
    ref = reference / 255.0
    return float(delta_e(np.clip(pixels[core].mean(0) / pixels[ring].mean(0) * ref, 0, 1), ref))


def along_light(image, mask, reference, surround, share) -> tuple[float, float]:
    """The reading now with the light's segment ``share`` of the frame, and its time (s)."""
    shipped, measure.COLOUR_ALONG_SHARE = measure.COLOUR_ALONG_SHARE, share
    try:
        start = time.perf_counter()
        value = region_delta_e(image, mask, reference, surround, COLOUR_CORE_PX)
        return value, time.perf_counter() - start
    finally:
        measure.COLOUR_ALONG_SHARE = shipped


def main() -> None:
    args = line_parser(__doc__).parse_args()
    detector, metadata, dataset = load_line(args)
    limits = _delta_e_limits(dataset)
    rows, times = [], {"ring": [], "along": []}
    for image, reference, patch, region, true_delta_e in found_patches(detector, metadata, dataset):
        surround = surround_px(image)
        row = [true_delta_e]
        for mask in (patch, region):
            start = time.perf_counter()
            row.append(by_ring(image, mask, reference, surround))
            times["ring"].append(time.perf_counter() - start)
            for share in ALONG_SHARES.values():
                value, seconds = along_light(image, mask, reference, surround, share)
                row.append(value)
                times["along"].append(seconds)
        rows.append(row)
    table = np.array(rows)
    print(f"{args.data}: {len(table)} patches found; the standard's ΔE limits {limits}")
    names = ["ring (before)", *(f"along the light, {n}" for n in ALONG_SHARES)]
    for m, mask_name in enumerate(("true mask", "map's region")):
        for i, name in enumerate(names):
            read = table[:, 1 + m * len(names) + i]
            error = np.abs(read - table[:, 0])
            sides = sum(int(np.sum((read > lim) == (table[:, 0] > lim))) for lim in limits)
            print(
                f"  {mask_name:12s} {name:34s} median |error| {np.median(error):.3f}  "
                f"90th percentile {np.quantile(error, 0.9):.3f}  "
                f"on the true side of each limit {sides}/{len(table) * len(limits)}"
            )
    ring_ms, along_ms = (1000 * np.median(times[k]) for k in ("ring", "along"))
    print(
        f"  a reading along the light takes {along_ms:.1f} ms, {along_ms / ring_ms:.1f}x the "
        f"ring's {ring_ms:.1f} ms (median)"
    )


def _delta_e_limits(dataset) -> list[float]:
    """The ΔE values the product's standard compares with (``delta_e > X``)."""
    standard = ev.dataset_standard(dataset)
    return sorted(
        {c.value for clause in standard.clauses for c in clause.when if c.attribute == "delta_e"}
    )


if __name__ == "__main__":
    main()
