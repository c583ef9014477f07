"""Faint colour patches: what the search finds on good parts and defective ones, and what
it costs a frame (issue 23).

The station's rule is read from a fitted normality model (``inspection demo --product P
--n 1`` fits one: ``runs/normality/P-560``), as the line reads it. For each set (a folder
from ``inspection synth``), every part's frame is searched with no region of the map set
aside (:func:`inspection.patches.colour_patches`), as on a part whose map lit nothing:
the good parts' highest box contrast and those with a patch (the false finds the search
could add), per label the parts with one, and each colour patch's truth beside what the
search reads. Then the cost of a frame, at the set's size and enlarged to 2048 px (one
thread; median of ``--repeat``).

    python benchmarks/colour_patches.py --normality runs/s53/normality/panel-560 \
        runs/s52/val-panel runs/s52/heldout-panel
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
from grain_lines import cost
from tqdm import tqdm

from inspection.io import read_image
from inspection.models.checkpoint import read_checkpoint
from inspection.patches import PATCH_KEY, PatchRule, colour_patches, highest_contrast


def _parts(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]


def station_rule(normality: Path) -> PatchRule:
    rule = PatchRule.from_dict(read_checkpoint(normality).extra.get(PATCH_KEY))
    if rule is None:
        raise SystemExit(f"{normality} records no colour patches' rule: fit it again")
    return rule


def survey(folder: Path, rule: PatchRule) -> None:
    found_by_label: dict[str, list[int]] = defaultdict(list)
    good_highest, colour_rows = [], []
    for part in tqdm(_parts(folder), desc=folder.name, leave=False):
        image = read_image(folder / part["image"])
        patches = colour_patches(image, rule, part["mm_per_px"])
        found_by_label[part["label"]].append(len(patches))
        highest = highest_contrast(image) or 0.0
        if part["label"] == "good":
            good_highest.append(highest)
        truths = [d for d in part["defects"] if d["defect_class"] == "color_deviation"]
        if truths:
            true_e = max(d["attributes"]["delta_e"] for d in truths)
            colour_rows.append((part["index"], true_e, highest))
    print(
        f"\n{folder}: level {rule.level:.2f} (good max {rule.good_max:.2f} on "
        f"{rule.good_parts}); its good parts' highest box: median "
        f"{np.median(good_highest):.2f}, max {max(good_highest):.2f}"
    )
    print("| label | parts | with a patch |")
    print("|---|---|---|")
    for label, counts in sorted(found_by_label.items()):
        print(f"| {label} | {len(counts)} | {sum(c > 0 for c in counts)} |")
    faint = [row for row in colour_rows if row[2] < rule.level]
    print(
        f"colour patches under the level (not found whatever the map): {len(faint)} of "
        f"{len(colour_rows)}; their truth ΔE: "
        + ", ".join(f"{index:06d} {true_e:.2f}" for index, true_e, _ in sorted(faint))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="+", type=Path)
    parser.add_argument("--normality", type=Path, required=True)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    rule = station_rule(args.normality)
    for folder in args.sets:
        survey(folder, rule)
    cost(args.sets[0], args.repeat, lambda frame, mm: colour_patches(frame, rule, mm))


if __name__ == "__main__":
    main()
