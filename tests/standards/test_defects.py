"""Reading --defects JSON, and `standards apply --defects` on bad and doubtful input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inspection.errors import UserError
from inspection.standards import DefectsError, parse_defects, read_defects
from inspection.types import Defect

runner = CliRunner()


def _write(tmp_path: Path, text: str, name: str = "d.json") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_defects_in_order_with_optional_fields(tmp_path):
    path = _write(
        tmp_path,
        json.dumps(
            [
                {"defect_class": "scratch", "attributes": {"length_mm": 4, "width_mm": 0.5}},
                {"defect_class": "crack", "zone": "C"},
                {"defect_class": "dent", "attributes": {}, "zone": None, "score": 0.7},
            ]
        ),
    )
    defects = read_defects(path)
    assert defects == [
        Defect("scratch", {"length_mm": 4.0, "width_mm": 0.5}),
        Defect("crack", {}, zone="C"),
        Defect("dent", {}),
    ]
    assert all(isinstance(v, float) for v in defects[0].attributes.values())


def test_nan_infinity_and_negative_values_are_read_not_refused():
    # The rule engine sends them to REVIEW; the reader only checks the shape.
    (defect,) = parse_defects(
        '[{"defect_class": "scratch", "attributes": '
        '{"length_mm": NaN, "width_mm": -Infinity, "area_mm2": -2, "depth_mm": 1e999}}]'
    )
    values = defect.attributes
    assert math.isnan(values["length_mm"]) and values["width_mm"] == -math.inf
    assert values["area_mm2"] == -2.0 and values["depth_mm"] == math.inf


# (file text, fragment of the message)
MALFORMED = [
    ('[{"defect_class": "scratch",\n  "zone": "A"', "d.json:2:14: invalid JSON"),
    ("", "d.json:1:1: invalid JSON"),
    ('{"defect_class": "scratch"}', "expected a JSON list of defects, got an object"),
    ('"scratch"', "got a string 'scratch'"),
    ("[1]", "defect [0]: expected an object"),
    ('[{"defect_class": "crack"}, []]', "defect [1]: expected an object"),
    ('[{"attributes": {}}]', "defect [0]: defect_class is missing"),
    ('[{"defect_class": 3}]', "defect_class must be a non-empty string, got a number 3"),
    ('[{"defect_class": null}]', "defect_class must be a non-empty string, got null"),
    ('[{"defect_class": ""}]', "defect_class must be a non-empty string"),
    ('[{"defect_class": "dent", "attributes": [1]}]', "attributes must be an object"),
    ('[{"defect_class": "dent", "attributes": null}]', "attributes must be an object"),
    ('[{"defect_class": "dent", "attributes": {"depth_mm": "0.4"}}]', "attributes.depth_mm"),
    ('[{"defect_class": "dent", "attributes": {"depth_mm": true}}]', "got a boolean true"),
    ('[{"defect_class": "dent", "attributes": {"depth_mm": null}}]', "must be a number, got null"),
    ('[{"defect_class": "dent", "attributes": {"d": {"x": 1}}}]', "must be a number"),
    ('[{"defect_class": "dent", "zone": 1}]', "zone must be a string or null"),
    ('[{"defect_class": "dent", "zone": ["A"]}]', "zone must be a string or null, got a list"),
    ('[{"defect_class": "dent", "zon": "A"}]', "unknown key 'zon'"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('[{"defect_class": "dent", "attributes": {"d": ' + "9" * 5000 + "}}]", "invalid JSON"),
]


@pytest.mark.parametrize(("text", "message"), MALFORMED, ids=[m for _, m in MALFORMED])
def test_malformed_defects_are_refused_naming_file_and_problem(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(DefectsError, match=r"d\.json") as info:
        read_defects(path)
    assert message in str(info.value)
    assert isinstance(info.value, UserError)


def test_unreadable_defects_files(tmp_path):
    with pytest.raises(DefectsError, match=r"absent\.json: cannot read"):
        read_defects(tmp_path / "absent.json")
    with pytest.raises(DefectsError, match="cannot read"):
        read_defects(tmp_path)  # a folder
    (tmp_path / "latin1.json").write_bytes(b'[{"defect_class": "\xe9"}]')
    with pytest.raises(DefectsError, match=r"latin1\.json: not UTF-8"):
        read_defects(tmp_path / "latin1.json")


def test_oversized_defects_file_is_refused(tmp_path, monkeypatch):
    import inspection.standards.defects as module

    monkeypatch.setattr(module, "MAX_DEFECTS_BYTES", 1024)
    path = _write(tmp_path, json.dumps([{"defect_class": "dent"}] * 100))
    with pytest.raises(DefectsError, match="larger than"):
        read_defects(path)


# --- the command ---


def _apply(*args: str):
    from inspection.cli import app

    return runner.invoke(app, ["standards", "apply", *args])


def test_apply_refuses_malformed_defects_with_one_line_and_exit_2(tmp_path):
    path = _write(tmp_path, '[{"defect_class": "scratch", "attributes": {"length_mm": "8"}}]')
    result = _apply("bracket", "--defects", str(path))
    assert result.exit_code == 2, result.output
    assert "d.json: defect [0]: attributes.length_mm must be a number" in result.output
    assert "Traceback" not in result.output
    broken = _write(tmp_path, '[{"defect_class": "scratch"', "broken.json")
    result = _apply("bracket", "--defects", str(broken))
    assert result.exit_code == 2 and "broken.json:1:28: invalid JSON" in result.output


@pytest.mark.parametrize(
    ("defect", "reason"),
    [
        ({"attributes": {"length_mm": float("nan")}, "zone": "A"}, "length_mm=nan"),
        ({"attributes": {"length_mm": -8.0}, "zone": "A"}, "length_mm=-8"),
        ({"attributes": {"length_mm": 8.0}}, "zone unknown"),
        ({"attributes": {"length_mm": 0.5}, "zone": "Q"}, "zone 'Q' is not a zone"),
    ],
)
def test_apply_sends_doubtful_defects_to_review_with_the_reason(tmp_path, defect, reason):
    # Before: PASS for each (NaN and negative sizes meet no limit; no zone or an
    # undeclared one matched no zone's clause).
    path = _write(tmp_path, json.dumps([{"defect_class": "scratch", **defect}]))
    out = tmp_path / "r.json"
    result = _apply("bracket", "--defects", str(path), "--json", str(out))
    assert result.exit_code == 0, result.output
    (record,) = json.loads(out.read_text())
    assert record["verdict"] == "REVIEW"
    assert reason in record["decisions"][0]["reason"]
    assert reason in result.output  # the reason is printed under the table
