"""The Ray Data engine gives the local engine's results (a local Ray on 127.0.0.1)."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace

import pytest
from audit_helpers import MM_PER_PX, STANDARD, assert_same_results, by_source

from inspection.audit import AuditOptions, audit

pytest.importorskip("ray", reason="the Ray engine needs the ray extra (pip install '.[ray]')")


@pytest.mark.slow
def test_ray_and_local_engines_give_identical_results(tmp_path, parts, model_dir, monkeypatch):
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    lot = tmp_path / "lot"
    shutil.copytree(parts, lot)
    (lot / "zero.png").write_bytes(b"")
    os.symlink("/etc/hostname", lot / "escape.png")
    options = AuditOptions(batch_size=3, workers=1, mm_per_px=MM_PER_PX, progress=False)
    local = audit(lot, tmp_path / "local", model_dir, STANDARD, options)
    on_ray = audit(lot, tmp_path / "ray", model_dir, STANDARD, replace(options, engine="ray"))
    a, b = by_source(tmp_path / "local"), by_source(tmp_path / "ray")
    assert len(a) == local.parts == on_ray.parts == len(list(parts.rglob("*.png"))) + 2
    assert_same_results(a, b)
    assert on_ray.verdicts == local.verdicts and on_ray.unreadable == local.unreadable == 2
    again = audit(lot, tmp_path / "ray", model_dir, STANDARD, replace(options, engine="ray"))
    assert (again.new, again.skipped) == (0, local.parts)  # resumed on Ray too
