"""Dents gauged on the image as specks are (tried, not built): each dent a synthetic
set's line finds (the shipped default, fused with the product's normality model as the
demo runs it) has its area read on the map and by measure.gauge_on_image at half, a
third and a quarter of its peak contrast, against its true area; then every part is
decided with dents measured on the map (as shipped) and gauged at each edge.

    python benchmarks/dent_gauge.py --data runs/val-tile --normality runs/normality/tile-560

Results: benchmarks/README.md, section "Specks the maps call a stroke" ("Tried, not
built: dents gauged the same way").
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from inspection import evaluate as ev
from inspection import pipeline
from inspection.measure import Component, gauge_on_image, measure_region
from inspection.pipeline import part_defects, thresholds_of

sys.path.insert(0, str(Path(__file__).parent))
from stroke_join import detected_parts, line_parser, load_line, map_only, measured_row

EDGES = (0.5, 1 / 3, 0.25)


def main() -> None:
    args = line_parser(__doc__).parse_args()
    detector, metadata, dataset = load_line(args)
    thresholds, standard = thresholds_of(metadata), ev.dataset_standard(dataset)
    parts = detected_parts(detector, dataset)
    areas = np.array(list(_dent_areas(parts, dataset, thresholds)))  # (n, 2 + len(EDGES))
    for i, name in enumerate(["map", *(f"gauged at {e:.2f}" for e in EDGES)], start=1):
        rel = areas[:, i] / areas[:, 0] - 1
        rel = rel[~np.isnan(rel)]
        print(
            f"{args.data} {name}: {len(rel)} dents, median relative area error "
            f"{np.median(rel):+.3f}, median |relative error| {np.median(np.abs(rel)):.3f}"
        )
    for edge in (None, *EDGES):
        with _dents_gauged(edge):
            row = measured_row(parts, dataset, standard, thresholds)
        print(f"{args.data} dents {'on the map' if edge is None else f'at {edge:.2f}'}: {row}")


def _dent_areas(parts, dataset, thresholds):
    """(true, on the map, gauged at each edge or NaN) area in mm² of each dent found."""
    for sample, image, detection in parts:
        mm = dataset.scale_of(sample)
        with map_only(True):
            found = part_defects(detection, thresholds, mm, image, None)
        for true in sample.attributes.get("defects", []):
            if true["defect_class"] != "dent" or not true.get("bbox"):
                continue
            x0, y0, x1, y1 = true["bbox"]
            hits = [d.mask for d in found if d.mask is not None and d.mask[y0:y1, x0:x1].any()]
            if not hits:
                continue
            on_map = measure_region(max(hits, key=lambda m: m[y0:y1, x0:x1].sum()), mm)
            gauged = [gauge_on_image(image, on_map, edge=e) for e in EDGES]
            yield (
                true["attributes"]["area_mm2"],
                on_map.area_mm2,
                *(g.area_mm2 if g else np.nan for g in gauged),
            )


@contextmanager
def _dents_gauged(edge: float | None):
    """Dents gauged at ``edge`` (``None``: on the map, as shipped; benchmark only)."""
    shipped = pipeline._gauged

    def gauged(comp: Component, name: str, image: np.ndarray | None) -> Component:
        if name == "dent" and image is not None and edge is not None:
            return gauge_on_image(image, comp, edge=edge) or comp
        return shipped(comp, name, image)

    pipeline._gauged = gauged
    try:
        yield
    finally:
        pipeline._gauged = shipped


if __name__ == "__main__":
    main()
