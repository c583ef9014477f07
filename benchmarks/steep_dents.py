"""Is a steep "dent" a dent? Two measures of the regions the fused line calls a dent and
whose shading is too dark to read their depth (measure.SHADING_LINEAR_MAX).

- the odd part's share of the shading about the region's centre, ``|odd| / (|odd| +
  |even|)``: a dent's two slopes shade oppositely, a dark spot alike on both sides;
- the lit slope, the most the region brightens the surface (the relative shading's
  highest 3 x 3 mean, ``DentShading.lit``): a dent's far slope catches the light, a
  dark spot only darkens. The line reads a steep region lit under half the least of
  its limit samples' as 0 deep (``ShadingDepth.depth_mm``, ``UNLIT_SHARE``).

Printed for each set, the range on steep regions over a true dent and how many steep
regions on no dent lie under the least of those (and under half the least of the first
set's, the limit samples').

    python benchmarks/steep_dents.py --data runs/limit200-tile --also runs/val-tile \
        runs/heldout-tile --normality runs/normality/tile-560

(``runs/limit200-tile``: the demo's limit samples, ``inspection synth --n 200 --seed 4
--product tile --train-ratio 0 --defect-ratio 1 --class dent``.)

Results: benchmarks/README.md, "A steep dent's shading unclipped" and what follows it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from inspection.datasets import load_dataset
from inspection.measure import dent_shading, relative_shading
from inspection.standards.guard import UNLIT_SHARE

sys.path.insert(0, str(Path(__file__).parent))
from shading_depth import found_dents
from stroke_join import line_parser, load_line


def odd_share(image: np.ndarray, mask: np.ndarray) -> float:
    relative, region, hole = relative_shading(image, mask)
    ys, xs = np.nonzero(region)
    turned = np.float32([[-1, 0, 2 * xs.mean()], [0, -1, 2 * ys.mean()]])
    mirrored = cv2.warpAffine(relative, turned, relative.shape[::-1], flags=cv2.INTER_LINEAR)
    odd = np.abs(relative - mirrored)[hole].sum()
    even = np.abs(relative + mirrored)[hole].sum()
    return float(odd / (odd + even + 1e-12))


def main() -> None:
    parser = line_parser(__doc__)
    parser.add_argument("--also", type=Path, nargs="*", default=[], help="more sets")
    args = parser.parse_args()
    detector, metadata, first = load_line(args)
    least_lit = None
    for name, dataset in [(args.data, first)] + [(p, load_dataset(p)) for p in args.also]:
        steep = [
            (odd_share(d[0], d[1]), shading.lit, d[4])
            for d in found_dents(detector, metadata, dataset)
            if (shading := dent_shading(d[0], d[1])) is not None and not shading.linear
        ]
        dents = np.array([s[:2] for s in steep if s[2] is not None]).reshape(-1, 2)
        none = np.array([s[:2] for s in steep if s[2] is None]).reshape(-1, 2)
        least_lit = least_lit if least_lit is not None else float(dents[:, 1].min())
        print(f"{name}: {len(dents)} steep regions on a dent, {len(none)} on none")
        for column, measure in enumerate(("odd share", "lit slope")):
            low, high = dents[:, column].min(), dents[:, column].max()
            under = int((none[:, column] < low).sum())
            print(f"  {measure}: on dents {low:.3f}-{high:.3f}; on none, under that {under}")
        level = UNLIT_SHARE * least_lit
        unlit = [int((found[:, 1] < level).sum()) for found in (dents, none)]
        print(
            f"  lit slope under {UNLIT_SHARE} of the first set's least ({level:.4f}): "
            f"{unlit[1]} on none, {unlit[0]} on a dent"
        )


if __name__ == "__main__":
    main()
