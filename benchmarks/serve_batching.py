"""The report service's throughput with dynamic batching vs batch 1, same concurrency.

python benchmarks/serve_batching.py                          # shipped decoder, batch 1 vs 16
python benchmarks/serve_batching.py --decoder tiny --batches 1,16,32 --clients 32

For each max batch, a real ``inspection serve`` (uvicorn subprocess on 127.0.0.1, its own
SQLite file and API key) is started and ``--clients`` closed-loop clients (threads, one
HTTP connection each) send ``--requests`` edge payloads in all, each a new part id: the
same parts, in the same order, for every configuration. Parts are held-out-style: the
shipped ``bracket`` / ``panel`` / ``tile`` standards, 0-2 defects drawn around the
standards' limits (``random_defects``), the edge's verdict by the rules, random fused
tokens of the decoder's shape. Reported: reports/s over the timed run, and each request's
latency (send to answer) p50 / p99. A warm-up of 4 parts (grammar compiler,
kernels) runs first and is not timed.

``--decoder tiny`` builds a random-weight tiny decoder (seconds); a path loads that one.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inspection.edge.payload import EdgePayload, WireDefect, WireTensor  # noqa: E402

SERVE = "from inspection.serve.commands import serve_app; serve_app(prog_name='inspection serve')"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_decoder(folder: Path) -> Path:
    from inspection.decoder.model import ReportDecoder

    return ReportDecoder.create("tiny", seed=0).save(folder / "tiny-decoder")


def fusion_shape(decoder: Path) -> tuple[int, int]:
    fusion = json.loads((decoder / "decoder.json").read_text())["config"]["fusion"]
    return int(fusion.get("queries", 8)), int(fusion.get("dim", 64))


def make_payloads(n: int, shape: tuple[int, int], seed: int) -> list[dict]:
    from inspection.decoder.corpus import random_defects, shipped_standards
    from inspection.standards import apply_standard

    rng = np.random.default_rng(seed)
    standards = shipped_standards()
    out = []
    for i in range(n):
        standard = standards[i % len(standards)]
        defects = random_defects(rng, standard, max_defects=2)
        verdict = apply_standard(standard, defects, f"p{i}").verdict
        out.append(
            EdgePayload(
                part_id=f"bench-{seed}-{i:05d}",
                standard_id=standard.id,
                standard_version=standard.version,
                model_version="bench",
                fused=WireTensor.from_array(rng.standard_normal(shape)),
                defects=[WireDefect.from_defect(d) for d in defects],
                verdict=verdict,
            ).to_json()
        )
    return out


def start(decoder: Path, work: Path, max_batch: int, max_wait_ms: float, threads: int):
    from inspection.serve.auth import KeyStore

    db = work / f"b{max_batch}" / "service.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    token = KeyStore(db).add("bench")
    port = free_port()
    log = (work / f"b{max_batch}" / "server.log").open("wb")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    command = [
        sys.executable, "-c", SERVE, "--host", "127.0.0.1", "--port", str(port),
        "--decoder", str(decoder), "--db", str(db), "--max-batch", str(max_batch),
        "--max-wait-ms", str(max_wait_ms), "--log-level", "warning", "--timeout-s", "3600",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"server exited: {(work / f'b{max_batch}' / 'server.log').read_text()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return process, url, token
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    sys.exit("server not ready in 300 s")


def drive(url: str, token: str, payloads: list[dict], clients: int) -> tuple[float, list[float]]:
    """Send every payload through ``clients`` closed-loop clients; wall seconds and
    each request's latency."""
    headers = {"Authorization": f"Bearer {token}"}
    chunks = [payloads[i::clients] for i in range(clients)]

    def client(chunk: list[dict]) -> list[float]:
        out = []
        with httpx.Client(timeout=600, headers=headers) as http:
            for body in chunk:
                t = time.perf_counter()
                response = http.post(f"{url}/v1/reports", json=body)
                out.append(time.perf_counter() - t)
                if response.status_code != 200 or response.json()["duplicate"]:
                    raise RuntimeError(f"{response.status_code}: {response.text[:300]}")
        return out

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = [x for chunk in pool.map(client, chunks) for x in chunk]
    return time.perf_counter() - start, latencies


def batch_sizes(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    values = {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line.startswith("inspection_serve_batch_size_")
    }
    count = values.get("inspection_serve_batch_size_count", 0.0)
    return values.get("inspection_serve_batch_size_sum", 0.0) / count if count else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decoder", default=str(ROOT / "models/default/decoder"))
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=128)
    parser.add_argument("--max-wait-ms", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the server")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        work = Path(tmp)
        decoder = tiny_decoder(work) if args.decoder == "tiny" else Path(args.decoder)
        shape = fusion_shape(decoder)
        warm = make_payloads(4, shape, args.seed + 1)
        timed = make_payloads(args.requests, shape, args.seed)
        rows = []
        for max_batch in (int(b) for b in args.batches.split(",")):
            process, url, token = start(decoder, work, max_batch, args.max_wait_ms, args.threads)
            try:
                drive(url, token, warm, len(warm))
                seconds, latencies = drive(url, token, timed, args.clients)
                mean_batch = batch_sizes(url)
            finally:
                process.send_signal(signal.SIGTERM)
                process.wait(60)
            rows.append(
                {
                    "max_batch": max_batch,
                    "reports_per_s": len(timed) / seconds,
                    "p50_s": float(np.percentile(latencies, 50)),
                    "p99_s": float(np.percentile(latencies, 99)),
                    "mean_batch": mean_batch,
                    "seconds": seconds,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["reports_per_s"]
    print(
        f"\ndecoder {args.decoder}, {args.clients} clients, {args.requests} parts, "
        f"max wait {args.max_wait_ms} ms, server torch threads {args.threads}"
    )
    print("| max batch | reports/s | p50 s | p99 s | mean batch | vs batch 1 |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['max_batch']} | {r['reports_per_s']:.2f} | {r['p50_s']:.2f} | "
            f"{r['p99_s']:.2f} | {r['mean_batch']:.1f} | {r['reports_per_s'] / base:.2f}x |"
        )


if __name__ == "__main__":
    main()
