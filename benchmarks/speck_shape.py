"""Specks the maps call a stroke: a region named a scratch or a crack that is a few
pixels across and less than twice as long as it is wide is judged as a speck of dirt
(pipeline.SPECK_MAX_PX). Every part of a synthetic set is detected once (the shipped
default, fused with the product's normality model as the demo runs it) and decided with
the rule off (0) and at each ``--sizes`` value.

    python benchmarks/speck_shape.py --data runs/val-tile --normality runs/normality/tile-560

Results: benchmarks/README.md, section "Specks the maps call a stroke".
"""

from __future__ import annotations

import sys
from pathlib import Path

from inspection import evaluate as ev
from inspection import pipeline
from inspection.pipeline import thresholds_of

sys.path.insert(0, str(Path(__file__).parent))
from stroke_join import detected_parts, line_parser, load_line, measured_row


def main() -> None:
    parser = line_parser(__doc__)
    parser.add_argument("--sizes", default="0,4,5,6", help="SPECK_MAX_PX values (0: off)")
    args = parser.parse_args()
    detector, metadata, dataset = load_line(args)
    thresholds, standard = thresholds_of(metadata), ev.dataset_standard(dataset)
    parts = detected_parts(detector, dataset)
    shipped = pipeline.SPECK_MAX_PX
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            pipeline.SPECK_MAX_PX = size
            row = measured_row(parts, dataset, standard, thresholds)
            print(f"{args.data} speck up to {size} px: {row}", flush=True)
    finally:
        pipeline.SPECK_MAX_PX = shipped


if __name__ == "__main__":
    main()
