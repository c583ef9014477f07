"""Shared fixtures: repository paths and the example standards."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspection.standards import Standard, load_standard

REPO_ROOT = Path(__file__).resolve().parents[1]
STANDARDS_DIR = REPO_ROOT / "datasets" / "standards"


@pytest.fixture(scope="session")
def bracket_standard() -> Standard:
    return load_standard(STANDARDS_DIR / "bracket.yaml")


@pytest.fixture(scope="session")
def panel_standard() -> Standard:
    return load_standard(STANDARDS_DIR / "panel.yaml")
