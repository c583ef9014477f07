"""Dents measured on a 3D profiler's footprint against on the anomaly map's region: each
dent a synthetic set's line finds (the shipped default, fused with the product's
normality model, as the demo runs it) has its length and area read on the map's region
(as without a profiler) and on its footprint in the height map
(``measure.footprint_below_surface``, through ``pipeline.with_profile``), against the
truth; then every part is decided with the height map and the dents read each way, and
with the height map also searched for the dents the camera missed
(``pipeline.with_profiler_dents``).

    inspection synth --out runs/h-val-tile --n 300 --seed 11 --product tile --train-ratio 0 --height
    python benchmarks/dent_footprint.py --data runs/h-val-tile --normality runs/normality/tile-560

Results: benchmarks/README.md, section "A dent's size off the height map".
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from inspection import evaluate as ev
from inspection import pipeline
from inspection.io import read_height_map
from inspection.pipeline import (
    decide,
    part_defects,
    thresholds_of,
    with_profile,
    with_profiler_dents,
)
from inspection.types import Frame

sys.path.insert(0, str(Path(__file__).parent))
from stroke_join import detected_parts, line_parser, load_line

SIZES = ("length_mm", "area_mm2")


def main() -> None:
    args = line_parser(__doc__).parse_args()
    detector, metadata, dataset = load_line(args)
    thresholds, standard = thresholds_of(metadata), ev.dataset_standard(dataset)
    parts = detected_parts(detector, dataset)
    heights = [read_height_map(sample.height_map) for sample, _, _ in parts]
    limits = [c for clause in standard.clauses if clause.defect == "dent" for c in clause.when]
    readings = list(_dent_readings(parts, heights, dataset, thresholds))
    for way in ("map", "footprint"):
        cells = []
        for name in SIZES:
            pairs = np.array([(r["true"][name], r[way][name]) for r in readings])
            error = pairs[:, 1] - pairs[:, 0]
            cells.append(
                f"{name} |error| p50 {np.median(np.abs(error)):.3f} "
                f"(signed {np.median(error):+.3f}, p95 {np.percentile(np.abs(error), 95):.3f})"
            )
        across = sum(
            c.holds(r[way][c.attribute]) != c.holds(r["true"][c.attribute])
            for r in readings
            for c in limits
            if c.attribute in SIZES
        )
        cells.append(f"read across a size limit {across}")
        print(f"{args.data} dents on the {way} (n {len(readings)}): " + "  ".join(cells))
    for sizes in (False, True):
        with _profile_sizes(sizes):
            row = _decided(parts, heights, dataset, standard, thresholds)
        print(f"{args.data} decided, dents sized on the {'footprint' if sizes else 'map'}: {row}")
    searched = with_profiler_dents(thresholds, True)
    row = _decided(parts, heights, dataset, standard, searched)
    print(f"{args.data} decided, the height map also searched for dents: {row}")


def _dent_readings(parts, heights, dataset, thresholds):
    """Per true dent the line finds: its true sizes, those of the map's region that
    covers most of it, and that region's on the height map."""
    for (sample, image, detection), height in zip(parts, heights, strict=True):
        mm = dataset.scale_of(sample)
        found = part_defects(detection, thresholds, mm, image, dataset.reference_of(sample))
        dents = [d for d in found if d.defect_class == "dent" and d.mask is not None]
        for true in sample.attributes.get("defects", []):
            if true["defect_class"] != "dent" or not true.get("visible", True):
                continue
            x0, y0, x1, y1 = true["bbox"]
            hits = [d for d in dents if d.mask[y0:y1, x0:x1].any()]
            if hits:
                best = max(hits, key=lambda d: d.mask[y0:y1, x0:x1].sum())
                profiled = with_profile(best, height, mm)
                yield {
                    "true": true["attributes"],
                    "map": best.attributes,
                    "footprint": profiled.attributes,
                }


def _decided(parts, heights, dataset, standard, thresholds) -> str:
    agree = wrong_pass = false_reject = 0
    for (sample, image, detection), height in zip(parts, heights, strict=True):
        frame = Frame(image, "bench", dataset.scale_of(sample), height_map=height)
        result = decide(
            detection, frame, standard, thresholds, sample.part_id, dataset.reference_of(sample)
        )
        exact = ev.exact_verdict(standard, sample)
        agree += result.verdict.value == exact
        wrong_pass += result.verdict.value == "PASS" and exact == "REJECT"
        false_reject += result.verdict.value == "REJECT" and exact == "PASS"
    return (
        f"agreement {agree / len(parts):.3f}  wrong PASS {wrong_pass}  false REJECT {false_reject}"
    )


@contextmanager
def _profile_sizes(sizes: bool):
    """The line's ``with_profile`` with its footprint sizes on or off (benchmark only)."""
    shipped = pipeline.with_profile

    def profile(defect, height_map, mm_per_px):
        return shipped(defect, height_map, mm_per_px, sizes=sizes)

    pipeline.with_profile = profile
    try:
        yield
    finally:
        pipeline.with_profile = shipped


if __name__ == "__main__":
    main()
