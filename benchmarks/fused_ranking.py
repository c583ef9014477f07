"""The fused part score under the threshold: does ranking the parts neither model flags
by a mix of the two models' scores, instead of their max, separate defective parts from
good ones better (image AUROC), with every verdict unchanged?

The fused part logit is the max of the two models' part logits, each shifted by the
logit of its own image threshold (``fusion.fuse``), so a part is flagged where either
model flags it. Any mix of the two that stays under 0 where both are under 0 flags
exactly the same parts and moves only the ranking under the threshold (what image
AUROC and a review band ``--review-from`` read). Each model is evaluated alone on the
same set, the two scores are combined part by part, and image AUROC is printed for
each mix (parts either model flags keep the max).

    inspection evaluate --model models/default --data runs/val-P --out runs/h-P-val --no-reports
    inspection evaluate --model runs/normality/P-560 --data runs/val-P --out runs/n-P-val \
        --no-reports
    python benchmarks/fused_ranking.py --heads runs/h-P-val --normality-eval runs/n-P-val \
        --normality runs/normality/P-560

Results: benchmarks/README.md, "The fused part score under the threshold".
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np

from inspection.metrics import image_auroc

MIXES = {
    "max (shipped)": lambda zh, zn: np.maximum(zh, zn),
    "heads": lambda zh, zn: zh,
    "normality": lambda zh, zn: zn,
    "mean": lambda zh, zn: (zh + zn) / 2,
    "heads + normality / 2": lambda zh, zn: zh + zn / 2,
    "normality + heads / 2": lambda zh, zn: zn + zh / 2,
}


def logit(p: float) -> float:
    p = min(max(p, 1e-7), 1 - 1e-7)
    return math.log(p / (1 - p))


def aligned_logits(eval_dir: Path, threshold: float) -> dict[str, tuple[float, bool]]:
    """Each part's score as a logit over its model's image threshold, and whether it is
    defective, keyed by image path."""
    rows = csv.DictReader((eval_dir / "scores.csv").open(encoding="utf-8"))
    return {
        r["path"]: (logit(float(r["score"])) - logit(threshold), r["class"] != "good") for r in rows
    }


def image_threshold(model_dir: Path) -> float:
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    return float(config["extra"]["thresholds"]["image"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--heads", type=Path, required=True, help="the heads' evaluation")
    parser.add_argument("--normality-eval", type=Path, required=True)
    parser.add_argument("--model", type=Path, default=Path("models/default"))
    parser.add_argument("--normality", type=Path, required=True, help="its model folder")
    args = parser.parse_args()
    heads = aligned_logits(args.heads, image_threshold(args.model))
    normality = aligned_logits(args.normality_eval, image_threshold(args.normality))
    paths = sorted(heads.keys() & normality.keys())
    zh = np.array([heads[p][0] for p in paths])
    zn = np.array([normality[p][0] for p in paths])
    defective = np.array([heads[p][1] for p in paths])
    flagged = np.maximum(zh, zn) >= 0
    cells = []
    for name, mix in MIXES.items():
        # Under 0 wherever both are: the same parts flagged, only the ranking under moves.
        score = np.where(flagged, np.maximum(zh, zn), np.minimum(mix(zh, zn), -1e-6))
        cells.append(f"{name} {image_auroc(defective, score):.4f}")
    said = f"{args.heads.name}: {len(paths)} parts, {int(flagged.sum())} flagged; "
    print(said + ", ".join(cells))


if __name__ == "__main__":
    main()
