"""Store and forward: payload bytes per split point, outbox put rate, and how fast a backlog
drains into the real report service.

python benchmarks/store_and_forward.py                        # models/default, 64 parts drained
python benchmarks/store_and_forward.py --n-put 500 --n-drain 32 --concurrency 1 4
python benchmarks/store_and_forward.py --serve-decoder tiny   # the path without the LM's cost

1. Payload bytes: ``models/default`` decides bracket parts (torch, the same ``Inspector`` as
   everywhere); each part's payload is built at both split points, ``fused`` (the decoder's
   fusion resampler run on the detection) and ``tokens`` (raw patch tokens, full-size maps,
   audio tokens): ``EdgePayload.tensor_bytes()`` and the JSON the edge sends.
2. Put rate: payloads into a fresh outbox (SQLite WAL, synchronous=FULL: one fsync per put),
   and the drain rate into a loopback stub that answers at once (the path's own cost).
3. Drain: a backlog queued while the service was down, then ``inspection serve`` (the
   shipped decoder, dynamic batching) in a subprocess on loopback, and a forwarder with
   1, 4, ... requests in flight; rounds interleaved so the machine's noise hits all alike.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import torch

from inspection.capture.simulator import SimulatedLine
from inspection.config import standard_path
from inspection.decoder.model import ReportDecoder
from inspection.decoder.schema import defects_of
from inspection.edge.outbox import Forwarder, Outbox
from inspection.edge.payload import EdgePayload, WireDefect, WireTensor
from inspection.pipeline import Inspector, RecordingDetector, load_detector, thresholds_of
from inspection.serve.auth import KeyStore
from inspection.standards import load_standard


def build_payloads(model: str, decoder: str, product: str, n: int) -> dict[str, list]:
    """``n`` decided parts as payloads at both split points."""
    detector, metadata = load_detector(model)
    recording = RecordingDetector(detector)
    inspector = Inspector(recording, load_standard(standard_path(product)), thresholds_of(metadata))
    fusion = ReportDecoder.load(decoder).eval()
    payloads: dict[str, list] = {"fused": [], "tokens": []}
    for observation, _ in SimulatedLine(product, n=n, seed=11, defect_rate=0.5, size=256).parts():
        result = inspector.inspect(observation)
        detection = recording.last
        common = {
            "part_id": result.part_id,
            "station": observation.station,
            "standard_id": result.standard_id,
            "standard_version": result.standard_version,
            "model_version": result.model_version or "default",
            "defects": [WireDefect.from_defect(d) for d in defects_of(result)],
            "verdict": result.verdict,
            "reasons": list(result.reasons),
        }
        fused = fusion.fuse_detection(detection)[0]
        payloads["fused"].append(EdgePayload(**common, fused=WireTensor.from_array(fused)))
        tokens = {
            "patch_tokens": WireTensor.from_array(detection.patch_tokens[0]),
            "maps": WireTensor.from_array(detection.maps[0]),
        }
        if detection.audio_tokens is not None:
            tokens["audio_tokens"] = WireTensor.from_array(detection.audio_tokens[0])
        payloads["tokens"].append(EdgePayload(**common, split="tokens", **tokens))
    return payloads


def payload_table(payloads: dict[str, list]) -> None:
    print("\n| split | tensors | tensor bytes | JSON bytes | ratio |")
    print("|---|---|---|---|---|")
    base = statistics.median(len(p.model_dump_json(by_alias=True)) for p in payloads["fused"])
    for split, items in payloads.items():
        first = items[0]
        shapes = ", ".join(
            f"{name} {tuple(t.shape)}"
            for name in ("fused", "patch_tokens", "maps", "audio_tokens")
            if (t := getattr(first, name)) is not None
        )
        tensor = statistics.median(p.tensor_bytes() for p in items)
        text = statistics.median(len(p.model_dump_json(by_alias=True)) for p in items)
        print(f"| {split} | {shapes} | {tensor:,.0f} | {text:,.0f} | {text / base:.1f} |")


def tiny_decoder(tmp: Path) -> tuple[str, tuple[int, int]]:
    """A random-weight tiny decoder (it writes schema-valid reports, fast): the drain
    then measures the outbox, the forwarder and the service rather than the decoder."""
    from inspection.decoder.corpus import shipped_standards
    from inspection.decoder.tokenizer import tokenizer_corpus, train_tokenizer

    corpus = tokenizer_corpus(n_examples=30, n_standards=4, standards=shipped_standards())
    model = ReportDecoder.create("tiny", tokenizer=train_tokenizer(corpus, 512), seed=0)
    fusion = model.config.fusion
    return str(model.save(tmp / "tiny-decoder")), (fusion.queries, fusion.dim)


def reshaped(payloads: list[EdgePayload], shape: tuple[int, int]) -> list[EdgePayload]:
    """The same parts with random fused tokens of another decoder's shape."""
    rng = np.random.default_rng(0)
    return [
        p.model_copy(update={"fused": WireTensor.from_array(rng.standard_normal(shape))})
        for p in payloads
    ]


