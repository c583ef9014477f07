"""A dent's depth read from its shading on a photograph (measure.dent_shading), where no
profiler measures it: the station's light and gain are fitted on the dents the line finds
in one synthetic set (``--fit``) and read on another's (``--data``), side by side for
two readings of the shading: the darkening (``1 - luminance / surface``) summed along
the light, and its odd part about the region's centre (the shipped one: a patch darker
all over cancels). Each is read on the region the maps found and on the true mask.
Printed: the error against the true depth of the dents the line found, the readings on
the wrong side of a 0.2 mm limit (tile's T31), and what the regions the maps called a
dent on no dent (a speck, a colour patch, a crack's end) read; each for every dent, and
for those gentle enough to read (measure.SHADING_LINEAR_MAX), as the line reads them.
Last, whether a steeper dent's reading (the line leaves it unread) is a lower bound on
its depth: how many of those read short and long, and what the steep regions on no dent
read. With ``--soft-clip``, whether undoing the station's response reads steep dents
too: the darkening taken as a soft clip of level ``delta`` (``delta * atanh(darkening /
delta)``, the linear reading as ``delta`` grows), fitted and read on the dents up to a
steeper gate each time.

    python benchmarks/shading_depth.py --fit runs/val-tile --data runs/heldout-tile \
        --normality runs/normality/tile-560

Results: benchmarks/README.md, section "Dent depth from shading".
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from inspection import evaluate as ev
from inspection.datasets import load_dataset
from inspection.measure import (
    SHADING_LINEAR_MAX,
    DentShading,
    dent_shading,
    relative_shading,
    shading_of,
)
from inspection.pipeline import DEPTH_CLASSES, part_defects, thresholds_of
from inspection.standards.guard import fit_shading_depth

sys.path.insert(0, str(Path(__file__).parent))
from stroke_join import line_parser, load_line

LIMIT_MM = 0.2  # tile's T31


def darkening_alone(image: np.ndarray, mask: np.ndarray) -> DentShading | None:
    """The shipped reading's light, window and gate, with the darkening itself summed (a
    patch darker all over reads as deep as a dent as dark)."""
    odd, shaded = dent_shading(image, mask), relative_shading(image, mask)
    if odd is None or shaded is None:
        return None
    darkening = np.clip(-shaded[0], 0.0, None).astype(np.float32)
    return DentShading(darkening, odd.toward_light, odd.deepest, odd.lit)


READINGS = {"darkening": darkening_alone, "odd part": dent_shading}
SOFT_CLIP_MOST = 0.97  # of delta: nearer the clip, atanh reads the texture's noise as slope


def unclipped(delta: float):
    """The shipped reading (odd part) of the darkening unclipped at level ``delta``; the
    gate (``deepest``) stays the raw darkening's."""

    def read(image: np.ndarray, mask: np.ndarray) -> DentShading | None:
        shaded = relative_shading(image, mask)
        if shaded is None:
            return None
        relative, region, hole = shaded
        share = np.clip(-relative / delta, 0.0, SOFT_CLIP_MOST)
        linear = np.where(relative < 0, -delta * np.arctanh(share), relative)
        raw = shading_of(relative, region, hole)
        return replace(shading_of(linear.astype(np.float32), region, hole), deepest=raw.deepest)

    return read


def found_dents(detector, metadata, dataset) -> list[tuple]:
    """``(image, region, true mask or None, mm_per_px, true depth or None)`` of every
    region the line calls a dent on ``dataset`` (matched to the true dent its mask covers
    most, as ``evaluate`` matches them)."""
    thresholds = thresholds_of(metadata)
    dents = []
    for sample in tqdm(dataset.samples, desc="parts", unit="part", mininterval=2.0):
        image, audio, truth_mask = ev.read_sample(sample)
        mm = dataset.scale_of(sample)
        reference = dataset.reference_of(sample)
        found = part_defects(detector.detect(image, audio), thresholds, mm, image, reference)
        matched = {id(d): t for d, t in ev.matched_defects(found, sample)}
        boxes = {
            tuple(t["bbox"]): t
            for t in sample.attributes.get("defects", []) or []
            if t.get("defect_class") in DEPTH_CLASSES and t.get("bbox")
        }
        for defect in found:
            if defect.defect_class not in DEPTH_CLASSES or defect.mask is None:
                continue
            truth = matched.get(id(defect))
            depth = None if truth is None else truth.get("depth_mm")
            true_mask = None
            if depth is not None and truth_mask is not None:
                box = next(b for b, t in boxes.items() if t["attributes"] is truth)
                true_mask = np.zeros(truth_mask.shape, bool)
                x0, y0, x1, y1 = box
                true_mask[y0:y1, x0:x1] = truth_mask[y0:y1, x0:x1] > 0
            dents.append((image, defect.mask, true_mask, mm, depth))
    return dents


