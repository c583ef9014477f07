"""Inspection results and images for the records tests."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sqlalchemy", reason="records need the line extra (sqlalchemy, alembic)")
pytest.importorskip("alembic", reason="records need the line extra (sqlalchemy, alembic)")

from inspection.types import (
    Action,
    BBox,
    Defect,
    DefectDecision,
    InspectionResult,
    Severity,
    Verdict,
)


def result(part_id: str, verdict: Verdict = Verdict.PASS, defects: int = 0) -> InspectionResult:
    """A decision with every version filled in, and ``defects`` scratches."""
    decisions = tuple(
        DefectDecision(
            defect=Defect(
                "scratch",
                {"length_mm": 2.0 + i, "width_mm": 0.1},
                BBox(i, 2 * i, i + 5, 2 * i + 7),
                zone="A",
                score=0.75,
                frame_index=i,
            ),
            zone="A",
            severity=Severity.MAJOR,
            action=Action.REWORK,
            clause_id=f"4.1.{i}",
            reason=f"scratch {2 + i} mm over 1.5 mm",
        )
        for i in range(defects)
    )
    action = {Verdict.PASS: Action.ACCEPT, Verdict.REVIEW: Action.REVIEW}.get(
        verdict, Action.REWORK
    )
    return InspectionResult(
        part_id=part_id,
        verdict=verdict,
        severity=Severity.MAJOR if defects else None,
        action=action,
        decisions=decisions,
        reasons=tuple(d.reason for d in decisions),
        standard_id="bracket",
        standard_version="1.2",
        model_version="tiny-abc123",
        calibration_version="cal-7",
        scores={"image": 0.25 + 0.1 * defects},
        timings_ms={"model": 4.5, "rules": 0.3},
        path="edge",
    )


def image(seed: int, size: int = 16) -> np.ndarray:
    """A small RGB image, different per seed."""
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
