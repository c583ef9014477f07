"""Edge precision: torch eager vs ONNX Runtime FP32 vs INT8 (vs FP16), side by side.

python benchmarks/edge_precision.py                        # models/default, 100 held-out parts
python benchmarks/edge_precision.py --n 60 --variants int8 int8-percentile
python benchmarks/edge_precision.py --threads 1 --no-torch

Held-out parts: the simulated bracket line at seed 7 (the seed the model card evaluates
on; no training run used it), with their tap-test audio. Calibration: other real parts,
the line at seed 1, good and defective. Every backend decides each part through the same
``Inspector`` (thresholds and standard alike), interleaved part by part in one process so
that the machine's noise hits all alike. Threads: torch and every ONNX Runtime session get
``--threads`` intra-op threads (BLAS one), on a shared 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

# one thread for BLAS (the log-mel and measurement): only the model's runtimes use more
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import torch

from inspection.capture.simulator import SimulatedLine
from inspection.config import standard_path
from inspection.export.onnx import export_onnx
from inspection.export.quantize import (
    QuantizeOptions,
    compare_detectors,
    convert_fp16,
    quantize_int8,
)
from inspection.export.runtime import OnnxDetector
from inspection.models import load_model
from inspection.models.detector import TorchDetector
from inspection.pipeline import thresholds_of
from inspection.standards import load_standard

HEADS = ("model.seg_head", "model.score_head")
FIRST_CONVS = ("model.image_encoder.tower.conv1", "model.audio_encoder.encoder.conv1")
DEFAULT = QuantizeOptions()  # uint8 activations, 7-bit weights, Conv / MatMul / Gemm
ALL_OPS = replace(DEFAULT, op_types=None)
VARIANTS = {
    "int8": DEFAULT,
    "int8-all-ops": ALL_OPS,
    "int8-all-ops-full-range": replace(ALL_OPS, reduce_range=False),
    "int8-all-ops-s8": replace(ALL_OPS, reduce_range=False, activations="int8"),
    "int8-s8": replace(DEFAULT, reduce_range=False, activations="int8"),
    "int8-per-tensor": replace(DEFAULT, per_channel=False),
    "int8-percentile": replace(DEFAULT, method="percentile"),
    "int8-entropy": replace(DEFAULT, method="entropy"),
    "int8-no-first-conv": replace(DEFAULT, exclude_modules=FIRST_CONVS),
    "int8-no-heads": replace(DEFAULT, exclude_modules=HEADS),
    "int8-tower": replace(DEFAULT, exclude_modules=(*HEADS, *FIRST_CONVS, "model.stem")),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/default")
    parser.add_argument("--n", type=int, default=100, help="held-out parts")
    parser.add_argument("--seed", type=int, default=7, help="held-out line seed")
    parser.add_argument("--calibration-n", type=int, default=48)
    parser.add_argument("--calibration-seed", type=int, default=1)
    parser.add_argument("--product", default="bracket")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=["int8"], choices=sorted(VARIANTS))
    parser.add_argument("--no-fp16", action="store_true")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--keep", type=Path, help="keep the graphs in this folder")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    standard = load_standard(standard_path(args.product))
    thresholds = thresholds_of(model.metadata)
    line = SimulatedLine(args.product, n=args.n, seed=args.seed)
    parts = [(obs, bool(part.defects)) for obs, part in line.parts()]
    calibration = [
        (obs, bool(part.defects))
        for obs, part in SimulatedLine(
            args.product, n=args.calibration_n, seed=args.calibration_seed
        ).parts()
    ]
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        fp32 = export_onnx(model, folder / "fp32.onnx", with_audio=True)
        graphs: dict[str, Path] = {}
        for name in args.variants:
            start = time.perf_counter()
            graphs[name] = quantize_int8(fp32, folder / f"{name}.onnx", calibration, VARIANTS[name])
            print(f"{name}: quantised in {time.perf_counter() - start:.0f} s", flush=True)
        if not args.no_fp16:
            graphs["fp16"] = convert_fp16(fp32, folder / "fp16.onnx")
        candidates = {name: OnnxDetector(g, threads=args.threads) for name, g in graphs.items()}
        if not args.no_torch:
            candidates = {"torch eager": TorchDetector(model), **candidates}
        reference = OnnxDetector(fp32, threads=args.threads)
        forward = {"ort fp32": time_forward(reference)}
        forward |= {name: time_forward(d) for name, d in candidates.items()}
        reports = compare_detectors(reference, candidates, parts, standard, thresholds=thresholds)
        sizes = {name: g.stat().st_size / 1e6 for name, g in graphs.items()}
        sizes["ort fp32"] = fp32.stat().st_size / 1e6
    first = next(iter(reports.values()))
    print(
        f"\n{first.parts} held-out {args.product} parts (seed {args.seed}, {first.defective} "
        f"defective), calibration {len(calibration)} parts (seed {args.calibration_seed}), "
        f"{args.threads} threads, model {model.config.name} ({model.model_version})"
    )
    fwd = {name: 1000 * float(np.median(spent)) for name, spent in forward.items()}
    print(
        "| backend | p50 ms | p99 ms | parts/s | ratio p50 | forward p50 ms | ratio forward "
        "| image AUROC | AUROC change | verdicts = FP32 | max score diff | MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| ort fp32 | {first.p50_ms_reference:.1f} | {first.p99_ms_reference:.1f} "
        f"| {first.parts_per_s_reference:.1f} | 1.00 | {fwd['ort fp32']:.1f} | 1.00 "
        f"| {first.auroc_reference:.4f} | | | | {sizes['ort fp32']:.1f} |"
    )
    for name, r in reports.items():
        size = f"{sizes[name]:.1f}" if name in sizes else ""
        print(
            f"| {name} | {r.p50_ms_candidate:.1f} | {r.p99_ms_candidate:.1f} "
            f"| {r.parts_per_s_candidate:.1f} | {r.p50_ms_candidate / r.p50_ms_reference:.2f} "
            f"| {fwd[name]:.1f} | {fwd[name] / fwd['ort fp32']:.2f} "
            f"| {r.auroc_candidate:.4f} | {r.auroc_change:+.4f} | {r.verdict_agreement:.3f} "
            f"| {r.max_score_diff:.4f} | {size} |"
        )
    for name, r in reports.items():
        if r.disagreements:
            print(f"{name}: verdicts changed: {', '.join(r.disagreements)}")
    print(f"numpy {np.__version__}, torch {torch.__version__}")


def time_forward(detector) -> list[float]:
    """Time every batch the detector runs (its forward pass; one per 256 px part with a
    1 s clip); returns the list the seconds go to. The rest of a verdict is tiling,
    log-mel, measurement and the rules, the same for every precision."""
    spent: list[float] = []
    run = detector.run

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return run(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - start)

    detector.run = timed
    return spent


if __name__ == "__main__":
    main()
