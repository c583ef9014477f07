"""A training manifest weighted to the defects the shipped default misses (issue 23).

Held out, the fused line's wrong PASSes are thin scratches along bracket's brushing
(0.24-0.35 mm wide), tile's shallow dents and panel's small specks. This keeps every
part of a synthetic set that holds such a defect, and thins the rest (defective parts to
35 %, good parts to 50 %), so that a fine-tune sees the hard cases about twice as often
as `inspection synth` makes them. The manifest names the sets' files by absolute path.

    inspection synth --out runs/hard-bracket --n 3000 --seed 21 --product bracket \
        --train-ratio 1.0 --train-defect-ratio 0.6   # likewise tile (seed 22), panel (23)
    python benchmarks/hard_cases.py runs/hard-bracket runs/hard-tile runs/hard-panel \
        --out runs/hard
    inspection train --data runs/hard --out runs/ft-hard --init models/default --lr 1e-4 \
        --seed 19 --max-minutes 68 --steps 100000

Results: benchmarks/README.md, section "Fine-tuned on the hard cases".
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

# What a product's held-out wrong PASSes were: the defects worth seeing more often.
HARD = {
    "bracket": lambda d: d["defect_class"] == "scratch" and d["attributes"]["width_mm"] <= 0.45,
    "tile": lambda d: d["defect_class"] in ("dent", "scratch"),
    "panel": lambda d: d["defect_class"] == "contamination" and d["attributes"]["area_mm2"] <= 1.5,
}
KEEP_GOOD, KEEP_OTHER = 0.5, 0.35


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sets", type=Path, nargs="+", help="inspection synth outputs")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=False)
    counts: Counter = Counter()
    with (args.out / "manifest.jsonl").open("w", encoding="utf-8") as manifest:
        for folder in args.sets:
            root = folder.resolve()
            for line in (root / "manifest.jsonl").open(encoding="utf-8"):
                part = json.loads(line)
                hard = HARD.get(part["product"], lambda d: False)
                is_hard = any(hard(d) for d in part["defects"])
                keep = KEEP_OTHER if part["defects"] else KEEP_GOOD
                if not is_hard and rng.random() >= keep:
                    continue
                for key in ("image", "mask", "audio"):
                    if part.get(key):
                        part[key] = str(root / part[key])
                counts[(part["product"], "hard" if is_hard else part["label"])] += 1
                manifest.write(json.dumps(part) + "\n")
    for (product, kind), n in sorted(counts.items()):
        print(f"{product:8s} {kind:16s} {n}")
    print(f"{sum(counts.values())} parts in {args.out / 'manifest.jsonl'}")


if __name__ == "__main__":
    main()
