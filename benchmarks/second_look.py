"""A second look under the part score: the heads' regions of a part its score passes,
measured and judged when their peak reaches the product's level (fusion.second_look_level,
set on 200 fresh good parts as the demo sets it). Each part of a synthetic set is detected
once (the shipped default fused with the product's normality model), then decided without
and with the second look.

Per setting: verdict agreement with the standard on the exact attributes, rejectable
parts passed (by true class), parts the standard passes rejected, good parts sent to
REVIEW, and the median time of `pipeline.decide` per part.

    inspection synth --out runs/val-panel --n 300 --seed 11 --product panel --train-ratio 0
    python benchmarks/second_look.py --data runs/val-panel --normality runs/normality/panel-560

Results: benchmarks/README.md, section "A second look under the part score".
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace

import numpy as np
from rich.console import Console
from stroke_join import detected_parts, line_parser, load_line

from inspection import evaluate as ev
from inspection.demo import product_second_look
from inspection.models.fusion import FusedDetector
from inspection.pipeline import decide, thresholds_of
from inspection.types import Frame


def main() -> None:
    args = line_parser(__doc__).parse_args()
    detector, metadata, dataset = load_line(args)
    product = str(dataset.metadata["product"])
    if metadata["fusion"]["second_look"] is None:  # not set yet for these heads: as the demo
        level = product_second_look(detector.heads, product, args.normality, Console())
        detector = FusedDetector(detector.heads, detector.normality, second_look=level)
        metadata = detector.metadata
    level = metadata["fusion"]["second_look"]
    standard = ev.dataset_standard(dataset)
    parts = detected_parts(detector, dataset)
    with_look = thresholds_of(metadata)
    print(f"{product}: second-look level {level:.2f} (logit over the heads' pixel threshold)")
    verdict_row(parts, dataset, standard, with_look)  # warm-up: not timed
    for name, thresholds in (("without", replace(with_look, region=None)), ("with", with_look)):
        print(f"{name:8s}", verdict_row(parts, dataset, standard, thresholds), flush=True)


def verdict_row(parts, dataset, standard, thresholds) -> str:
    counts, passed, seconds = Counter(), Counter(), []
    for sample, image, detection in parts:
        reference = dataset.reference_of(sample)
        frame = Frame(image=image, camera="bench", mm_per_px=dataset.scale_of(sample))
        start = time.perf_counter()
        result = decide(detection, frame, standard, thresholds, sample.part_id, reference)
        seconds.append(time.perf_counter() - start)
        exact, verdict = ev.exact_verdict(standard, sample), result.verdict.value
        counts["agree"] += verdict == exact
        counts["false REJECT"] += verdict == "REJECT" and exact == "PASS"
        counts["good REVIEW"] += verdict == "REVIEW" and not sample.attributes.get("defects")
        counts["PASS REVIEW"] += verdict == "REVIEW" and exact == "PASS"
        counts["REJECT REVIEW"] += verdict == "REVIEW" and exact == "REJECT"
        if verdict == "PASS" and exact == "REJECT":
            counts["wrong PASS"] += 1
            passed.update({d["defect_class"] for d in sample.attributes.get("defects", [])})
    classes = ", ".join(f"{name} {n}" for name, n in sorted(passed.items()))
    return "  ".join(
        [
            f"agreement {counts['agree'] / len(parts):.3f}",
            f"wrong PASS {counts['wrong PASS']} ({classes or 'none'})",
            f"false REJECT {counts['false REJECT']}",
            f"good parts to REVIEW {counts['good REVIEW']}",
            f"parts the standard passes to REVIEW {counts['PASS REVIEW']}",
            f"parts it rejects to REVIEW {counts['REJECT REVIEW']}",
            f"decide p50 {1000 * float(np.median(seconds)):.2f} ms",
        ]
    )


if __name__ == "__main__":
    main()
