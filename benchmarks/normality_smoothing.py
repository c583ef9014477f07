"""How much a normality model's map smoothing moves image and pixel AUROC: one fitted
model (``inspection train --normal-only``) evaluated through the product's ``evaluate``
with its Gaussian (``config.smooth_sigma``, px at the model's input) set to each sigma in
turn. Only the smoothing changes between rows: features, statistics and the map's logit
(whose shift and scale were set at the fitted sigma, and which no AUROC depends on) stay.

    inspection train --data ../shared/data/magnetic-tile --out runs/mt-padim --normal-only \
        --max-minutes 5
    python benchmarks/normality_smoothing.py --model runs/mt-padim \
        --data ../shared/data/magnetic-tile --sigmas 0,4,8,16

Results: benchmarks/README.md, section "A crack only where the tap rings wrong, and the
normality map's smoothing".
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from inspection.evaluate import evaluate
from inspection.models import load_model
from inspection.models.detector import TorchDetector
from inspection.models.normality import gaussian_kernel
from inspection.pipeline import thresholds_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--sigmas", default="0,4,8,16", help="px at the model's input")
    parser.add_argument("--out", type=Path, default=Path("runs/normality-smoothing"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.model)
    print(f"{args.model}: fitted at sigma {model.config.smooth_sigma:g}")
    for sigma in (float(s) for s in args.sigmas.split(",")):
        model.smoothing = gaussian_kernel(sigma)
        detector = TorchDetector(model)
        out = args.out / f"sigma-{sigma:g}"
        metrics = evaluate(detector, thresholds_of(detector.metadata), args.data, out)
        per_class = metrics["per_class_by_score"]
        classes = ", ".join(f"{c} {v['auroc']:.3f}" for c, v in sorted(per_class.items()))
        print(
            f"sigma {sigma:4g}: image AUROC {metrics['image_auroc']:.4f}, "
            f"pixel AUROC {metrics['pixel_auroc']:.4f} ({classes})",
            flush=True,
        )


if __name__ == "__main__":
    main()
