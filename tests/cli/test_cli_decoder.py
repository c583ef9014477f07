"""The decoder's commands end to end on tiny models: evaluate, adapters, ask, demo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing`:FutureWarning")
pytest.importorskip("torch", reason="the decoder runs torch models (install the models extra)")

from inspection.cli import app  # noqa: E402
from inspection.decoder.model import ReportDecoder  # noqa: E402
from inspection.demo import run_demo  # noqa: E402
from inspection.models import create_model, save_model  # noqa: E402
from inspection.synth import synthesize  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A tiny detection model with a tiny (random) report decoder beside it."""
    model = create_model("tiny")
    model.metadata = {"thresholds": {"image": 0.0, "pixel": 0.5, "audio": 0.5}}
    out = save_model(model, tmp_path_factory.mktemp("model") / "tiny", extra=model.metadata)
    ReportDecoder.create("tiny", seed=1).save(out / "decoder")
    return out


@pytest.fixture(scope="module")
def line(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "bracket"
    synthesize(out, n=8, seed=9, product="bracket", size=64, workers=1, progress=False)
    return out


def _ok(args: list[str]):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


def test_decoder_evaluate_on_held_out_parts(model_dir, tmp_path):
    decoder = str(model_dir / "decoder")
    _ok(["decoder", "evaluate", "--decoder", decoder, "--out", str(tmp_path), "--n", "6"])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["report_valid_json_rate"] == 1.0  # the grammar, even with random weights
    assert metrics["report_parts"] == 6
    assert 0.0 <= metrics["report_field_accuracy"] <= 1.0


def test_adapters_train_list_activate(model_dir, tmp_path):
    decoder = str(model_dir / "decoder")
    _ok(
        [
            "adapters", "train", "--decoder", decoder, "--name", "bracket-line",
            "--standard", "bracket", "--steps", "2", "--batch-size", "2",
            "--eval-parts", "4", "--activate",
        ]
    )  # fmt: skip
    listed = _ok(["adapters", "list", "--decoder", decoder]).output
    assert "bracket-line" in listed and "QS-BRK-200" in listed and "*" in listed
    _ok(["adapters", "activate", "none", "--decoder", decoder])
    assert "*" not in _ok(["adapters", "list", "--decoder", decoder]).output.split("┃")[-1]
    missing = runner.invoke(app, ["adapters", "activate", "nope", "--decoder", decoder])
    assert missing.exit_code == 2 and "no adapter" in missing.output


@pytest.mark.parametrize(
    ("question", "language"), [("Does the part pass?", "en"), ("零件合格吗？", "zh")]
)
def test_ask(model_dir, line, question, language):
    image = next((line / "test").rglob("*.png"))
    result = _ok(
        ["ask", question, "--image", str(image), "--model", str(model_dir), "--mm-per-px", "0.9"]
    )
    assert "rule engine:" in result.output and "answered in" in result.output


def test_ask_refuses_a_corrupt_image(model_dir, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    result = runner.invoke(app, ["ask", "Pass?", "--image", str(broken), "--model", str(model_dir)])
    assert result.exit_code == 2 and "error" in result.output


def test_evaluate_scores_reports_under_another_standard(model_dir, line, tmp_path):
    _ok(
        [
            "evaluate", "--model", str(model_dir), "--data", str(line), "--out", str(tmp_path),
            "--standard", "panel",
        ]
    )  # fmt: skip
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["report_standard"]["id"] == "QS-PNL-310"
    assert metrics["report_valid_json_rate"] == 1.0
    assert metrics["report_parts"] + metrics["report_parts_outside_standard"] == 4
    for key in ("rouge_l", "cross_check_agreement", "decoder_tokens_per_second"):
        assert key in metrics


def test_demo_prints_reports_beside_the_rules(model_dir, tmp_path):
    console = Console(record=True, width=160)
    run_demo(tmp_path, "bracket", n=4, seed=3, console=console, model_dir=model_dir)
    assert "report decoder beside the rule engine" in console.export_text()
    records = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    for record in records:
        check = record["cross_check"]
        assert record["report"] is not None
        if check["rule_verdict"] == "REJECT":
            assert check["final_verdict"] == "REJECT"  # never released by the decoder
        if not check["agreed"]:
            assert check["final_verdict"] != "PASS"


def test_ship_halves_the_weights_and_the_manifest_covers_them(model_dir, tmp_path):
    import shutil

    from inspection.models.card import verify_manifest, write_manifest

    bundle = tmp_path / "bundle"
    shutil.copytree(model_dir, bundle, ignore=shutil.ignore_patterns("decoder"))
    _ok(
        [
            "decoder",
            "ship",
            "--decoder",
            str(model_dir / "decoder"),
            "--to",
            str(bundle / "decoder"),
        ]
    )
    full = (model_dir / "decoder" / "model.safetensors").stat().st_size
    half = (bundle / "decoder" / "model.safetensors").stat().st_size
    assert half < 0.6 * full
    shipped = ReportDecoder.load(bundle / "decoder")
    assert next(shipped.parameters()).dtype.is_floating_point
    original = ReportDecoder.load(model_dir / "decoder").state_dict()
    for key, value in shipped.state_dict().items():
        assert value.dtype == original[key].dtype  # back to float32 on load
        assert (value - original[key]).abs().max() < 1e-2 * (1 + original[key].abs().max())

    manifest = write_manifest(bundle)
    assert "decoder/model.safetensors" in manifest.read_text()
    assert verify_manifest(bundle) == []
    (bundle / "decoder" / "model.safetensors").write_bytes(b"tampered")
    assert any("decoder/model.safetensors" in p for p in verify_manifest(bundle))


def test_commands_default_to_the_shipped_model_from_any_directory(
    model_dir, line, tmp_path, monkeypatch
):
    """Without --model / --decoder, `ask`, `adapters` and `demo` read INSPECTION_MODELS_DIR's
    default when they run, whatever the working directory (not ./models/default)."""
    import shutil

    from inspection.config import get_settings
    from inspection.decoder.commands import shipped_decoder_dir

    shutil.copytree(model_dir, tmp_path / "models" / "default")
    monkeypatch.setenv("INSPECTION_MODELS_DIR", str(tmp_path / "models"))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    get_settings.cache_clear()
    try:
        image = next((line / "test").rglob("*.png"))
        result = _ok(["ask", "Does the part pass?", "--image", str(image), "--mm-per-px", "0.9"])
        assert "rule engine:" in result.output
        assert shipped_decoder_dir() == tmp_path / "models" / "default" / "decoder"
        demo = _ok(["demo", "--n", "2", "--out", str(tmp_path / "demo")])
        assert "report decoder tiny" in demo.output  # the tiny copy, not ./models/default
    finally:
        get_settings.cache_clear()
