"""The command line, run in-process with typer's runner."""

from __future__ import annotations

import json

import pytest
from conftest import STANDARDS_DIR
from typer.testing import CliRunner

from inspection.cli import app

runner = CliRunner()


def test_standards_validate_ok_and_broken(tmp_path):
    ok = runner.invoke(app, ["standards", "validate", *map(str, STANDARDS_DIR.glob("*.yaml"))])
    assert ok.exit_code == 0, ok.output
    assert "QS-BRK-200" in ok.output
    broken = tmp_path / "b.yaml"
    text = (STANDARDS_DIR / "bracket.yaml").read_text(encoding="utf-8")
    broken.write_text(text.replace("severity: critical", "severity: fatal", 1), encoding="utf-8")
    bad = runner.invoke(app, ["standards", "validate", str(broken)])
    assert bad.exit_code == 1
    assert "b.yaml:" in bad.output and "severity" in bad.output


def test_standards_render_by_product_name():
    result = runner.invoke(app, ["standards", "render", "tile", "--lang", "zh"])
    assert result.exit_code == 0
    assert "陶瓷绝缘片" in result.output and "[T10]" in result.output


def test_standards_apply_defects_json(tmp_path):
    defects = tmp_path / "d.json"
    defects.write_text(
        json.dumps(
            [
                {"defect_class": "scratch", "attributes": {"length_mm": 4}, "zone": "A"},
                {"defect_class": "crack", "attributes": {}, "zone": "C"},
            ]
        )
    )
    out = tmp_path / "r.json"
    result = runner.invoke(
        app, ["standards", "apply", "panel", "--defects", str(defects), "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    (record,) = json.loads(out.read_text())
    assert record["verdict"] == "REJECT"
    assert record["clauses"] == ["P-3.1", "P-6.1"]


def test_synth_check_and_apply_pipeline(tmp_path):
    data = tmp_path / "line"
    made = runner.invoke(
        app,
        [
            "synth",
            "--out",
            str(data),
            "--n",
            "24",
            "--seed",
            "3",
            "--product",
            "panel",
            "--workers",
            "1",
        ],
    )
    assert made.exit_code == 0, made.output
    checked = runner.invoke(
        app, ["datasets", "check", str(data), "--json", str(tmp_path / "c.json")]
    )
    assert checked.exit_code == 0, checked.output
    assert json.loads((tmp_path / "c.json").read_text())["n_samples"] == 24
    out = tmp_path / "verdicts.json"
    applied = runner.invoke(
        app, ["standards", "apply", "panel", "--manifest", str(data), "--json", str(out)]
    )
    assert applied.exit_code == 0, applied.output
    records = json.loads(out.read_text())
    assert len(records) == 24
    # Every part with a crack or a missing feature is rejected under the panel standard.
    manifest = [json.loads(line) for line in (data / "manifest.jsonl").read_text().splitlines()]
    for row, record in zip(manifest, records, strict=True):
        if row["label"] in ("crack", "missing_feature"):
            assert record["verdict"] == "REJECT", (row["part_id"], record)
        if row["label"] == "good":
            assert record["verdict"] == "PASS"


def test_synth_draws_the_classes_asked_for_and_names_a_wrong_one(tmp_path):
    args = ["synth", "--n", "3", "--workers", "1", "--train-ratio", "0", "--defect-ratio", "1"]
    made = runner.invoke(app, [*args, "--out", str(tmp_path / "d"), "--class", "dent"])
    assert made.exit_code == 0, made.output
    lines = (tmp_path / "d" / "manifest.jsonl").read_text().splitlines()
    assert [json.loads(x)["label"] for x in lines] == ["dent"] * 3
    wrong = runner.invoke(app, [*args, "--out", str(tmp_path / "w"), "--class", "dnet"])
    assert wrong.exit_code == 2 and "unknown defect class 'dnet'" in wrong.output
    assert not (tmp_path / "w").exists()


def test_datasets_check_exits_1_on_broken_file(tmp_path):
    root = tmp_path / "ds"
    (root / "good").mkdir(parents=True)
    (root / "good" / "a.png").write_bytes(b"broken")
    result = runner.invoke(app, ["datasets", "check", str(root)])
    assert result.exit_code == 1


def test_unknown_product_and_bad_options(tmp_path):
    result = runner.invoke(app, ["synth", "--out", str(tmp_path / "x"), "--product", "spoon"])
    assert result.exit_code == 2
    assert "spoon" in result.output
    result = runner.invoke(app, ["standards", "apply", "bracket"])
    assert result.exit_code == 2


def test_train_refuses_a_max_side_under_the_tile(tmp_path):
    data = tmp_path / "line"
    assert (
        runner.invoke(app, ["synth", "--out", str(data), "--n", "6", "--size", "64"]).exit_code == 0
    )
    args = ["train", "--data", str(data), "--out", str(tmp_path / "m"), "--config", "tiny"]
    result = runner.invoke(app, [*args, "--max-side", "32", "--steps", "1"])
    assert result.exit_code == 2, result.output
    assert "max_side 32 is under the model's tile (64 px)" in result.output


def test_train_keeps_the_traceback_of_a_bug(tmp_path, monkeypatch):
    """User errors print one line; any other exception is a bug and is not swallowed."""
    import inspection.train.trainer as trainer

    def buggy(options, begun=None):
        raise ValueError("index out of range in some helper")

    monkeypatch.setattr(trainer, "train", buggy)
    result = runner.invoke(app, ["train", "--data", str(tmp_path), "--out", str(tmp_path / "m")])
    assert isinstance(result.exception, ValueError) and result.exit_code == 1


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from inspection.models import create_model, save_model

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny")
    save_model(create_model("tiny"), folder, extra={"thresholds": {"image": 0.7}})
    return folder


@pytest.mark.slow
def test_export_writes_a_checked_graph_the_runtime_loads(tiny_model_dir, tmp_path):
    from inspection.export.runtime import OnnxDetector
    from inspection.models.checkpoint import file_hash, read_checkpoint

    out = tmp_path / "edge" / "tiny.onnx"
    result = runner.invoke(app, ["export", "--model", str(tiny_model_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "parity" in result.output and "image 0.7" in result.output
    assert f"{file_hash(out, length=64)}  {out}" in result.output
    detector = OnnxDetector(out)
    assert detector.version == read_checkpoint(tiny_model_dir).model_version
    assert detector.with_audio and detector.metadata["thresholds"] == {"image": 0.7}
    # no staging left; the graph's SHA-256 beside it
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny.onnx", "tiny.onnx.sha256"]
    image_only = tmp_path / "image.onnx"
    args = ["export", "--model", str(tiny_model_dir), "--out", str(image_only), "--no-audio"]
    assert runner.invoke(app, args).exit_code == 0
    assert OnnxDetector(image_only).inputs == ["image"]


@pytest.mark.slow
def test_export_keeps_the_old_graph_when_the_check_fails(tiny_model_dir, tmp_path, monkeypatch):
    import inspection.export.onnx as onnx_export

    out = tmp_path / "tiny.onnx"
    out.write_bytes(b"the graph on the device")
    failing = onnx_export.ParityReport(max_abs_diff={"maps": 0.5, "part_logit": 0.0}, batch=2)
    monkeypatch.setattr(onnx_export, "check_parity", lambda model, path: failing)
    result = runner.invoke(app, ["export", "--model", str(tiny_model_dir), "--out", str(out)])
    assert result.exit_code == 2
    assert "|maps| off by 5.00e-01" in result.output and "not written" in result.output
    assert out.read_bytes() == b"the graph on the device"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.onnx"]


def test_export_refuses_bad_paths(tmp_path):
    result = runner.invoke(app, ["export", "--model", str(tmp_path), "--out", "x.onnx"])
    assert result.exit_code == 2 and "no such checkpoint" in result.output
    result = runner.invoke(app, ["export", "--out", str(tmp_path / "x.pt")])
    assert result.exit_code == 2 and "must be a .onnx file" in result.output


def test_datasets_merge_refuses_what_it_cannot_list_and_writes_nothing(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["datasets", "merge", str(empty), "--out", str(tmp_path / "m")])
    assert result.exit_code == 2
    assert "empty" in result.output
    assert not (tmp_path / "m").exists()  # nothing half-written


def test_package_refuses_a_folder_without_metrics_before_writing(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    good = tmp_path / "eval"
    good.mkdir()
    (good / "metrics.json").write_text(json.dumps({"image_auroc": 0.9}))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metrics.json").write_text("[1, 2")
    for bad in (tmp_path / "missing", broken):
        args = ["package", "--model", str(model), "--eval", str(good), "--command", "x"]
        result = runner.invoke(app, [*args, "--product-eval", str(bad)])
        assert result.exit_code == 2, result.output
        assert "metrics.json" in result.output
        assert sorted(p.name for p in model.iterdir()) == ["config.json"]  # nothing written


def test_package_manifest_only_lets_a_model_with_new_weights_load_before_it_is_measured(
    tmp_path,
):
    """`make model` copies fresh weights over the shipped model's, then evaluates them: the
    old manifest refused them until the card was written, which needs the evaluation."""
    pytest.importorskip("torch", reason="a model is built")
    from inspection.errors import ModelError
    from inspection.models import create_model, load_model, save_model
    from inspection.models.card import write_manifest

    model = save_model(create_model("tiny"), tmp_path / "model", extra={"thresholds": {}})
    write_manifest(model)
    fresh = save_model(create_model("tiny"), tmp_path / "fresh", extra={"thresholds": {}})
    for name in ("model.safetensors", "config.json"):
        (model / name).write_bytes((fresh / name).read_bytes())
    with pytest.raises(ModelError, match=r"differs from manifest\.json"):
        load_model(model)
    card = runner.invoke(app, ["package", "--model", str(model)])  # a card needs measuring
    assert card.exit_code == 2 and "--eval and --command" in card.output, card.output
    assert not (model / "MODEL_CARD.md").exists()
    result = runner.invoke(app, ["package", "--model", str(model), "--manifest-only"])
    assert result.exit_code == 0, result.output
    assert load_model(model).model_version == load_model(fresh).model_version
    assert not (model / "MODEL_CARD.md").exists()


def _commands(group, path=()):
    for name, command in getattr(group, "commands", {}).items():
        yield (*path, name), command
        yield from _commands(command, (*path, name))


def test_every_command_lists_with_a_one_line_summary():
    """A group's help lists each command by its help's first paragraph, line breaks kept
    (typer's rich mode): a summary wrapped in its docstring shows as two ragged lines."""
    import inspect

    import typer.main

    ragged = [
        " ".join(path)
        for path, command in _commands(typer.main.get_command(app))
        if "\n" in inspect.cleandoc(command.short_help or command.help or "").split("\n\n")[0]
    ]
    assert ragged == []
