"""Shared pieces of the console's tests: a records database with parts of every verdict,
a user file, and the console launched on a free loopback port."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("gradio", reason="the console needs the console extra (gradio)")

from records_helpers import result
from serve_helpers import free_port

from inspection.console.auth import UserDirectory, add_user
from inspection.types import Verdict

REPO_ROOT = Path(__file__).resolve().parents[2]
STANDARDS_DIR = REPO_ROOT / "datasets" / "standards"
NOW = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)  # shift B (14:00-22:00)
PASSWORDS = {"op": "operator-pass-1", "eng": "engineer-pass-1"}
STATION = "s1"


def synthetic_image(seed: int, size: int = 96) -> np.ndarray:
    """A grey part with some texture, big enough for the tiny model's tiles."""
    rng = np.random.default_rng(seed)
    return np.clip(128 + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8)


def fill_records(store: Any, product: str = "bracket") -> dict[str, Verdict]:
    """Parts of every verdict captured this shift, newest last: ``part id -> verdict``."""
    parts = {
        "P-REJECT-1": Verdict.REJECT,
        "P-PASS-1": Verdict.PASS,
        "P-REVIEW-1": Verdict.REVIEW,
        "P-REJECT-2": Verdict.REJECT,
        "P-PASS-2": Verdict.PASS,
    }
    for index, (part_id, verdict) in enumerate(parts.items()):
        defects = 1 if verdict is not Verdict.PASS else 0
        captured = NOW - timedelta(minutes=30 - index)
        store.record(
            part_id,
            STATION,
            result(part_id, verdict, defects),
            images=[synthetic_image(index)],
            captured_at=captured,
            decided_at=captured,
            product=product,
        )
    return parts


def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "users.yaml"
    add_user(path, "op", "operator", PASSWORDS["op"])
    add_user(path, "eng", "engineer", PASSWORDS["eng"])
    return path


def console_service(tmp_path: Path, models: Any = None, clock: Any = None) -> Any:
    """A service over a fresh SQLite records file filled by :func:`fill_records`."""
    from inspection.console.service import ConsoleService, ModelSet
    from inspection.console.standards import StandardLibrary
    from inspection.records.store import RecordStore

    store = RecordStore(tmp_path / "records.db")
    fill_records(store)
    clock = clock or (lambda: NOW.timestamp())
    library = StandardLibrary(store.engine, clock=clock)
    library.seed(STANDARDS_DIR)
    models = models or ModelSet(tmp_path / "no-model")
    return ConsoleService(store, library, models, workdir=tmp_path / "work", clock=clock)


@contextmanager
def launched(service: Any, users: Path | None, **launch: Any):
    """The console built on ``service`` and served on a free port: yields its URL."""
    from inspection.console.app import build_console, launch_console

    directory = None if users is None else UserDirectory.load(users)
    blocks = build_console(service=service, users=directory, refresh_s=3600, simulate=False)
    try:
        _, url = launch_console(blocks, port=free_port(), block=False, **launch)
        yield url
    finally:
        blocks.close()


def client(url: str, user: str | None) -> Any:
    from gradio_client import Client

    auth = None if user is None else (user, PASSWORDS[user])
    return Client(url, auth=auth, verbose=False, download_files=False)