def main() -> None:
    parser = line_parser(__doc__)
    parser.add_argument("--fit", type=Path, required=True, help="the set the light is fitted on")
    parser.add_argument("--soft-clip", default="", help="levels to unclip at, e.g. 0.8,0.6")
    args = parser.parse_args()
    detector, metadata, dataset = load_line(args)
    fit_on = found_dents(detector, metadata, load_dataset(args.fit))
    read_on = found_dents(detector, metadata, dataset)
    matched = sum(d[4] is not None for d in read_on)
    print(
        f"fitted on {args.fit}, read on {args.data}: {len(read_on)} regions called a dent, "
        f"{matched} of them on a dent of known depth"
    )
    for name, read in READINGS.items():
        for where in ("region", "true mask"):
            column = 1 if where == "region" else 2
            for gate in (None, SHADING_LINEAR_MAX):
                _print_row(f"{name}, {where}", fit_on, read_on, read, column, gate)
    _print_steep(fit_on, read_on)
    for delta in (float(d) for d in args.soft_clip.split(",") if d):
        for gate in (0.4, 0.5, 0.58):
            _print_row(f"unclipped {delta}", fit_on, read_on, unclipped(delta), 1, gate)


def _print_row(name: str, fit_on, read_on, read, column: int, gate: float | None) -> None:
    """Fitted on ``fit_on``'s dents (those darkening the surface by at most ``gate``, as
    the line reads them at SHADING_LINEAR_MAX; every one at None), the readings of
    ``read_on``'s."""

    def gated(shading: DentShading | None) -> bool:
        return shading is not None and (gate is None or shading.deepest <= gate)

    fitted = fit_shading_depth(
        (shading, d[3], d[4])
        for d in fit_on
        if d[4] is not None and gated(shading := read(d[0], d[column]))
    )
    depths = []  # (reading, true depth or None)
    for d in read_on:
        shading = None if d[column] is None else read(d[0], d[column])
        if gated(shading):
            depths.append((fitted.depth_mm(shading, d[3]), d[4]))
    known = np.array([(r, t) for r, t in depths if t is not None])
    error = np.abs(known[:, 0] - known[:, 1])
    wrong = int(((known[:, 0] > LIMIT_MM) != (known[:, 1] > LIMIT_MM)).sum())
    short = float(np.max((known[:, 1] - known[:, 0]) / known[:, 1]))
    none = [r for r, t in depths if t is None]
    print(
        f"  {name:20s} {'all' if gate is None else f'<= {gate}':7s} "
        f"light {fitted.azimuth_deg:7.1f}°  "
        f"gain {fitted.gain:.3f}  |error| median {np.median(error):.3f} mm, "
        f"90th {np.quantile(error, 0.9):.3f}, relative median "
        f"{np.median(error / known[:, 1]):.2f}, most short {short:.0%}; "
        f"{wrong} of {len(known)} on the wrong side of {LIMIT_MM} mm"
        + (
            f"; on no dent ({len(none)}): median {np.median(none):.3f}, "
            f"{sum(r > LIMIT_MM for r in none)} over {LIMIT_MM} mm"
            if column == 1 and none
            else ""
        )
    )


def _print_steep(fit_on, read_on) -> None:
    """The shipped reading (odd part, region, fitted on the gentle dents) of the dents
    too steep for the line to read: short of their depth (a lower bound) or not."""
    fitted = fit_shading_depth(
        (shading, d[3], d[4])
        for d in fit_on
        if d[4] is not None and (shading := dent_shading(d[0], d[1])) is not None and shading.linear
    )
    steep = [
        (fitted.depth_mm(shading, d[3]), d[4])
        for d in read_on
        if (shading := dent_shading(d[0], d[1])) is not None and not shading.linear
    ]
    known = [(r, t) for r, t in steep if t is not None]
    long = sorted((round(r, 3), round(t, 3)) for r, t in known if r > t)
    none = [r for r, t in steep if t is None]
    print(
        f"  steep (unread by the line): {len(known)} on a dent, {len(known) - len(long)} read "
        f"short, {len(long)} long (read, true mm: {long}); {len(none)} on no dent, "
        f"{sum(r > LIMIT_MM for r in none)} over {LIMIT_MM} mm "
        f"({', '.join(f'{r:.3f}' for r in sorted(none, reverse=True)[:5])} ...)"
    )


if __name__ == "__main__":
    main()
