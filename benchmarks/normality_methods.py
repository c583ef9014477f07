"""Feature normality methods side by side, through the product's own commands' code.

python benchmarks/normality_methods.py --data /work/shared/data/magnetic-tile
    [--methods padim,patchcore,heads,heads-lite0,combined,combined-lite0]
    [--heads-minutes 0] [--max-minutes 5]
    [--out runs/bench-normality]

For each method: fit on ``train/good`` (:func:`inspection.train.trainer.train`, exactly what
``inspection train --normal-only --method M --max-minutes 5`` runs), evaluate on ``test``
(:func:`inspection.evaluate.evaluate`: image AUROC, pixel AUROC, per-class image AUROC),
export to ONNX with the parity check, and time the exported graph under ONNX Runtime (one
thread, p50 over the first 50 test images, full-image detection including tiling and
stitching). ``--heads-minutes N`` adds today's random-weight heads training for N minutes
as the control row (``heads`` in ``--methods`` needs it); ``heads-lite0`` trains the same
heads for as long on the frozen ImageNet EfficientNet-Lite0 (config ``small-lite0``).
``combined`` trains nothing more: it fuses (:class:`~inspection.models.fusion.FusedDetector`)
the ``heads`` and ``padim`` models this run trained (``combined-lite0``: ``heads-lite0`` and
``padim``), or trains them once when they have no row of their own, and is
measured through the same code as every row: evaluated with both torch models, timed with
both ONNX graphs (its p50 is both graphs' detection and the fusion), its fit time and size
the sum of its members'.
All rows run in one process, one after the other, on one torch thread. ``--reuse`` takes
a method's model from an earlier run into the same ``--out`` (its fit time and parity as
that run recorded them in ``OUT/METHOD.fit.json``) instead of training it again.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

HEADS_CONFIGS = {"heads": "small", "heads-lite0": "small-lite0"}  # trained heads rows
# Normality rows on a config other than the method's default: row name -> (method, config).
NORMALITY_CONFIGS = {
    "padim-context": ("padim", "padim-lite0-context"),
    "padim-fine": ("padim", "padim-lite0-fine"),  # stages 2+3: the default before stage 3 alone
    "padim-affinity": ("padim", "padim-lite0-affinity"),  # the map refined by feature affinity
    "padim-rows": ("padim", "padim-lite0-rows"),  # + a Gaussian of each map row's mean
}
# What each combined row fuses, in FusedDetector's order (heads first).
COMBINED = {"combined": ("heads", "padim"), "combined-lite0": ("heads-lite0", "padim")}


@dataclass(frozen=True)
class Fitted:
    """One trained and exported model of this run."""

    method: str
    model_dir: Path
    graph: Path
    fit_s: float
    parity: float


def fit(
    method: str, data: Path, out: Path, minutes: float, heads_minutes: float, reuse: bool = False
) -> Fitted:
    """Train ``method`` as ``inspection train --normal-only`` does, export it, check parity
    (with ``reuse``, the model an earlier run into ``out`` trained and recorded)."""
    record = out / f"{method}.fit.json"
    if reuse and record.is_file():
        done = json.loads(record.read_text())
        return Fitted(method, out / method, out / f"{method}.onnx", done["fit_s"], done["parity"])
    from inspection.export.onnx import check_parity, export_onnx
    from inspection.models import load_model
    from inspection.train.trainer import TrainOptions, train

    model_dir = out / method
    is_heads = method in HEADS_CONFIGS
    fit_method, config = NORMALITY_CONFIGS.get(method, (method, None))
    options = TrainOptions(
        data=data,
        out=model_dir,
        normal_only=True,
        method="heads" if is_heads else fit_method,
        config=HEADS_CONFIGS.get(method, config),
        from_scratch=is_heads,
        max_minutes=heads_minutes if is_heads else minutes,
        steps=100_000 if is_heads else 3000,
    )
    t0 = time.perf_counter()
    train(options)
    fit_s = time.perf_counter() - t0
    torch.set_num_threads(1)
    model = load_model(model_dir)
    graph = export_onnx(model, out / f"{method}.onnx", with_audio=False)
    fitted = Fitted(method, model_dir, graph, fit_s, check_parity(model, graph).worst)
    record.write_text(json.dumps({"fit_s": fit_s, "parity": fitted.parity}) + "\n")
    return fitted


def torch_detector(fitted: Fitted):
    from inspection.models import load_model
    from inspection.models.detector import TorchDetector

    return TorchDetector(load_model(fitted.model_dir))


def onnx_detector(fitted: Fitted):
    from inspection.export.runtime import OnnxDetector

    return OnnxDetector(fitted.graph, threads=1)


def measure(name: str, members: list[Fitted], data: Path, out: Path) -> dict:
    """One row: a member alone, or the members fused (heads first, then normality)."""
    from inspection.datasets import load_dataset
    from inspection.evaluate import evaluate
    from inspection.io import read_image
    from inspection.models.fusion import FusedDetector
    from inspection.pipeline import thresholds_of

    def build(make):
        detectors = [make(f) for f in members]
        return detectors[0] if len(detectors) == 1 else FusedDetector(*detectors)

    detector = build(torch_detector)
    metrics = evaluate(detector, thresholds_of(detector.metadata), data, out / f"{name}-eval")
    edge = build(onnx_detector)
    samples = [s for s in load_dataset(data).samples if s.split == "test"][:50]
    times = []
    for s in samples:
        image = read_image(s.image)
        start = time.perf_counter()
        edge.detect(image)
        times.append(time.perf_counter() - start)
    per_class = {c: v.get("auroc") for c, v in metrics["per_class_by_score"].items()}
    return {
        "method": name,
        "image_auroc": metrics["image_auroc"],
        "pixel_auroc": metrics["pixel_auroc"],
        "per_class": per_class,
        "fit_s": sum(f.fit_s for f in members),
        "onnx_p50_ms": 1000 * float(np.median(times)),
        "onnx_mb": sum(f.graph.stat().st_size for f in members) / 2**20,
        "parity": max(f.parity for f in members),
        "load": os.getloadavg()[0],
    }


def plan(methods: list[str], heads_minutes: float) -> list[str]:
    """The rows in run order (combined rows last); raises ValueError."""
    if heads_minutes and not set(HEADS_CONFIGS) & set(methods):
        methods = [*methods, "heads"]
    if set(methods) & {*HEADS_CONFIGS, *COMBINED} and not heads_minutes:
        raise ValueError("the heads and combined rows need --heads-minutes N")
    return [m for m in methods if m not in COMBINED] + [m for m in methods if m in COMBINED]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data/magnetic-tile"))
    ap.add_argument("--methods", default="padim,patchcore")
    ap.add_argument("--max-minutes", type=float, default=5.0)
    ap.add_argument("--heads-minutes", type=float, default=0.0, help="0: no heads row")
    ap.add_argument("--out", type=Path, default=Path("runs/bench-normality"))
    ap.add_argument("--reuse", action="store_true", help="keep models an earlier run trained")
    args = ap.parse_args()
    try:
        methods = plan(args.methods.split(","), args.heads_minutes)
    except ValueError as exc:
        ap.error(str(exc))
    torch.set_num_threads(1)
    fitted: dict[str, Fitted] = {}

    def model(method: str) -> Fitted:  # each method trained once in the run
        if method not in fitted:
            fitted[method] = fit(
                method, args.data, args.out, args.max_minutes, args.heads_minutes, args.reuse
            )
        return fitted[method]

    rows = []
    for method in methods:
        members = [model(m) for m in COMBINED.get(method, (method,))]
        row = measure(method, members, args.data, args.out)
        print(row, flush=True)
        rows.append(row)
    print_table(rows)


def print_table(rows: list[dict], lead: dict[str, str] | None = None) -> None:
    """The rows as a markdown table; ``lead``: columns before the method's, as
    ``{header: row key}``."""
    lead = lead or {}
    head = [*lead, "method", "image AUROC", "pixel AUROC", "per-class image AUROC", "fit s"]
    head += ["ONNX p50 ms", "ONNX MB", "parity", "load"]
    print("\n| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        per = ", ".join(f"{c} {a:.3f}" for c, a in r["per_class"].items() if a is not None)
        cells = [str(r[key]) for key in lead.values()]
        cells += [r["method"], f"{r['image_auroc']:.3f}", f"{r['pixel_auroc']:.3f}", per]
        cells += [f"{r['fit_s']:.0f}", f"{r['onnx_p50_ms']:.0f}", f"{r['onnx_mb']:.1f}"]
        cells += [f"{r['parity']:.1e}", f"{r['load']:.1f}"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
