"""The guard band on the commands that decide parts: a bad file is one clear line before
any work, and a good one is recorded with every verdict."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from test_cli_review_band import tiny_model_and_lot  # noqa: F401  (a fixture)
from typer.testing import CliRunner

from inspection.cli import app
from inspection.io import read_image


def _commands(model, lot, out):
    return (
        ["evaluate", "--model", str(model), "--data", str(lot), "--out", str(out)],
        ["audit", str(lot), "--model", str(model), "--standard", "bracket", "--out", str(out)],
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "no such guard-band file"),
        ("{oops", "cannot read a guard band"),
        ('{"margins": {"scratch": {"length_mm": -1}}}', "negative"),
        ('{"margins": {}, "shading_depth": {"azimuth_deg": 9, "gain": -1}}', "must be above 0"),
        ('{"margins": {}, "prove_rejection": "dent"}', "not true, false or a list"),
    ],
)
def test_a_bad_guard_band_is_a_one_line_error(tmp_path, tiny_model_and_lot, text, message):  # noqa: F811
    model, lot = tiny_model_and_lot
    band = tmp_path / "band.json"
    if text is not None:
        band.write_text(text)
    out = tmp_path / "out"
    for args in _commands(model, lot, out):
        result = CliRunner().invoke(app, [*args, "--guard-band", str(band)])
        assert result.exit_code == 2, (args, result.output)
        assert result.output.count("error:") == 1 and "Traceback" not in result.output
        assert message in result.output
        assert not (out / "results.jsonl").exists() and not (out / "metrics.json").exists()


def test_an_audit_records_the_guard_band_it_decided_with(tmp_path, tiny_model_and_lot):  # noqa: F811
    model, lot = tiny_model_and_lot
    band = tmp_path / "band.json"
    band.write_text(json.dumps({"margins": {"scratch": {"length_mm": 0.3}}}))
    args = ["audit", str(lot), "--model", str(model), "--standard", "bracket"]
    result = CliRunner().invoke(
        app, [*args, "--out", str(tmp_path / "out"), "--guard-band", str(band)]
    )
    assert result.exit_code == 0, result.output
    rows = [
        json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    ]
    assert len(rows) == 3
    assert all("; guard band " in r["calibration_version"] for r in rows), rows[0]


def test_the_profiler_search_is_recorded_with_every_verdict(tmp_path, tiny_model_and_lot):  # noqa: F811
    """``--profiler-dents`` on evaluate and audit: recorded in the calibration version
    (a verdict says how it was reached) and in evaluate's metrics; on parts with no
    height map, a warning that nothing was searched."""
    model, lot = tiny_model_and_lot
    evaluated, audited = _commands(model, lot, tmp_path / "out")
    result = CliRunner().invoke(app, [*audited, "--profiler-dents", "--no-verify"])
    assert result.exit_code == 0, result.output
    # the lot has no height map: the search is recorded, and said to have found none
    assert "--profiler-dents: no part of" in result.output, result.output
    lines = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    assert all(json.loads(x)["calibration_version"].endswith("; profiler dents") for x in lines)
    data = tmp_path / "data" / "good"  # the lot as a dataset: one folder per class
    data.mkdir(parents=True)
    for image in sorted(lot.iterdir()):
        shutil.copy(image, data / image.name)
    evaluated[evaluated.index(str(lot))] = str(data.parent)
    evaluated[-1] = str(tmp_path / "eval")
    result = CliRunner().invoke(app, [*evaluated, "--profiler-dents", "--no-reports"])
    assert result.exit_code == 0, result.output
    assert "--profiler-dents: no part of" in result.output, result.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    thresholds = metrics["thresholds"]
    assert thresholds["profiler_dents"] is True and metrics["height_maps"] == 0
    assert thresholds["version"].endswith("; profiler dents")


def test_the_demo_searches_height_maps_only_with_a_profiler(tmp_path):
    args = ["demo", "--out", str(tmp_path / "d"), "--n", "1", "--model", "none"]
    result = CliRunner().invoke(app, [*args, "--profiler-dents"])
    assert result.exit_code == 2 and result.output.count("error:") == 1, result.output
    assert "--profiler-dents needs --profiler" in result.output


def _counts_beside(lot) -> None:
    """Each part's 3D camera range image beside it: counts of 1 µm, 5 µm of noise, a pit
    0.1 mm deep and 2 mm across (at 0.1 mm a pixel), and a point the camera missed (0)."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:64, :64]
    d2 = ((yy - 32) ** 2 + (xx - 32) ** 2) / 10**2
    pit = np.where(d2 <= 1, -100 * (1 - d2) ** 2, 0.0)
    for image in sorted(lot.glob("*.png")):
        counts = np.round(5000 + pit + rng.normal(0, 5, (64, 64))).astype(np.uint16)
        counts[0, 0] = 0
        assert cv2.imwrite(str(lot / f"{image.stem}.height.tiff"), counts)


