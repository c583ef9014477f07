"""Shared fixtures: repository paths, the example standards, and the audit's parts and model
(one conftest: a second one in a test folder would shadow ``from conftest import ...``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from inspection.standards import Standard, load_standard

REPO_ROOT = Path(__file__).resolve().parents[1]
STANDARDS_DIR = REPO_ROOT / "datasets" / "standards"
_EXIT_STATUS: list[int] = []  # the session's, kept for pytest_unconfigure


def pytest_sessionfinish(session, exitstatus) -> None:
    _EXIT_STATUS.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config) -> None:
    """Leave with the session's status once everything is reported and every plugin has
    cleaned up, skipping the interpreter's teardown: after all 1,289 tests had passed and
    been reported, one full run died there (segmentation fault, `make test` status 2),
    among the destructors of the native libraries the suite loads (torch, ONNX Runtime,
    OpenCV's and the BLAS's thread pools). A failure in a test still fails the run."""
    if _EXIT_STATUS:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS[-1])


@pytest.fixture(scope="session")
def bracket_standard() -> Standard:
    return load_standard(STANDARDS_DIR / "bracket.yaml")


@pytest.fixture(scope="session")
def panel_standard() -> Standard:
    return load_standard(STANDARDS_DIR / "panel.yaml")


# ---------------------------------------------------------------- the audit (tests/audit)


@pytest.fixture(scope="session")
def parts(tmp_path_factory) -> Path:
    """12 synthetic bracket parts at 96 px (4 tiles each for the 64 px tiny model), in
    class folders: ``good/`` and the defect classes."""
    from inspection.synth import synthesize

    root = tmp_path_factory.mktemp("synth")
    synthesize(root, n=24, seed=3, product="bracket", size=96, workers=1, progress=False)
    return root / "test"


def _images(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.png"))


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, parts) -> Path:
    """The tiny config with its anomaly channel raised, so that random weights find
    regions to measure, and an image threshold at the median part score of ``parts``,
    so that both verdicts occur: a real model directory, loaded like any other."""
    torch = pytest.importorskip("torch", reason="the audit runs a torch model (models extra)")

    from inspection.io import read_image
    from inspection.models import create_model, save_model
    from inspection.models.detector import TorchDetector

    torch.manual_seed(0)
    model = create_model("tiny")
    with torch.no_grad():
        model.seg_head.fine[4].bias[0] += 4.3
    detector = TorchDetector(model)
    scores = [float(detector.detect(read_image(p)).part_score[0]) for p in _images(parts)]
    model.metadata = {"thresholds": {"image": float(np.median(scores)), "pixel": 0.5, "audio": 0.5}}
    out = tmp_path_factory.mktemp("model") / "tiny-finds"
    return save_model(model, out, extra=model.metadata)


# ------------------------------------------------- a tiny feature normality model (fusion)


def tiny_normality_model(thresholds: dict[str, float], **config_changes):
    """An untrained PaDiM model at 64 px (identity covariance, logit shift 0.5) with
    ``thresholds`` (and ``config_changes``): fits nothing, so tests of what loads and
    fuses it stay fast."""
    import torch

    from inspection.models.normality import NormalityModel
    from inspection.models.registry import get_config

    config = get_config("padim-lite0").replace(
        name="padim-tiny-test", image_size=64, **config_changes
    )
    model = NormalityModel(config).eval()
    d = model.precision.shape[-1]
    model.precision.copy_(torch.eye(d).expand_as(model.precision) / d)
    model.shift.fill_(0.5)
    model.metadata = {"thresholds": dict(thresholds)}
    return model


def fuzz_settings():
    """Hypothesis settings of the property tests: a few hundred derandomised examples, no
    deadline (CI's loaded CPU) and no example database (nothing written beside the tests)."""
    from hypothesis import HealthCheck, settings

    return settings(
        max_examples=300,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
