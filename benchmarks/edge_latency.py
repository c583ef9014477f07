"""Edge verdict latency: detect + measure + rules per part, torch vs ONNX Runtime.

python benchmarks/edge_latency.py                      # models/default, 60 bracket parts
python benchmarks/edge_latency.py --model none --config small --n 40
python benchmarks/edge_latency.py --size 1024 --max-side 512 --n 20   # large frames
python benchmarks/edge_latency.py --profiler --product tile   # + a 3D profiler's height maps

With ``--profiler`` the parts carry height maps, and ONNX Runtime also runs them with the
dents measured on the map (``ort + height map``) and with the map searched as well
(``ort + search``, ``--profiler-dents``); torch and ``onnxruntime`` see the photographs
alone.

Both detectors run the same parts in one process, interleaved, so the machine's noise
hits both alike; the ratio is the figure to trust.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from inspection.capture.simulator import SimulatedLine
from inspection.config import standard_path
from inspection.export.onnx import export_onnx
from inspection.export.runtime import OnnxDetector
from inspection.models import create_model, load_model
from inspection.models.detector import TorchDetector
from inspection.models.preprocess import MAX_SIDE
from inspection.pipeline import Inspector, thresholds_of, with_profiler_dents
from inspection.standards import load_standard


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/default", help="model dir, or 'none'")
    parser.add_argument("--config", default="small", help="config when --model none")
    parser.add_argument("--n", type=int, default=60)
    parser.add_argument("--product", default="bracket")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=256, help="frame side in px")
    parser.add_argument(
        "--max-side", type=int, help="also run ONNX Runtime with frames scaled to this side"
    )
    parser.add_argument("--profiler", action="store_true", help="parts with height maps")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model = create_model(args.config) if args.model == "none" else load_model(args.model)
    standard = load_standard(standard_path(args.product))
    thresholds = thresholds_of(model.metadata)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(model, Path(tmp) / "edge.onnx", with_audio=True)
        inspectors = {
            "torch": Inspector(TorchDetector(model), standard, thresholds),
            "onnxruntime": Inspector(
                OnnxDetector(onnx_path, threads=args.threads), standard, thresholds
            ),
        }
        if args.max_side:
            scaled = OnnxDetector(onnx_path, threads=args.threads)
            scaled.metadata = {**scaled.metadata, MAX_SIDE: args.max_side}
            inspectors[f"ort max {args.max_side}"] = Inspector(scaled, standard, thresholds)
        with_maps = set()
        if args.profiler:
            # One ONNX Runtime session for the three: separate sessions' idle threads
            # spin on the 2 cores after each run and would slow whichever runs next.
            detector = inspectors["onnxruntime"].detector
            for name, search in (("ort + height map", False), ("ort + search", True)):
                searched = with_profiler_dents(thresholds, search)
                inspectors[name] = Inspector(detector, standard, searched)
                with_maps.add(name)
        line = SimulatedLine(
            args.product, n=args.n, seed=99, size=args.size, profiler=args.profiler
        )
        parts = [(obs, _photographs(obs)) for obs, _ in line.parts()]
        for name, inspector in inspectors.items():  # warm up
            inspector.inspect(parts[0][name not in with_maps])
        times: dict[str, list[float]] = {name: [] for name in inspectors}
        forward: dict[str, list[float]] = {name: [] for name in inspectors}
        timers: dict[int, list[float]] = {}  # one per detector, however many share it
        spent: dict[str, list[float]] = {}
        for name, inspector in inspectors.items():
            key = id(inspector.detector)
            if key not in timers:
                timers[key] = time_forward(inspector.detector)
            spent[name] = timers[key]
        for observations in parts:
            for name, inspector in inspectors.items():
                observation = observations[name not in with_maps]
                spent[name].clear()
                start = time.perf_counter()
                inspector.inspect(observation)
                times[name].append((time.perf_counter() - start) * 1000)
                forward[name].append(sum(spent[name]) * 1000)
    print(
        f"{args.n} {args.product} parts of {args.size} px, model {model.config.name} "
        f"({model.num_params() / 1e6:.2f} M params), {args.threads} threads"
    )
    print(
        f"{'backend':<16} {'p50 ms':>8} {'p95 ms':>8} {'ratio p50':>10} "
        f"{'forward p50':>12} {'rest p50':>9}"
    )
    base = np.median(times["torch"])
    for name, values in times.items():
        p50, p95 = np.median(values), np.percentile(values, 95)
        rest = np.median(np.subtract(values, forward[name]))
        print(
            f"{name:<16} {p50:8.1f} {p95:8.1f} {p50 / base:10.2f} "
            f"{np.median(forward[name]):12.1f} {rest:9.1f}"
        )


def _photographs(observation):
    """The part without its height maps: what a station without a profiler sees."""
    return replace(
        observation, frames=tuple(replace(f, height_map=None) for f in observation.frames)
    )


def time_forward(detector) -> list[float]:
    """Time every batch the detector runs (the model's forward pass: tiles and log-mel
    in, logits out); returns the list the seconds are appended to. The rest of a
    verdict is tiling, stitching, measurement and the rules."""
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
