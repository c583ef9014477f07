"""Feature normality methods side by side, through the product's own commands' code.

python benchmarks/normality_methods.py --data /work/shared/data/magnetic-tile
    [--methods padim,patchcore] [--heads-minutes 0] [--max-minutes 5] [--out runs/bench-normality]

For each method: fit on ``train/good`` (:func:`inspection.train.trainer.train`, exactly what
``inspection train --normal-only --method M --max-minutes 5`` runs), evaluate on ``test``
(:func:`inspection.evaluate.evaluate`: image AUROC, pixel AUROC, per-class image AUROC),
export to ONNX with the parity check, and time the exported graph under ONNX Runtime (one
thread, p50 over the first 50 test images, full-image detection including tiling and
stitching). ``--heads-minutes N`` adds today's random-weight heads training for N minutes
as the control row. All rows run in one process, one after the other, on one torch thread.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch


def run(method: str, data: Path, out: Path, minutes: float, heads_minutes: float) -> dict:
    from inspection.datasets import load_dataset
    from inspection.evaluate import evaluate
    from inspection.export.onnx import check_parity, export_onnx
    from inspection.export.runtime import OnnxDetector
    from inspection.io import read_image
    from inspection.models import load_model
    from inspection.models.detector import TorchDetector
    from inspection.pipeline import thresholds_of
    from inspection.train.trainer import TrainOptions, train

    model_dir = out / method
    is_heads = method == "heads"
    options = TrainOptions(
        data=data,
        out=model_dir,
        normal_only=True,
        method=method,
        config="small" if is_heads else None,
        from_scratch=is_heads,
        max_minutes=heads_minutes if is_heads else minutes,
        steps=100_000 if is_heads else 3000,
    )
    t0 = time.perf_counter()
    train(options)
    fit_s = time.perf_counter() - t0
    torch.set_num_threads(1)
    model = load_model(model_dir)
    metrics = evaluate(
        TorchDetector(model), thresholds_of(model.metadata), data, out / f"{method}-eval"
    )
    graph = export_onnx(model, out / f"{method}.onnx", with_audio=False)
    parity = check_parity(model, graph)
    detector = OnnxDetector(graph)
    samples = [s for s in load_dataset(data).samples if s.split == "test"][:50]
    times = []
    for s in samples:
        image = read_image(s.image)
        start = time.perf_counter()
        detector.detect(image)
        times.append(time.perf_counter() - start)
    per_class = {c: v.get("auroc") for c, v in metrics["per_class_by_score"].items()}
    return {
        "method": method,
        "image_auroc": metrics["image_auroc"],
        "pixel_auroc": metrics["pixel_auroc"],
        "per_class": per_class,
        "fit_s": fit_s,
        "onnx_p50_ms": 1000 * float(np.median(times)),
        "onnx_mb": graph.stat().st_size / 2**20,
        "parity": parity.worst,
        "load": os.getloadavg()[0],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data/magnetic-tile"))
    ap.add_argument("--methods", default="padim,patchcore")
    ap.add_argument("--max-minutes", type=float, default=5.0)
    ap.add_argument("--heads-minutes", type=float, default=0.0, help="0: no heads row")
    ap.add_argument("--out", type=Path, default=Path("runs/bench-normality"))
    args = ap.parse_args()
    methods = args.methods.split(",") + (["heads"] if args.heads_minutes else [])
    rows = []
    for method in methods:
        row = run(method, args.data, args.out, args.max_minutes, args.heads_minutes)
        print(row, flush=True)
        rows.append(row)
    print(
        "\n| method | image AUROC | pixel AUROC | per-class image AUROC | fit s "
        "| ONNX p50 ms | ONNX MB | parity | load |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        per = ", ".join(f"{c} {a:.3f}" for c, a in r["per_class"].items() if a is not None)
        print(
            f"| {r['method']} | {r['image_auroc']:.3f} | {r['pixel_auroc']:.3f} | {per} "
            f"| {r['fit_s']:.0f} | {r['onnx_p50_ms']:.0f} | {r['onnx_mb']:.1f} "
            f"| {r['parity']:.1e} | {r['load']:.1f} |"
        )


if __name__ == "__main__":
    main()
