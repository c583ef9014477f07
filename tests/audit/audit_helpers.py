"""Reading an audit folder back in tests."""

from __future__ import annotations

import json
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
STANDARD = REPO_ROOT / "datasets" / "standards" / "bracket.yaml"
MM_PER_PX = 0.5


def records(out: Path) -> list[dict]:
    lines = (out / "results.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def by_source(out: Path) -> dict[str, dict]:
    return {r["source"]: r for r in records(out)}


def comparable(record: dict) -> dict:
    """A record without what may differ between runs of the same audit: timings."""
    return {k: v for k, v in record.items() if k != "timings_ms"}


def assert_same_results(a: dict[str, dict], b: dict[str, dict]) -> None:
    """Two audits' records agree: verdicts, clauses, defects, measurements, reasons and
    versions exactly; the model's scores to float32 rounding (a replica with another
    thread count sums in another order: differences of 1e-7 were seen)."""
    import pytest

    assert a.keys() == b.keys()
    for source in a:
        x, y = comparable(a[source]), comparable(b[source])
        sx, sy = x.pop("scores"), y.pop("scores")
        assert sx.keys() == sy.keys() and all(sx[k] == pytest.approx(sy[k], rel=1e-5) for k in sx)
        dx, dy = x.pop("defects"), y.pop("defects")
        assert [d.pop("score") for d in dx] == pytest.approx([d.pop("score") for d in dy], rel=1e-5)
        assert (x, dx) == (y, dy), source
