"""Thread contention on the edge path: ONNX Runtime spinning x BLAS threads.

python benchmarks/edge_threads.py                     # models/default, 40 bracket parts
python benchmarks/edge_threads.py --onnx edge.onnx    # an already exported graph

Runs the torch-free edge verdict (ONNX Runtime + numpy + OpenCV, as on the edge box) on
the same parts under four settings, interleaved in one process so the machine's noise
hits them alike: ONNX Runtime's intra-op threads spinning between runs or not, and
numpy's BLAS limited to 1 thread or left at its default. A gap between the BLAS rows
means some numpy call on the path wakes BLAS worker threads that then compete with
ONNX Runtime's for the cores.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from inspection.capture.simulator import SimulatedLine
from inspection.config import standard_path
from inspection.export.runtime import OnnxDetector
from inspection.pipeline import Inspector, thresholds_of
from inspection.standards import load_standard


def export_in_subprocess(model: str, out: Path) -> Path:
    """Export with `inspection export` in another process: this one must stay torch-free,
    as the box is."""
    command = ["-m", "inspection.cli", "export", "--model", model, "--out", str(out)]
    subprocess.run([sys.executable, *command], check=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/default")
    parser.add_argument("--onnx", type=Path, help="exported edge graph (default: export --model)")
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--product", default="bracket")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = args.onnx or export_in_subprocess(args.model, Path(tmp) / "edge.onnx")
        standard = load_standard(standard_path(args.product))
        inspectors = {}
        for spin in (True, False):
            detector = OnnxDetector(path, threads=args.threads, spin=spin)
            inspectors[spin] = Inspector(detector, standard, thresholds_of(detector.metadata))
        parts = list(SimulatedLine(args.product, n=args.n, seed=99))
        assert "torch" not in sys.modules, "the edge path must not import torch"
        for inspector in inspectors.values():  # warm up
            inspector.inspect(parts[0])
        times: dict[tuple[bool, int | None], list[float]] = {}
        for observation in parts:
            for blas in (None, 1):
                for spin, inspector in inspectors.items():
                    with threadpool_limits(blas, user_api="blas"):
                        start = time.perf_counter()
                        inspector.inspect(observation)
                    elapsed = (time.perf_counter() - start) * 1000
                    times.setdefault((spin, blas), []).append(elapsed)
    print(f"{args.n} {args.product} parts, {args.threads} ONNX Runtime threads, torch-free")
    print(f"{'ORT spinning':<13} {'BLAS threads':<13} {'p50 ms':>8} {'p95 ms':>8} {'ratio':>6}")
    base = np.median(times[(True, None)])
    for (spin, blas), values in times.items():
        p50, p95 = np.median(values), np.percentile(values, 95)
        label = "default" if blas is None else str(blas)
        print(f"{'on' if spin else 'off':<13} {label:<13} {p50:8.1f} {p95:8.1f} {p50 / base:6.2f}")


if __name__ == "__main__":
    main()
