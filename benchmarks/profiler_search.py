"""What searching a height map for dents costs (`measure.depressions`), per map.

The maps of a synthetic set (`inspection synth --height`: the part on its belt), as
written (256 px) and enlarged to 2048 px (the scale shrunk to match), each searched
after a warm-up; p50 in ms. Run it twice in one sitting, once with the code to compare
first on `PYTHONPATH` (a worktree of the other commit), to compare two versions:

    inspection synth --out D --n 300 --seed 7 --product bracket --train-ratio 0 --height
    PYTHONPATH=/tmp/base python benchmarks/profiler_search.py --data D   # before
    python benchmarks/profiler_search.py --data D                        # after

Results: benchmarks/README.md, "A profiler's view of the part on its belt".
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

import inspection
from inspection.io import read_height_map
from inspection.measure import depressions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="A set with height maps.")
    parser.add_argument("--maps", type=int, default=40, help="Maps searched at 256 px.")
    parser.add_argument("--large", type=int, default=3, help="Of them, enlarged to 2048 px.")
    args = parser.parse_args()
    rows = [json.loads(line) for line in (args.data / "manifest.jsonl").open()]
    rows = [r for r in rows if r.get("height")][: args.maps]
    if not rows:
        raise SystemExit(f"{args.data}: no height maps (inspection synth --height)")
    maps = [(read_height_map(args.data / r["height"]), r["mm_per_px"]) for r in rows]
    side = maps[0][0].shape[1]
    large = [
        (cv2.resize(m, (2048, 2048), interpolation=cv2.INTER_LINEAR), mpp * side / 2048)
        for m, mpp in maps[: args.large]
    ]
    print(f"code: {Path(inspection.__file__).parent}")
    for name, batch in ((f"{side} px", maps), ("2048 px", large)):
        depressions(*batch[0])  # warm-up
        times = []
        for height, mm_per_px in batch:
            start = time.perf_counter()
            depressions(height, mm_per_px)
            times.append(time.perf_counter() - start)
        print(f"{name}: {len(batch)} maps, p50 {1000 * np.median(times):.1f} ms")


if __name__ == "__main__":
    main()
