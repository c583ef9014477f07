"""Shared pieces of the report service's tests: a tiny decoder saved once per session,
payloads, and an app with a real SQLite file and a real key."""

from __future__ import annotations

import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from inspection.edge.payload import EdgePayload, WireDefect, WireTensor
from inspection.standards import Standard

REPO_ROOT = Path(__file__).resolve().parents[2]
STANDARDS_DIR = REPO_ROOT / "datasets" / "standards"
READY_TIMEOUT_S = 120  # generous: the tiny decoder loads in a second on an idle machine

_decoder_dir: Path | None = None


def tiny_decoder_dir(tmp_path_factory: Any) -> Path:
    """A random-weight ``tiny`` decoder with a small tokenizer, saved once per session."""
    global _decoder_dir
    if _decoder_dir is None:
        from inspection.decoder.corpus import shipped_standards
        from inspection.decoder.model import ReportDecoder
        from inspection.decoder.tokenizer import tokenizer_corpus, train_tokenizer

        corpus = tokenizer_corpus(n_examples=30, n_standards=4, standards=shipped_standards())
        model = ReportDecoder.create("tiny", tokenizer=train_tokenizer(corpus, 512), seed=0)
        _decoder_dir = model.save(tmp_path_factory.mktemp("serve-decoder") / "decoder")
    return _decoder_dir


def payload(
    standard: Standard,
    part_id: str,
    *,
    verdict: str = "PASS",
    defects: list[WireDefect] | None = None,
    split: str = "fused",
    seed: int = 0,
    **fields: Any,
) -> dict[str, Any]:
    """An edge payload as JSON: fused tokens of the tiny decoder's shape (8, 64), or raw
    tokens of the tiny detection model's widths (patch 32, 1 + 6 maps)."""
    rng = np.random.default_rng(seed)
    tensors: dict[str, Any]
    if split == "fused":
        tensors = {"fused": WireTensor.from_array(rng.standard_normal((8, 64)))}
    else:
        tensors = {
            "patch_tokens": WireTensor.from_array(rng.standard_normal((16, 32))),
            "maps": WireTensor.from_array(rng.standard_normal((7, 32, 32))),
        }
    return EdgePayload(
        part_id=part_id,
        standard_id=standard.id,
        standard_version=standard.version,
        model_version="tiny-test",
        split=split,
        defects=defects or [],
        verdict=verdict,
        **tensors,
        **fields,
    ).to_json()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_client(settings: Any):
    """A TestClient with the app's lifespan running and its decoder loaded."""
    from fastapi.testclient import TestClient

    from inspection.serve.app import create_app

    app = create_app(settings)
    with TestClient(app) as client:
        service = app.state.service
        assert service.wait_ready(READY_TIMEOUT_S), service.load_error
        yield client, service
