"""Shared pieces of the station daemon tests: a tiny model, a fast part source, a
station config against a real mosquitto, and a listener on the verdict topic."""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

# The real broker helpers live with the line tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "line"))

from brokers import WAIT_S, Listener, Mosquitto, mosquitto_available, wait_until

from inspection.capture.base import PartSource
from inspection.station.config import StationConfig, load_config
from inspection.types import Observation

__all__ = [
    "WAIT_S",
    "CyclingSource",
    "Mosquitto",
    "VerdictListener",
    "mosquitto_available",
    "station_config",
    "tiny_model",
    "wait_until",
]

PRODUCT = "bracket"
SIZE = 64  # one tile of the tiny model: the fastest a real model runs


def tiny_model(root: Path) -> Path:
    """A tiny random-weight model folder whose threshold splits a few parts, so that
    PASS and REJECT both occur."""
    import torch

    from inspection.capture.simulator import SimulatedLine
    from inspection.models import create_model, save_model
    from inspection.models.detector import TorchDetector

    torch.manual_seed(0)
    model = create_model("tiny")
    with torch.no_grad():
        model.seg_head.fine[4].bias[0] += 4.3
    detector = TorchDetector(model)
    parts = list(SimulatedLine(PRODUCT, n=9, seed=5, size=SIZE))
    scores = sorted(float(detector.detect(o.frames[0].image, o.audio).part_score[0]) for o in parts)
    threshold = (scores[3] + scores[4]) / 2
    model.metadata = {
        "thresholds": {"image": threshold, "pixel": 0.5, "audio": 0.99},
        "products": [PRODUCT],
    }
    return save_model(model, Path(root) / "model", extra=model.metadata)


class CyclingSource(PartSource):
    """``n`` parts under fresh ids (``{prefix}-00000`` ...), made from a few synthetic
    ones: the daemon is measured, not the generator. ``broken`` maps a part index to a
    function that spoils its observation (a corrupt frame, NaN audio). ``hold``: after
    the last part, wait for :meth:`close` (the daemon's shutdown) instead of ending."""

    def __init__(
        self, n: int, prefix: str = "T", distinct: int = 8, broken=None, hold: bool = False
    ) -> None:
        from inspection.capture.simulator import SimulatedLine

        self.n, self.prefix, self.hold = n, prefix, hold
        self.closed = threading.Event()
        self.base = list(SimulatedLine(PRODUCT, n=distinct, seed=11, size=SIZE))
        self.broken = broken or {}
        self.yielded = 0

    def part_id(self, index: int) -> str:
        return f"{self.prefix}-{index:05d}"

    def __iter__(self) -> Iterator[Observation]:
        for index in range(self.n):
            observation = replace(self.base[index % len(self.base)], part_id=self.part_id(index))
            if index in self.broken:
                observation = self.broken[index](observation)
            self.yielded += 1
            yield observation
        if self.hold:  # a line that stays up after its last part, until the daemon stops
            self.closed.wait()

    def close(self) -> None:
        self.closed.set()


def station_config(root: Path, port: int | None, **fields: Any) -> StationConfig:
    """A station on ``root`` against the broker on ``port`` (``None``: no bus)."""
    bus = (
        {"kind": "mqtt", "port": port, "backoff_min_s": 0.05, "backoff_max_s": 0.5,
         "heartbeat_s": None}
        if port is not None
        else {"kind": "none"}
    )  # fmt: skip
    data: dict[str, Any] = {
        "station": "st-1",
        "line": "ln-1",
        "product": PRODUCT,
        "model": {"path": str(fields.pop("model_path", root / "model"))},
        "cycle_time_ms": 60_000,  # nothing is late unless a test makes it so
        "bus": bus,
        "records": {"url": str(root / "records.db"), "evidence": "none"},
        "state_dir": str(root / "state"),
        "metrics": {"port": 0},
        "log_json": True,
    }
    data.update(fields)
    return load_config(None, **data)


class VerdictListener(Listener):
    """The line's side: every verdict message that arrives, by part id."""

    def __init__(self, port: int, line: str = "ln-1", station: str = "st-1", name: str = "plc"):
        super().__init__(port, f"inspection/{line}/{station}/verdict", client_id=name)
        self._seen = threading.Lock()

    def verdicts(self) -> list[dict[str, Any]]:
        return [json.loads(p) for p in self.payloads("/verdict")]

    def counts(self) -> Counter[str]:
        return Counter(v["part_id"] for v in self.verdicts())

    def by_part(self) -> dict[str, dict[str, Any]]:
        return {v["part_id"]: v for v in self.verdicts()}


def corrupt_frame(observation: Observation) -> Observation:
    """A frame that is not an image (a camera delivered garbage)."""
    frame = replace(observation.frames[0], image=np.zeros((3,), np.uint8))
    return replace(observation, frames=(frame,))


def nan_audio(observation: Observation) -> Observation:
    """Audio full of NaN (a microphone driver fault)."""
    samples = np.full_like(observation.audio.samples, np.nan)
    return replace(observation, audio=replace(observation.audio, samples=samples))


def inspections_per_part(db: Path) -> Counter[str]:
    """How many inspections each part id has in the records database."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT parts.part_id, COUNT(inspections.id) FROM parts "
            "JOIN inspections ON inspections.part_ref = parts.id GROUP BY parts.part_id"
        ).fetchall()
    return Counter(dict(rows))
