"""Specks of dirt measured on the map's region against the gauge on the image
(measure.gauge_on_image): each contamination a synthetic set's line finds (the shipped
default, fused with the product's normality model as the demo runs it) has its area read
on the map, by the gauge at half maximum and at a third (pipeline.SPECK_EDGE, shipped),
printed against the true area.

With ``--verdicts``, every part is detected once and decided with contamination measured
on the map, gauged at half maximum, gauged at half maximum only where its region is
one-signed (measure.one_signed_share at least each ``--sign-cuts`` value), and as
shipped (pipeline._gauged: a third, where the share reaches pipeline.SPECK_ONE_SIGNED).
A speck is one colour laid on the surface (share near 1); a dent shows through its
shading, a lit slope and a shadowed one (share well under 1), and the gauge reads a
dent's dark slope alone. The share of every contamination region is printed by the true
defect under it.

    python benchmarks/speck_area.py --data runs/val-bracket --normality runs/normality/bracket-560
    python benchmarks/speck_area.py --data runs/val-bracket --normality runs/normality/bracket-560 \
        --verdicts

Results: benchmarks/README.md, section "Specks of dirt: gauged".
"""

from __future__ import annotations

import sys
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from tqdm import tqdm

from inspection import evaluate as ev
from inspection import pipeline
from inspection.measure import Component, gauge_on_image, measure_region, one_signed_share
from inspection.pipeline import part_defects, thresholds_of

sys.path.insert(0, str(Path(__file__).parent))
from stroke_join import detected_parts, line_parser, load_line, map_only, measured_row

CLASS = "contamination"


def main() -> None:
    parser = line_parser(__doc__)
    parser.add_argument("--verdicts", action="store_true", help="decide every part each way")
    parser.add_argument("--sign-cuts", default="0.5,0.7", help="one-signed shares to gauge from")
    args = parser.parse_args()
    detector, metadata, dataset = load_line(args)
    if args.verdicts:
        cuts = [float(c) for c in args.sign_cuts.split(",") if c]
        verdict_rows(detector, dataset, thresholds_of(metadata), cuts)
    else:
        area_rows(detector, dataset, thresholds_of(metadata), args.data)


def area_rows(detector, dataset, thresholds, data: Path) -> None:
    rows = []  # (true area, on the map's region, gauged at half maximum, at a third), mm²
    specks = [s for s in dataset.samples if s.label == CLASS]
    for sample in tqdm(specks, desc="parts", unit="part", mininterval=2.0):
        image, audio, _ = ev.read_sample(sample)
        mm = dataset.scale_of(sample)
        with map_only(True):  # the regions as the map cut them
            found = part_defects(detector.detect(image, audio), thresholds, mm, image, None)
        for true in sample.attributes["defects"]:
            if true["defect_class"] != CLASS or not true.get("bbox"):
                continue
            x0, y0, x1, y1 = box = true["bbox"]
            hits = [d.mask for d in found if d.mask is not None and _overlaps(d.mask, box)]
            if not hits:
                continue
            on_map = measure_region(max(hits, key=lambda m: m[y0:y1, x0:x1].sum()), mm)
            half = gauge_on_image(image, on_map) or on_map
            third = gauge_on_image(image, on_map, edge=pipeline.SPECK_EDGE) or on_map
            rows.append(
                (true["attributes"]["area_mm2"], on_map.area_mm2, half.area_mm2, third.area_mm2)
            )
    table = np.array(rows)
    print(f"{data}: {len(table)} specks found")
    for i, name in ((1, "map region"), (2, "gauge, half"), (3, "gauge, third")):
        rel = table[:, i] / table[:, 0] - 1
        print(
            f"  {name:10s} median relative area error {np.median(rel):+.3f}  "
            f"median |relative error| {np.median(np.abs(rel)):.3f}  "
            f"over x1.5: {int((rel > 0.5).sum())}  under x0.67: {int((rel < -1 / 3).sum())}"
        )


def verdict_rows(detector, dataset, thresholds, cuts: list[float]) -> None:
    standard = ev.dataset_standard(dataset)
    parts = detected_parts(detector, dataset)
    with _contamination_gauged(None):
        print("on the map             ", measured_row(parts, dataset, standard, thresholds))
    with _contamination_gauged(0.0):
        print("gauged at half maximum ", measured_row(parts, dataset, standard, thresholds))
    for cut in cuts:
        with _contamination_gauged(cut):
            row = measured_row(parts, dataset, standard, thresholds)
            print(f"half maximum, share>={cut:.2f}", row, flush=True)
    row = measured_row(parts, dataset, standard, thresholds)
    print(f"shipped (a third, share>={pipeline.SPECK_ONE_SIGNED:.2f})", row, flush=True)
    for truth, values in sorted(_shares(parts, dataset, thresholds).items()):
        v = np.array(values)
        print(
            f"  one-signed share of contamination regions on a true {truth}: n {len(v)}, "
            f"min {v.min():.2f}, 10th percentile {np.percentile(v, 10):.2f}, "
            f"median {np.median(v):.2f}"
        )


@contextmanager
def _contamination_gauged(cut: float | None):
    """Contamination measured on the map's region (``None``), or by the gauge at half
    maximum where its one-signed share reaches ``cut`` (benchmark only)."""
    shipped = pipeline._gauged

    def gauged(comp: Component, name: str, image: np.ndarray | None) -> Component:
        if name != CLASS or image is None:
            return shipped(comp, name, image)
        if cut is not None and one_signed_share(image, comp) >= cut:
            return gauge_on_image(image, comp) or comp
        return comp

    pipeline._gauged = gauged
    try:
        yield
    finally:
        pipeline._gauged = shipped


def _shares(parts, dataset, thresholds) -> dict[str, list[float]]:
    """The one-signed share of each contamination region the line finds (on the map), by
    the true defect whose box it overlaps."""
    shares = defaultdict(list)
    for sample, image, detection in parts:
        mm = dataset.scale_of(sample)
        with map_only(True):
            found = part_defects(detection, thresholds, mm, image, None)
        truths = [t for t in sample.attributes.get("defects", []) if t.get("bbox")]
        for defect in found:
            if defect.defect_class != CLASS or defect.mask is None:
                continue
            under = [t["defect_class"] for t in truths if _overlaps(defect.mask, t["bbox"])] or [
                "nothing (good surface)"
            ]
            shares[under[0]].append(one_signed_share(image, measure_region(defect.mask, mm)))
    return shares


def _overlaps(mask: np.ndarray, box: list[int]) -> bool:
    x0, y0, x1, y1 = box
    return bool(mask[y0:y1, x0:x1].any())


if __name__ == "__main__":
    main()
