"""Specks of dirt measured on the map's region against the gauge on the image
(measure.gauge_on_image): each contamination a synthetic set's line finds (the shipped
default, fused with the product's normality model as the demo runs it) has its area read
both ways, printed against the true area.

    python benchmarks/speck_area.py --data runs/val-bracket --normality runs/normality/bracket-560

Results: benchmarks/README.md, section "Specks of dirt gauged too".
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from inspection import evaluate as ev
from inspection.measure import gauge_on_image, measure_region
from inspection.pipeline import part_defects, thresholds_of

sys.path.insert(0, str(Path(__file__).parent))
from stroke_join import _map_only, line_parser, load_line

CLASS = "contamination"


def main() -> None:
    args = line_parser(__doc__).parse_args()
    detector, metadata, dataset = load_line(args)
    thresholds = thresholds_of(metadata)
    rows = []  # (true area, on the map's region, by the gauge), mm²
    specks = [s for s in dataset.samples if s.label == CLASS]
    for sample in tqdm(specks, desc="parts", unit="part", mininterval=2.0):
        image, audio, _ = ev.read_sample(sample)
        mm = dataset.scale_of(sample)
        with _map_only(True):  # the regions as the map cut them
            found = part_defects(detector.detect(image, audio), thresholds, mm, image, None)
        for true in sample.attributes["defects"]:
            if true["defect_class"] != CLASS or not true.get("bbox"):
                continue
            x0, y0, x1, y1 = true["bbox"]
            hits = [d.mask for d in found if d.mask is not None and d.mask[y0:y1, x0:x1].any()]
            if not hits:
                continue
            on_map = measure_region(max(hits, key=lambda m: m[y0:y1, x0:x1].sum()), mm)
            gauged = gauge_on_image(image, on_map) or on_map
            rows.append((true["attributes"]["area_mm2"], on_map.area_mm2, gauged.area_mm2))
    table = np.array(rows)
    print(f"{args.data}: {len(table)} specks found")
    for i, name in ((1, "map region"), (2, "gauge")):
        rel = table[:, i] / table[:, 0] - 1
        print(
            f"  {name:10s} median relative area error {np.median(rel):+.3f}  "
            f"median |relative error| {np.median(np.abs(rel)):.3f}  "
            f"over x1.5: {int((rel > 0.5).sum())}  under x0.67: {int((rel < -1 / 3).sum())}"
        )


if __name__ == "__main__":
    main()
