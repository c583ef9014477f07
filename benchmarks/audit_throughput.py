"""Batch audit throughput and memory: `inspection audit` against a one-image-at-a-time loop.

Two measurements, in one run:

1. **Throughput**: the same model decides the same images (a) one at a time, as a loop
   over ``read_image`` + the line's ``Inspector`` would, and (b) with the audit's local
   engine (parallel decoding, tiles of many images per forward pass, overlays and the
   report included). Images/s of each and their ratio.
2. **Peak memory**: the audit of N and 10 x N images, each in a fresh process
   (``ru_maxrss``): a streamed audit stays flat.

Images are small synthetic parts (``inspection.synth``), with per-copy sensor noise so
that every file is a distinct part; the model is a config built with random weights
(``tiny`` by default: the point is the engine's overhead, not the model's accuracy).

Usage::

    .venv/bin/python benchmarks/audit_throughput.py --n 400 --memory 1000 10000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
STANDARD = REPO / "datasets" / "standards" / "bracket.yaml"
MM_PER_PX = 0.5


def make_images(folder: Path, n: int, size: int, seed: int = 0) -> Path:
    """``n`` distinct part images under ``folder/images`` (made once, then reused)."""
    import cv2

    from inspection.io import read_image
    from inspection.synth import synthesize

    images = folder / "images"
    if images.is_dir() and sum(1 for _ in images.rglob("*.png")) >= n:
        return images
    base = folder / "synth"
    if not base.is_dir():
        synthesize(base, n=100, seed=seed, product="bracket", size=max(size, 128), workers=2)
    sources = [  # the synthesiser's smallest parts are 128 px: scaled down to size
        cv2.resize(read_image(p), (size, size), interpolation=cv2.INTER_AREA)
        for p in sorted(base.rglob("*.png"))
        if "ground_truth" not in p.parts
    ]
    rng = np.random.default_rng(seed)
    for i in range(n):
        target = images / f"{i // 1000:03d}" / f"part-{i:06d}.png"
        if target.exists():
            continue
        image = sources[i % len(sources)].astype(np.int16)
        noisy = np.clip(image + rng.integers(-3, 4, image.shape), 0, 255).astype(np.uint8)
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target), noisy[:, :, ::-1] if noisy.ndim == 3 else noisy)
    return images


def make_model(folder: Path, config: str) -> Path:
    from inspection.models import create_model, save_model

    out = folder / f"model-{config}"
    if not (out / "model.safetensors").exists():
        model = create_model(config)
        model.metadata = {"thresholds": {"image": 0.5, "pixel": 0.5, "audio": 0.5}}
        save_model(model, out, extra=model.metadata)
    return out


def one_at_a_time(model: Path, paths: list[Path]) -> float:
    """Seconds for the loop a user would write: read, inspect, next (model loaded first)."""
    from inspection.io import read_image
    from inspection.pipeline import Inspector, load_detector, thresholds_of
    from inspection.standards import load_standard
    from inspection.types import Frame, Observation

    detector, metadata = load_detector(model)
    inspector = Inspector(detector, load_standard(STANDARD), thresholds_of(metadata))
    start = time.perf_counter()
    for path in paths:
        frame = Frame(read_image(path), mm_per_px=MM_PER_PX)
        inspector.inspect(Observation(path.stem, "bench", (frame,)))
    return time.perf_counter() - start


def audited(model: Path, images: Path, out: Path, batch: int, workers: int) -> float:
    """Seconds for ``inspection audit`` of ``images`` (model loading and report included)."""
    from inspection.audit import AuditOptions, audit

    options = AuditOptions(batch_size=batch, workers=workers, mm_per_px=MM_PER_PX, progress=False)
    start = time.perf_counter()
    summary = audit(images, out, model, STANDARD, options)
    seconds = time.perf_counter() - start
    if summary.unreadable:  # a benchmark of refusals would be no benchmark
        raise SystemExit(f"{summary.unreadable} images could not be read: see {out}")
    return seconds


def memory_child(args: argparse.Namespace) -> None:
    """In a fresh process: audit ``args.child`` images; print seconds and peak RSS."""
    work = Path(args.work)
    images = work / "images"
    subset = work / f"subset-{args.child}"
    if not subset.exists():  # a glob would do, but a folder is what users pass
        subset.mkdir()
        for path in sorted(images.rglob("*.png"))[: args.child]:
            os.link(path, subset / path.name)  # hard links: symlinks out of a folder are refused
    model = make_model(work, args.config)
    with tempfile.TemporaryDirectory() as out:
        seconds = audited(model, subset, Path(out), args.batch, args.workers)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"n": args.child, "seconds": seconds, "peak_mib": peak_mib}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=400, help="images for the throughput run")
    parser.add_argument("--memory", type=int, nargs="*", default=[1000, 10000])
    parser.add_argument("--size", type=int, default=64, help="image side in px")
    parser.add_argument("--config", default="tiny", help="model config (random weights)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds (median)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", default=None, help="folder for images and model (kept)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        memory_child(args)
        return
    work = Path(args.work or tempfile.mkdtemp(prefix="audit-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    images = make_images(work, max([args.n, *args.memory]), args.size)
    model = make_model(work, args.config)
    paths = sorted(images.rglob("*.png"))[: args.n]
    subset = work / f"subset-{args.n}"
    if not subset.exists():
        subset.mkdir()
        for path in paths:
            os.link(path, subset / path.name)  # hard links: symlinks out of a folder are refused
    # Alternated, so that a neighbour's load on the shared machine falls on both.
    loops, batched = [], []
    for _ in range(args.rounds):
        loops.append(one_at_a_time(model, paths))
        with tempfile.TemporaryDirectory() as out:
            batched.append(audited(model, subset, Path(out), args.batch, args.workers))
    loop, best = float(np.median(loops)), float(np.median(batched))
    print(f"## throughput: {args.n} images of {args.size} px, model config {args.config}")
    print(f"median of {args.rounds} alternated rounds")
    print("| path | seconds | images/s | ratio |\n|---|---|---|---|")
    print(f"| one image at a time (read + Inspector) | {loop:.2f} | {args.n / loop:.1f} | 1.00 |")
    print(
        f"| inspection audit (batch {args.batch}, {args.workers} decode threads) | "
        f"{best:.2f} | {args.n / best:.1f} | {loop / best:.2f} |"
    )
    if args.memory:
        print(f"\n## peak memory (ru_maxrss, fresh process each), batch {args.batch}")
        print("| images | seconds | images/s | peak RSS MiB |\n|---|---|---|---|")
        for n in args.memory:
            command = [
                sys.executable, __file__, "--work", str(work), "--child", str(n),
                "--config", args.config, "--batch", str(args.batch),
                "--workers", str(args.workers),
            ]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            print(
                f"| {n} | {row['seconds']:.1f} | {n / row['seconds']:.1f} | {row['peak_mib']:.0f} |"
            )
    print(f"\n(images and model kept in {work})")


if __name__ == "__main__":
    main()
