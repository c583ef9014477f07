"""Speed of the synthetic line: parts per second with 1 and 2 worker processes.

python benchmarks/synth_speed.py            # 1,000 bracket parts at 256 px
python benchmarks/synth_speed.py --n 200 --product tile --workers 1 2 4
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from inspection.synth import PRODUCTS, synthesize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="parts per run")
    parser.add_argument("--product", default="bracket", choices=sorted(PRODUCTS))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    print(f"{args.n} {args.product} parts at {args.size} px, {os.cpu_count()} CPUs")
    results = {}
    for workers in args.workers:
        with tempfile.TemporaryDirectory() as tmp:
            summary = synthesize(
                Path(tmp) / "run",
                n=args.n,
                seed=args.seed,
                product=args.product,
                size=args.size,
                workers=workers,
                progress=False,
            )
        results[workers] = summary
    base = results[args.workers[0]].parts_per_second
    print(f"{'workers':>8} {'seconds':>9} {'parts/s':>9} {'ratio':>7}")
    for workers, s in results.items():
        ratio = s.parts_per_second / base
        print(f"{workers:>8} {s.seconds:>9.2f} {s.parts_per_second:>9.1f} {ratio:>7.2f}")


if __name__ == "__main__":
    main()
