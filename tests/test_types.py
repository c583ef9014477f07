"""The shared data model: what a Frame accepts as its scale."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from inspection.errors import UserError
from inspection.types import Frame

runner = CliRunner()

IMAGE = np.zeros((8, 8, 3), np.uint8)

BAD_SCALES = [float("nan"), float("inf"), float("-inf"), 0, 0.0, -1, -0.05, True, "0.1"]


@pytest.mark.parametrize("scale", BAD_SCALES, ids=repr)
def test_frame_refuses_a_scale_that_is_not_finite_and_positive(scale):
    with pytest.raises(UserError, match="mm_per_px must be a finite positive number"):
        Frame(IMAGE, mm_per_px=scale)


@pytest.mark.parametrize(("scale", "shown"), [(float("nan"), "nan"), (-1, "-1"), (0, "0")])
def test_frame_names_the_scale_as_given(scale, shown):
    with pytest.raises(UserError) as info:
        Frame(IMAGE, mm_per_px=np.float64(scale))
    assert str(info.value).endswith(f"(mm per pixel), not {shown}")


@pytest.mark.parametrize("scale", [None, 0.05, 1, np.float32(0.2), 1e-6])
def test_frame_accepts_no_scale_or_a_positive_one(scale):
    assert Frame(IMAGE, mm_per_px=scale).mm_per_px == scale


@pytest.mark.parametrize("value", ["nan", "-1", "0"])
def test_ask_refuses_a_bad_scale_with_one_line(tmp_path, value):
    """``ask --mm-per-px nan`` said PASS on a part with an 8 mm scratch: every size was
    NaN and met no limit. The scale is refused at the door, before any model loads."""
    import cv2

    from inspection.cli import app

    image = tmp_path / "part.png"
    cv2.imwrite(str(image), np.full((32, 32, 3), 128, np.uint8))
    result = runner.invoke(
        app,
        [
            "ask", "Does the part pass?", "--image", str(image),
            "--model", str(tmp_path / "no-model"), "--mm-per-px", value,
        ],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert f"mm_per_px must be a finite positive number (mm per pixel), not {value}" in (
        result.output
    )
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_an_inspection_result_comes_back_from_its_json(bracket_standard):
    """What a record or a spool holds as JSON is the result itself again (masks aside:
    they live in image files)."""
    import json

    from inspection.standards import apply_standard
    from inspection.types import BBox, Defect, InspectionResult

    defects = [
        Defect("scratch", {"length_mm": 12.5, "width_mm": 0.3}, BBox(3, 4, 40, 9), zone="A"),
        Defect("dent", {"area_mm2": 0.4, "depth_mm": 0.05}, BBox(50, 50, 56, 57), score=0.7),
    ]
    result = apply_standard(bracket_standard, defects, part_id="P-1")
    result = InspectionResult(
        **{**result.__dict__, "scores": {"image": 0.91}, "timings_ms": {"detect": 12.0}}
    )
    assert result.decisions  # the round trip carries something
    again = InspectionResult.from_json(json.loads(json.dumps(result.to_json())))
    assert again == result
