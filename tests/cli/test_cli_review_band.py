"""The review band on the commands that decide parts: refused clearly when it cannot
apply, and what would pass inside it goes to REVIEW."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from inspection.cli import app


@pytest.fixture
def tiny_model_and_lot(tmp_path):
    torch = pytest.importorskip("torch")
    from inspection.io import write_image
    from inspection.models import save_model
    from inspection.models.registry import create_model

    torch.manual_seed(0)
    model = save_model(create_model("tiny"), tmp_path / "model", extra={"thresholds": {}})
    lot = tmp_path / "lot"
    rng = np.random.default_rng(0)
    for i in range(3):
        write_image(lot / f"part-{i}.png", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    return model, lot


@pytest.mark.parametrize("start", ["0.5", "2", "0", "nan"])
def test_a_band_that_cannot_apply_is_a_one_line_error(tmp_path, tiny_model_and_lot, start):
    model, lot = tiny_model_and_lot
    out = tmp_path / "out"
    for args in (
        ["evaluate", "--model", str(model), "--data", str(lot), "--out", str(out)],
        ["audit", str(lot), "--model", str(model), "--standard", "bracket", "--out", str(out)],
    ):
        result = CliRunner().invoke(app, [*args, "--review-from", start])
        assert result.exit_code == 2, (args, result.output)
        assert result.output.count("error:") == 1 and "Traceback" not in result.output
        assert "image threshold 0.500" in result.output
        assert not (out / "results.jsonl").exists() and not (out / "metrics.json").exists()


def test_an_audit_with_a_band_passes_nothing_inside_it(tmp_path, tiny_model_and_lot):
    model, lot = tiny_model_and_lot

    def audit(name: str, *band: str) -> list[dict]:
        out = tmp_path / name
        args = ["audit", str(lot), "--model", str(model), "--standard", "bracket"]
        result = CliRunner().invoke(app, [*args, "--out", str(out), *band])
        assert result.exit_code == 0, result.output
        return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]

    plain = audit("plain")  # the untrained model scores these parts far under its threshold
    assert [r["verdict"] for r in plain] == ["PASS"] * 3
    banded = audit("banded", "--review-from", "1e-6")
    assert [r["verdict"] for r in banded] == ["REVIEW"] * 3
    assert all("in the review band" in r["reasons"][0] for r in banded), banded
