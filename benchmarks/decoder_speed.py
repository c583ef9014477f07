"""Report decoder throughput on this CPU: reports/s at batch 1 and at batch 16, side by side.

python benchmarks/decoder_speed.py                                 # models/default/decoder
python benchmarks/decoder_speed.py --decoder runs/decoder --parts 64

The same held-out parts (random unseen standards, 0-4 defects) are decoded greedily with
the grammar (xgrammar, pinned per part) at each batch size, in one run, alternating
rounds so that a noisy shared machine affects both alike. Tokens are the report's
generated tokens plus ``</s>``; time is the wall time of ``decode`` (prompt encoding,
grammar compilation, generation, validation). Also prints the fused-token payload a part
sends from the edge.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from inspection.decoder.decoding import DecodingOptions, decode
from inspection.decoder.evaluate import held_out_requests
from inspection.decoder.lora import load_decoder

ROOT = Path(__file__).resolve().parents[1]
console = Console()


def run(model, requests, batch_size: int) -> tuple[float, int]:
    """Seconds and generated tokens to decode ``requests`` at ``batch_size``."""
    start = time.perf_counter()
    results = decode(model, requests, DecodingOptions(language="en", batch_size=batch_size))
    seconds = time.perf_counter() - start
    assert all(r.report is not None for r in results), "a report failed to validate"
    return seconds, sum(len(r.tokens) + 1 for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decoder", type=Path, default=ROOT / "models/default/decoder")
    parser.add_argument("--parts", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=3_000_017)
    args = parser.parse_args()

    model = load_decoder(args.decoder)
    requests = held_out_requests(model, args.parts, args.seed)
    run(model, requests[:2], 1)  # warm-up: kernels, grammar compiler
    timings: dict[int, list[tuple[float, int]]] = {1: [], 16: []}
    for _ in range(args.rounds):
        for batch_size in timings:
            timings[batch_size].append(run(model, requests, batch_size))
    table = Table(title=f"{args.decoder}: {args.parts} parts x {args.rounds} rounds")
    for column in ("batch", "reports/s", "tokens/s", "s/report"):
        table.add_column(column, justify="right")
    rates = {}
    for batch_size, runs in timings.items():
        seconds = float(np.median([s for s, _ in runs]))
        tokens = runs[0][1]
        rates[batch_size] = args.parts / seconds
        table.add_row(
            str(batch_size),
            f"{rates[batch_size]:.2f}",
            f"{tokens / seconds:.0f}",
            f"{seconds / args.parts:.3f}",
        )
    console.print(table)
    console.print(f"batch 16 / batch 1 throughput: {rates[16] / rates[1]:.2f}x")
    payload = requests[0].fused
    console.print(
        f"fused-token payload a part: {payload.shape[0]} tokens x {payload.shape[1]} x "
        f"{payload.dtype} = {payload.nbytes:,} bytes"
    )


if __name__ == "__main__":
    main()