def test_an_audit_reads_integer_height_maps_through_the_encoding_given(
    tmp_path,
    tiny_model_and_lot,  # noqa: F811
):
    """``--height-scale`` (with ``--height-offset`` and ``--height-invalid``): a 3D
    camera's counts read in mm, so the profiler's search finds each pit; without the
    scale every part is an error saying what is missing, and none passes."""
    model, lot = tiny_model_and_lot
    _counts_beside(lot)
    args = ["audit", str(lot), "--model", str(model), "--standard", "bracket", "--no-verify"]
    args += ["--mm-per-px", "0.1", "--profiler-dents"]
    result = CliRunner().invoke(app, [*args, "--height-offset", "1", "--out", str(tmp_path / "x")])
    assert (
        result.exit_code == 2
        and "--height-offset and --height-invalid need --height-scale" in result.output
    )
    for scale in ("0", "nan"):  # a scale no counts can be read by: one line, nothing written
        out = tmp_path / f"bad-{scale}"
        result = CliRunner().invoke(app, [*args, "--height-scale", scale, "--out", str(out)])
        assert result.exit_code == 2 and result.output.count("error:") == 1, result.output
        assert "z scale must be a finite non-zero mm" in result.output
        assert not (out / "results.jsonl").exists()
    encoded = ["--height-scale", "0.001", "--height-offset", "-5", "--height-invalid", "0"]
    db = tmp_path / "records.db"  # the audited parts recorded for the console, maps kept
    for out, extra in (("with", [*encoded, "--db", str(db)]), ("without", [])):
        result = CliRunner().invoke(app, [*args, *extra, "--out", str(tmp_path / out)])
        assert result.exit_code == 0, result.output
    rows = {
        out: [json.loads(x) for x in (tmp_path / out / "results.jsonl").read_text().splitlines()]
        for out in ("with", "without")
    }
    assert len(rows["with"]) == len(rows["without"]) == 3
    for row in rows["with"]:
        assert row["error"] is None, row
        dents = [d for d in row["defects"] if d["defect_class"] == "dent"]
        assert dents and dents[0]["measurements"]["depth_mm"] == pytest.approx(0.1, abs=0.02)
        overlay = read_image(tmp_path / "with" / row["overlay"])
        assert overlay.shape[:2] == (64, 128)  # the height map in false colour beside it
    for row in rows["without"]:
        assert "needs the profiler's z scale" in row["error"] and row["verdict"] != "PASS"
    from inspection.io import read_height_map
    from inspection.records import RecordStore
    from inspection.records.evidence import frame_height_map

    with RecordStore(str(db)) as store:
        for row in rows["with"]:
            record = store.get(row["part_id"], "audit")
            files = [store.evidence.find(digest) for digest in record.evidence]
            height = read_height_map(frame_height_map(files, 0))  # in mm, as decided on
            assert np.isnan(height[0, 0]) and height[32, 32] == pytest.approx(-0.1, abs=0.02)


def test_the_demo_with_a_profiler_shows_each_parts_height_map_beside_it(tmp_path):
    import base64
    import re

    import cv2
    import numpy as np

    out = tmp_path / "d"
    args = ["demo", "--out", str(out), "--n", "2", "--model", "none", "--profiler"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    page = (out / "report.html").read_text()
    cards = re.findall(r"<img[^>]+src='data:image/png;base64,([^']+)'", page)
    assert cards, "no part pictures on the page"
    for data in cards[-2:]:  # the parts' pictures come last, after the figures
        picture = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
        assert picture.shape[1] == 2 * picture.shape[0]  # photograph | height map