def with_id(payload: EdgePayload, part_id: str) -> EdgePayload:
    return payload.model_copy(update={"part_id": part_id})


def put_rate(payloads: dict[str, list], n: int, tmp: Path) -> None:
    print("\n| split | puts | puts/s | p50 ms | p99 ms | file bytes per part |")
    print("|---|---|---|---|---|---|")
    for split, items in payloads.items():
        count = n if split == "fused" else max(n // 10, 20)
        path = tmp / f"put-{split}.sqlite"
        box = Outbox(path)
        ready = [with_id(items[i % len(items)], f"put-{split}-{i}") for i in range(count)]
        times = []
        start = time.perf_counter()
        for payload in ready:
            t0 = time.perf_counter()
            box.put(payload)
            times.append((time.perf_counter() - t0) * 1000)
        total = time.perf_counter() - start
        box.close()
        size = sum(p.stat().st_size for p in tmp.glob(f"put-{split}.sqlite*"))
        p50, p99 = np.percentile(times, [50, 99])
        print(
            f"| {split} | {count} | {count / total:,.0f} | {p50:.2f} | {p99:.2f} "
            f"| {size / count:,.0f} |"
        )


class _Stub(BaseHTTPRequestHandler):
    """Answers every report at once: what the outbox and the forwarder cost alone."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else delayed ACKs add 40 ms to every answer

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        data = json.dumps({"part_id": body["part_id"], "report": {}, "duplicate": False})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data.encode())

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def stub_service():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_service(decoder: str, db: Path, log: Path, threads: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        str(Path(sys.executable).with_name("inspection")), "serve",
        "--host", "127.0.0.1", "--port", str(port), "--decoder", decoder,
        "--db", str(db), "--log-level", "warning",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the service exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("the service was not ready within 300 s")


def drain(
    payloads: list[EdgePayload],
    args: argparse.Namespace,
    tmp: Path,
    url: str,
    token: str,
    n: int | None = None,
) -> None:
    n = n or args.n_drain
    print("\n| in flight | parts | rounds | parts/s (median) | min | max | ratio |")
    print("|---|---|---|---|---|---|---|")
    rates: dict[int, list[float]] = {c: [] for c in args.concurrency}
    for r in range(args.rounds):
        for c in args.concurrency:
            name = f"drain-{r}-{c}-{time.monotonic_ns()}"
            box = Outbox(tmp / f"{name}.sqlite")
            for i in range(n):
                box.put(with_id(payloads[i % len(payloads)], f"{name}-{i}"))
            fwd = Forwarder(box, url, token, concurrency=c, batch=max(32, c), timeout=120)
            start = time.perf_counter()
            fwd.start()
            while box.pending():
                time.sleep(0.02)
            rates[c].append(n / (time.perf_counter() - start))
            fwd.stop()
            stats = box.stats()
            assert stats.delivered == n and stats.rejected == 0, stats
            box.close()
    base = statistics.median(rates[args.concurrency[0]])
    for c, values in rates.items():
        median = statistics.median(values)
        print(
            f"| {c} | {n} | {len(values)} | {median:.1f} | {min(values):.1f} "
            f"| {max(values):.1f} | {median / base:.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/default")
    parser.add_argument(
        "--decoder", default="models/default/decoder", help="fusion of the payloads"
    )
    parser.add_argument(
        "--serve-decoder",
        default="models/default/decoder",
        help="the service's decoder; 'tiny': a random tiny one (measures the path, not the LM)",
    )
    parser.add_argument("--product", default="bracket")
    parser.add_argument("--parts", type=int, default=8, help="decided parts for the payloads")
    parser.add_argument("--n-put", type=int, default=2000)
    parser.add_argument("--n-drain", type=int, default=64)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch threads, here and served")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    payloads = build_payloads(args.model, args.decoder, args.product, args.parts)
    payload_table(payloads)
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        put_rate(payloads, args.n_put, tmp)
        print("\ndrain into a loopback stub that answers at once (no decoder):")
        with stub_service() as url:
            drain(payloads["fused"], args, tmp, url, "stub", n=max(args.n_put // 4, 50))
        keys = KeyStore(tmp / "service.db")
        token = keys.add("bench")
        keys.close()
        decoder, fused = args.serve_decoder, payloads["fused"]
        if decoder == "tiny":
            decoder, shape = tiny_decoder(tmp)
            fused = reshaped(fused, shape)
        print(f"\ndrain into `inspection serve --decoder {args.serve_decoder}`:")
        proc, url = start_service(decoder, tmp / "service.db", tmp / "service.log", args.threads)
        try:
            drain(fused, args, tmp, url, token)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)


if __name__ == "__main__":
    main()
