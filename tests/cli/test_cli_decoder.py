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


@pytest.mark.slow
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
    run_demo(tmp_path, "bracket", n=4, seed=3, console=console, model_dir=model_dir, normality=None)
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
        demo = _ok(["demo", "--n", "2", "--out", str(tmp_path / "demo"), "--normality", "none"])
        assert "report decoder tiny" in demo.output  # the tiny copy, not ./models/default
    finally:
        get_settings.cache_clear()


def _refused(args: list[str]) -> list[str]:
    """Run a command that must refuse its input: exit 2, no traceback; its lines."""
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("error: "), result.output
    return lines


def test_ask_refuses_a_malformed_standard_with_one_line_per_problem(model_dir, line, tmp_path):
    standard = tmp_path / "bad.yaml"
    text = (Path(__file__).parents[2] / "datasets" / "standards" / "bracket.yaml").read_text()
    standard.write_text(
        text.replace("id: QS-BRK-200", "id: 12").replace("revision: C", "revision: [C]")
    )
    image = next((line / "test").rglob("*.png"))
    lines = _refused(
        [
            "ask",
            "Pass?",
            "--image",
            str(image),
            "--model",
            str(model_dir),
            "--standard",
            str(standard),
        ]
    )
    assert len(lines) == 2  # one line per problem, each with the file and line
    assert lines[0] == f"error: {standard}:3: id: Input should be a valid string"
    assert lines[1] == f"{standard}:8: revision: Input should be a valid string"


@pytest.mark.parametrize(
    ("mistake", "message"),
    [
        (["--image", "/no/such/part.png"], "/no/such/part.png: no such file"),
        (["--audio", "/no/such/tap.wav"], "/no/such/tap.wav: no such file"),
        (["--standard", "no-such-product"], "no standard file"),
    ],
)
def test_ask_refuses_missing_inputs_in_one_line(model_dir, line, mistake, message):
    image = next((line / "test").rglob("*.png"))
    args = ["ask", "Pass?", "--image", str(image), "--model", str(model_dir), *mistake]
    lines = _refused(args)
    assert len(lines) == 1 and message in lines[0]


@pytest.mark.parametrize(
    ("question", "message"),
    [
        ("", "the question is empty"),
        ("  \t ", "the question is empty"),
        (
            "x" * 100_000,
            "the question is 100000 characters long; the most the decoder reads is 300",
        ),
    ],
)
def test_ask_refuses_an_empty_or_overlong_question(model_dir, line, question, message):
    image = next((line / "test").rglob("*.png"))
    lines = _refused(["ask", question, "--image", str(image), "--model", str(model_dir)])
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}")


def test_ask_prints_the_rules_verdict_over_a_disagreeing_answer(model_dir, line, monkeypatch):
    import inspection.decoder.decoding as decoding

    def generate(model, fused, prompts, grammars, max_new_tokens):
        # At most one of these verdicts is the rules': the answer always disagrees.
        text = json.dumps({"answer": "PASS, or REJECT, or REVIEW.", "language": "en"})
        return [model.encode([text])[0] + [model.tokenizer.eos_token_id]]

    monkeypatch.setattr(decoding, "generate", generate)
    image = next((line / "test").rglob("*.png"))
    result = _ok(
        ["ask", "Pass?", "--image", str(image), "--model", str(model_dir), "--mm-per-px", "0.9"]
    )
    verdict = result.output.split("rule engine: ")[1].split()[0]
    assert f"the rules say {verdict}" in result.output
    assert "the decoder's answer disagreed: PASS, or REJECT, or REVIEW." in result.output
    assert "disagreed with the rules, whose verdict stands" in result.output


def test_adapters_train_refuses_a_name_outside_the_rule_and_writes_nothing(model_dir):
    decoder = model_dir / "decoder"
    before = sorted(p.relative_to(decoder) for p in decoder.rglob("*"))
    lines = _refused(
        [
            "adapters", "train", "--decoder", str(decoder), "--name", "a b*名",
            "--standard", "bracket", "--steps", "1", "--batch-size", "2", "--eval-parts", "2",
        ]
    )  # fmt: skip
    assert lines == [
        "error: bad adapter name 'a b*名': use 1 to 64 ASCII letters, digits, '-' and '_', "
        "starting with a letter or digit, and not 'ACTIVE' or 'none' in any case"
    ]
    assert sorted(p.relative_to(decoder) for p in decoder.rglob("*")) == before


def test_decoder_evaluate_refuses_an_unknown_adapter(model_dir, tmp_path):
    args = ["decoder", "evaluate", "--decoder", str(model_dir / "decoder"), "--out", str(tmp_path)]
    lines = _refused([*args, "--n", "1", "--adapter", "no-such-line"])
    assert len(lines) == 1 and "no adapter 'no-such-line'" in lines[0]
