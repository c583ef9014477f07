"""`inspection calibrate`: a model's thresholds set again on good parts it never saw, the
weights kept, under a new version; what it cannot use is refused, one line, nothing written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from inspection.cli import app
from inspection.datasets import load_dataset
from inspection.io import read_image
from inspection.metrics import threshold_for_frr
from inspection.models import create_model, load_model, save_model
from inspection.models.detector import TorchDetector
from inspection.synth import synthesize


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    tiny = create_model("tiny")
    thresholds = {"image": 0.99, "pixel": 0.7, "audio": 0.6, "held_out_good": 3}
    return save_model(tiny, tmp_path_factory.mktemp("m") / "tiny", extra={"thresholds": thresholds})


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("good") / "line"
    synthesize(out, n=30, seed=12, product="bracket", size=64, workers=1, train_ratio=1.0,
               progress=False)  # fmt: skip
    return out


def _calibrate(*args: str):
    return CliRunner().invoke(app, ["calibrate", *args])


def test_the_thresholds_are_set_on_the_good_parts_and_the_weights_kept(model, good, tmp_path):
    out = tmp_path / "recalibrated"
    result = _calibrate("--model", str(model), "--good", str(good), "--out", str(out),
                        "--target-frr", "0.1")  # fmt: skip
    assert result.exit_code == 0, result.output
    before, after = load_model(model), load_model(out)
    for name, value in before.state_dict().items():
        assert torch.equal(after.state_dict()[name], value), name
    assert after.model_version != before.model_version  # new thresholds, a new version
    assert after.metadata["recalibrated"]["from"] == before.model_version
    images = [s.image for s in load_dataset(good).samples if s.is_good]
    thresholds = after.metadata["thresholds"]
    assert thresholds["held_out_good"] == len(images) == 30
    # the image threshold is the one these good parts' own scores give, measured apart
    detector = TorchDetector(before.eval())
    scores = [float(detector.detect(read_image(p)).image_score[0]) for p in images]
    assert thresholds["image"] == pytest.approx(threshold_for_frr(scores, 0.1), abs=1e-6)
    assert np.mean(np.array(scores) >= thresholds["image"]) <= 0.1 + 1 / 30
    assert thresholds["image"] != before.metadata["thresholds"]["image"]
    assert "image threshold 0.99 ->" in result.output


def test_what_it_cannot_use_is_refused_and_nothing_is_written(model, good, tmp_path):
    taken = tmp_path / "taken"
    assert (
        _calibrate("--model", str(model), "--good", str(good), "--out", str(taken)).exit_code == 0
    )
    written = (taken / "model.safetensors").read_bytes()
    defects_only = tmp_path / "defects"
    (defects_only / "scratch").mkdir(parents=True)
    (defects_only / "scratch" / "0.png").write_bytes((good / "train/good/000000.png").read_bytes())
    cases = [
        (["--good", str(good), "--out", str(taken)], "holds a model already"),
        (["--good", str(defects_only), "--out", str(tmp_path / "a")], "no readable good images"),
        (["--good", str(good), "--out", str(tmp_path / "b"), "--target-frr", "0"], "between 0"),
        (["--good", str(tmp_path / "none"), "--out", str(tmp_path / "c")], "none"),
    ]
    for args, message in cases:
        result = _calibrate("--model", str(model), *args)
        assert result.exit_code == 2, (args, result.output)
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and message in errors[0], (args, result.output)
    assert (taken / "model.safetensors").read_bytes() == written
    assert not any((tmp_path / name).exists() for name in ("a", "b", "c"))
