"""Station soak: N simulated parts through the daemon as fast as it sustains them.

A real mosquitto broker on 127.0.0.1 (a free port), a SQLite records file, the daemon
in this process with the simulator as its source (``distinct`` synthetic parts sent round
under fresh ids: the daemon is measured, not the part generator) and no pacing: the
capture waits only on ``max_inflight``, so the rate is the highest the station sustains.
A separate MQTT client plays the line and counts the verdicts it receives.

Reports: parts in = records written = verdicts received (none lost, none duplicated),
parts/s, p50 / p99 trigger-to-verdict latency against the cycle time, late verdicts, and
the process RSS at 1k parts and at the end (flat memory).

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/station_soak.py --n 10000
    .venv/bin/python benchmarks/station_soak.py --n 2000 --model PATH   # a bundle or model
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "station"))


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=64, help="image side in px")
    parser.add_argument("--model", type=Path, default=None, help="default: the tiny model")
    parser.add_argument("--cycle-ms", type=int, default=1500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-inflight", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="inference threads")
    parser.add_argument("--rss-at", type=int, default=1000)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from station_helpers import Mosquitto, VerdictListener, tiny_model, wait_until

    from inspection.station.config import load_config
    from inspection.station.daemon import StationDaemon

    root = Path(tempfile.mkdtemp(prefix="station-soak-"))
    model = args.model or tiny_model(root)
    broker = Mosquitto(root / "broker").start()
    listener = VerdictListener(broker.port)
    config = load_config(
        None,
        station="st-1",
        line="ln-1",
        product="bracket",
        model={"path": str(model), "threads": args.threads},
        source={"kind": "simulator", "n": args.n, "size": args.size, "distinct": 16},
        cycle_time_ms=args.cycle_ms,
        workers=args.workers,
        max_inflight=args.max_inflight,
        bus={"kind": "mqtt", "port": broker.port, "heartbeat_s": None},
        records={"url": str(root / "records.db"), "evidence": "none"},
        state_dir=str(root / "state"),
        metrics={"port": 0},
    )
    daemon = StationDaemon(config, notify=lambda message: False)
    rss: dict[str, float] = {"start": rss_mb()}

    def sample() -> None:
        while daemon.stats.recorded < args.rss_at and thread.is_alive():
            time.sleep(0.05)
        rss[f"at {daemon.stats.recorded}"] = rss_mb()

    thread = threading.Thread(target=daemon.run)
    t0 = time.perf_counter()
    thread.start()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    wait_until(lambda: daemon.stats.recorded >= 1 or not thread.is_alive(), 600)
    t_first = time.perf_counter()
    thread.join()
    elapsed = time.perf_counter() - t_first
    rss[f"at {daemon.stats.recorded}"] = rss_mb()
    wait_until(lambda: len(listener.counts()) >= args.n, 120)
    received = listener.counts()
    listener.close()
    broker.stop()
    with sqlite3.connect(root / "records.db") as conn:
        (records,) = conn.execute("SELECT COUNT(*) FROM inspections").fetchone()
        (distinct_records,) = conn.execute(
            "SELECT COUNT(DISTINCT part_ref) FROM inspections"
        ).fetchone()
    latencies = np.array(daemon.stats.latencies_s) * 1000
    result = {
        "parts_in": daemon.stats.captured,
        "records": records,
        "distinct_records": distinct_records,
        "verdicts_received": sum(received.values()),
        "distinct_verdicts": len(received),
        "late": daemon.stats.late,
        "errors": daemon.stats.errors,
        "parts_per_s": round(daemon.stats.recorded / elapsed, 1),
        "p50_ms": round(float(np.percentile(latencies, 50)), 1),
        "p99_ms": round(float(np.percentile(latencies, 99)), 1),
        "cycle_time_ms": args.cycle_ms,
        "rss_mb": {k: round(v, 1) for k, v in rss.items()},
        "startup_s": round(t_first - t0, 1),
        "size_px": args.size,
        "workers": args.workers,
    }
    print(json.dumps(result, indent=2))
    ok = (
        result["parts_in"] == records == distinct_records == len(received) == args.n
        and max(received.values()) == 1
    )
    print("parts in = records = verdicts, none lost or duplicated:", ok)


if __name__ == "__main__":
    main()
