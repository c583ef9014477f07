"""Lines along a face's grain: what the search finds on good parts and defective ones,
and what it costs a frame (issue 23).

For each set (a folder from ``inspection synth``), every part's frame is searched with no
region of the map set aside (:func:`inspection.grain.grain_scratches`), as on a part whose
map lit nothing: the faces' grain coherence, the good parts with a line (the false
finds the search could add), and per label the parts with one. Then the cost of a frame,
at the set's size and enlarged to 2048 px (one thread; median of ``--repeat``).

    python benchmarks/grain_lines.py runs/s39/val-bracket runs/s39/heldout-bracket \
        runs/s39/heldout-panel runs/s39/heldout-tile
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from inspection.grain import grain_of, grain_scratches, part_face
from inspection.io import read_image


def _parts(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]


def survey(folder: Path) -> None:
    lines_by_label: dict[str, list[float]] = defaultdict(list)
    coherence = []
    for part in tqdm(_parts(folder), desc=folder.name, leave=False):
        image = read_image(folder / part["image"])
        grey = image.astype(np.float32).mean(axis=2)
        coherence.append(grain_of(grey, part_face(grey)).coherence)
        found = grain_scratches(image, part["mm_per_px"])
        lines_by_label[part["label"]].append(max((c.length_mm for c in found), default=0.0))
    print(
        f"\n{folder}: grain coherence, median {np.median(coherence):.2f} "
        f"(range {min(coherence):.2f}-{max(coherence):.2f})"
    )
    print("| label | parts | with a line | longest line (mm) |")
    print("|---|---|---|---|")
    for label, longest in sorted(lines_by_label.items()):
        hits = [v for v in longest if v > 0]
        top = f"{max(hits):.2f}" if hits else "-"
        print(f"| {label} | {len(longest)} | {len(hits)} | {top} |")


def cost(
    folder: Path, repeat: int, search: Callable[[np.ndarray, float], object] = grain_scratches
) -> None:
    """The median time of ``search(frame, mm_per_px)`` on a good part of ``folder``, at
    its size and enlarged to 2048 px (the colour patches' benchmark times its own)."""
    part = next(p for p in _parts(folder) if p["label"] == "good")
    image = read_image(folder / part["image"])
    times = {}
    for side in (image.shape[0], 2048):
        frame = cv2.resize(image, (side, side), interpolation=cv2.INTER_LINEAR)
        mm = part["mm_per_px"] * image.shape[0] / side
        search(frame, mm)  # warm
        runs = []
        for _ in range(repeat):
            start = time.perf_counter()
            search(frame, mm)
            runs.append(time.perf_counter() - start)
        times[side] = 1000 * float(np.median(runs))
    small, large = times[image.shape[0]], times[2048]
    print(
        f"\n{folder.name}, a good part: {image.shape[0]} px {small:.1f} ms, 2048 px "
        f"{large:.1f} ms ({large / small:.1f}x for {(2048 / image.shape[0]) ** 2:.0f}x the pixels)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="+", type=Path)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    for folder in args.sets:
        survey(folder)
    for folder in args.sets:
        cost(folder, args.repeat)


if __name__ == "__main__":
    main()
