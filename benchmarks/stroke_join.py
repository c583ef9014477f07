"""How scratches and cracks are measured: the gap at which a broken stroke's pieces are
joined (pipeline.JOIN_GAP_PX), and the map's region against the stroke gauge on the image
(measure.gauge_on_image). Each part of a synthetic set is detected once (the shipped
default, fused with the product's normality model as the demo runs it), then decided
under every setting.

Per setting: verdict agreement with the standard on the exact attributes, rejectable
parts passed, good parts rejected, the median absolute (and signed) length error and the
median width bias of the regions matched to true scratches and cracks, how many found
strokes cover two true strokes' boxes, and the median time of `pipeline.decide` (measure
and judge; the detection is not in it) per part, every setting in the same run.

    inspection synth --out runs/val-panel --n 300 --seed 11 --product panel --train-ratio 0
    python benchmarks/stroke_join.py --data runs/val-panel --normality runs/normality/panel-560

Results: benchmarks/README.md, sections "Broken strokes" and "A stroke gauge on the image".
"""

from __future__ import annotations

import argparse
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from inspection import evaluate as ev
from inspection import pipeline
from inspection.datasets import load_dataset
from inspection.metrics import median_abs_error, median_signed_error
from inspection.pipeline import STROKE_CLASSES, decide, flags_part, load_detector, thresholds_of
from inspection.types import Frame


def line_parser(doc: str) -> argparse.ArgumentParser:
    """The options every measurement benchmark takes: a synthetic set, the model, and the
    product's normality model to fuse it with."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=Path, default=Path("models/default"))
    parser.add_argument("--normality", type=Path, default=None)
    return parser


def load_line(args: argparse.Namespace):
    """(detector, metadata, dataset) as the options name them."""
    detector, metadata = load_detector(args.model, normality=args.normality)
    return detector, metadata, load_dataset(args.data)


def detected_parts(detector, dataset) -> list[tuple]:
    """``(sample, image, detection)`` for every part of ``dataset``, each detected once so
    that a benchmark can decide it several ways."""
    parts = []
    for sample in tqdm(dataset.samples, desc="detecting", unit="part", mininterval=2.0):
        image, audio, _ = ev.read_sample(sample)
        parts.append((sample, image, detector.detect(image, audio)))
    return parts


def main() -> None:
    parser = line_parser(__doc__)
    parser.add_argument("--gaps", default="0,2,3,4,6,8,12", help="gaps measured on the map")
    parser.add_argument("--gauge-gaps", default="8", help="gaps measured by the gauge")
    args = parser.parse_args()

    detector, metadata, dataset = load_line(args)
    standard = ev.dataset_standard(dataset)
    parts = detected_parts(detector, dataset)
    _row(parts, dataset, standard, thresholds_of(metadata), True)  # warm-up: not timed
    for gauge, gaps in ((False, args.gaps), (True, args.gauge_gaps)):
        for gap in (int(g) for g in gaps.split(",") if g):
            thresholds = replace(thresholds_of(metadata), join_gap_px=gap)
            row = _row(parts, dataset, standard, thresholds, gauge)
            print("gauge" if gauge else "map  ", row, flush=True)


@contextmanager
def map_only(active: bool):
    """Strokes measured on the map's region, as before the gauge (benchmark only)."""
    gauged = pipeline._gauged
    if active:
        pipeline._gauged = lambda comp, name, image: comp
    try:
        yield
    finally:
        pipeline._gauged = gauged


def _row(parts, dataset, standard, thresholds, gauge: bool) -> str:
    with map_only(not gauge):
        return measured_row(parts, dataset, standard, thresholds)


def measured_row(parts, dataset, standard, thresholds) -> str:
    agree = wrong_pass = false_reject = spans_two = 0
    pairs, seconds = [], []
    for sample, image, detection in parts:
        mm = dataset.scale_of(sample)
        reference = dataset.reference_of(sample)
        frame = Frame(image=image, camera="bench", mm_per_px=mm)
        start = time.perf_counter()
        result = decide(detection, frame, standard, thresholds, sample.part_id, reference)
        seconds.append(time.perf_counter() - start)
        exact = ev.exact_verdict(standard, sample)
        agree += result.verdict.value == exact
        wrong_pass += result.verdict.value == "PASS" and exact == "REJECT"
        false_reject += result.verdict.value == "REJECT" and exact == "PASS"
        found = [d.defect for d in result.decisions]
        if flags_part(detection, thresholds):
            pairs += ev.size_pairs(found, sample, mm)
        boxes = [
            t["bbox"]
            for t in sample.attributes.get("defects", [])
            if t["defect_class"] in STROKE_CLASSES and t.get("bbox")
        ]
        for d in found:
            if d.mask is not None and d.defect_class in STROKE_CLASSES:
                spans_two += sum(bool(d.mask[y0:y1, x0:x1].any()) for x0, y0, x1, y1 in boxes) >= 2
    cells = [
        f"gap {thresholds.join_gap_px:2d} px: agreement {agree / len(parts):.3f}",
        f"wrong PASS {wrong_pass}",
        f"false REJECT {false_reject}",
        f"strokes spanning two {spans_two}",
        f"decide p50 {1000 * float(np.median(seconds)):.2f} ms",
    ]
    for name in sorted(STROKE_CLASSES):
        sizes = [(p.length, p.true_length) for p in pairs if p.defect_class == name]
        widths = [(p.width, p.true_width) for p in pairs if p.defect_class == name]
        bias = median_signed_error([w for w in widths if w[1] is not None])
        if sizes:
            cells.append(
                f"{name} length error {median_abs_error(sizes):.3f} mm "
                f"(signed {median_signed_error(sizes):+.3f}, n {len(sizes)}) "
                f"width bias {'-' if bias is None else f'{bias:+.3f}'}"
            )
    return "  ".join(cells)


if __name__ == "__main__":
    main()
