"""Model integrity: every load checks its files against their recorded SHA-256, and a
model that cannot be loaded is a ModelError naming the file (one line from the CLI)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

torch = pytest.importorskip("torch")

import inspection.models.card as card  # noqa: E402
import inspection.models.checkpoint as checkpoint  # noqa: E402
from inspection.cli import app  # noqa: E402
from inspection.errors import ModelError  # noqa: E402
from inspection.io import write_image  # noqa: E402
from inspection.models import create_model, load_model, read_checkpoint, save_model  # noqa: E402
from inspection.models.card import verify_manifest, write_manifest  # noqa: E402
from inspection.models.registry import get_config, load_config  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED = REPO_ROOT / "models" / "default"
FLIP = 4096  # bytes flipped in the middle of a file, as in the issue

runner = CliRunner()


def flip_middle(path: Path, n: int = FLIP) -> None:
    """Invert ``n`` bytes in the middle of ``path`` (size and header untouched)."""
    data = bytearray(path.read_bytes())
    start = len(data) // 2 - n // 2
    data[start : start + n] = bytes(b ^ 0xFF for b in data[start : start + n])
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny model as training leaves it: weights + config.json with their SHA-256."""
    torch.manual_seed(0)
    model = create_model("tiny")
    return save_model(model, tmp_path_factory.mktemp("trained") / "tiny", extra={"a": 1})


@pytest.fixture
def copy(trained, tmp_path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "copy"))


def test_flipped_weight_bytes_are_refused_naming_the_file(copy):
    original = load_model(copy).model_version
    flip_middle(copy / "model.safetensors")
    with pytest.raises(ModelError, match=r"model\.safetensors: SHA-256 differs from config\.json"):
        load_model(copy)
    with pytest.raises(ModelError, match="corrupt or modified"):
        read_checkpoint(copy)
    unchecked = load_model(copy, verify=False)  # development: loads, and is another model
    assert unchecked.model_version != original


def test_the_weights_are_hashed_once_per_load(trained, monkeypatch):
    """read_checkpoint's hash (the model version) is the one verified: not hashed twice."""
    hashed, real = [], card.sha256

    def counting(path):
        hashed.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(card, "sha256", counting)
    monkeypatch.setattr(checkpoint, "sha256", counting)
    load_model(trained)
    assert hashed.count("model.safetensors") == 1


def test_a_packaged_model_is_checked_against_its_manifest(copy):
    write_manifest(copy)
    assert load_model(copy).metadata == {"a": 1}
    (copy / "MODEL_CARD.md").write_text("edited by hand\n")  # not read by the model: loads
    load_model(copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "model_version": "x"}))
    with pytest.raises(ModelError, match=r"config\.json: SHA-256 differs from manifest\.json"):
        load_model(copy)
    load_model(copy, verify=False)


def test_a_manifest_that_does_not_parse_is_refused(copy):
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(ModelError, match=r"manifest\.json: not a readable model manifest"):
        load_model(copy)


def test_saving_into_a_packaged_folder_drops_its_stale_manifest(copy):
    """`make model` retrains into models/default: its old manifest must not refuse the
    new weights (``inspection package`` writes a new one)."""
    write_manifest(copy)
    torch.manual_seed(1)
    model = create_model("tiny")
    save_model(model, copy)
    assert not (copy / "manifest.json").exists()
    assert load_model(copy).model_version == model.model_version


def test_weights_without_a_recorded_hash_are_refused_unless_unchecked(copy):
    (copy / "config.json").unlink()
    with pytest.raises(ModelError, match="no SHA-256 recorded"):
        load_model(copy)
    assert load_model(copy, verify=False).metadata == {"a": 1}


@pytest.mark.parametrize("where", ["empty", "missing"])
def test_a_folder_without_a_model_is_a_model_error(tmp_path, where):
    path = tmp_path / where
    if where == "empty":
        path.mkdir()
    with pytest.raises(ModelError, match=f"{where}: no such checkpoint"):
        load_model(path)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_an_unreadable_safetensors_file_is_a_model_error(copy, damage):
    weights = copy / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(
        {"truncated": data[: len(data) // 3], "garbage": b"\x07" * 64}.get(damage, b"")
    )
    with pytest.raises(ModelError, match=r"model\.safetensors"):
        load_model(copy)  # differs from its record
    with pytest.raises(ModelError, match=r"model\.safetensors: not a readable safetensors file"):
        load_model(copy, verify=False)  # the library's own error, as a message


def test_a_model_config_yaml_that_does_not_parse_or_has_wrong_fields(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nimage_size: [64\n")
    with pytest.raises(ModelError, match=r"bad\.yaml: not a readable YAML model config"):
        load_config(bad)
    with pytest.raises(ModelError, match=r"bad\.yaml"):
        get_config(str(bad))  # the path `train --config x.yaml` takes
    fields = tmp_path / "fields.yaml"
    fields.write_text("image_size: 64\ncolour: red\n")
    with pytest.raises(ModelError, match=r"fields\.yaml: unknown model config fields: colour"):
        load_config(fields)
    typed = tmp_path / "typed.yaml"
    typed.write_text("image_size: large\n")
    with pytest.raises(ModelError, match=r"typed\.yaml"):
        load_config(typed)
    listed = tmp_path / "listed.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(ModelError, match=r"listed\.yaml: a model config is a mapping"):
        load_config(listed)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ModelError, match=r"binary\.yaml"):
        load_config(binary)
    with pytest.raises(KeyError, match="no-such-model"):  # unknown names stay KeyError
        get_config("no-such-model")


# -- the report decoder -----------------------------------------------------------------


@pytest.fixture(scope="module")
def packaged(trained, tmp_path_factory) -> Path:
    """The tiny model with a tiny decoder inside, packaged (manifest.json)."""
    from inspection.decoder.model import ReportDecoder

    folder = Path(shutil.copytree(trained, tmp_path_factory.mktemp("packaged") / "model"))
    ReportDecoder.create("tiny", seed=1).save(folder / "decoder")
    write_manifest(folder)
    return folder


@pytest.fixture
def packaged_copy(packaged, tmp_path) -> Path:
    return Path(shutil.copytree(packaged, tmp_path / "model"))


def test_a_decoder_inside_a_packaged_model_is_checked_against_its_manifest(packaged_copy):
    from inspection.decoder.lora import load_decoder

    load_decoder(packaged_copy / "decoder")
    flip_middle(packaged_copy / "decoder" / "model.safetensors")
    with pytest.raises(ModelError, match=r"decoder/model\.safetensors: SHA-256 differs"):
        load_decoder(packaged_copy / "decoder")
    load_decoder(packaged_copy / "decoder", verify=False)
    load_model(packaged_copy)  # the detection model's own files are intact


def test_the_active_adapter_setting_is_not_a_model_file(packaged_copy):
    """`inspection adapters activate` rewrites adapters/ACTIVE in a shipped decoder."""
    from inspection.decoder.model import ReportDecoder

    active = packaged_copy / "decoder" / "adapters" / "ACTIVE"
    active.parent.mkdir()
    active.write_text("\n")
    write_manifest(packaged_copy)
    active.write_text("another\n")
    ReportDecoder.load(packaged_copy / "decoder")
    assert any("ACTIVE" in p for p in verify_manifest(packaged_copy))  # still listed


def test_a_missing_decoder_folder_is_a_model_error(tmp_path):
    from inspection.decoder.lora import load_decoder

    with pytest.raises(ModelError, match="nowhere: not a report decoder directory"):
        load_decoder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match=r"empty: not a report decoder directory \(no decoder"):
        load_decoder(tmp_path / "empty")


def _write(text: str):
    return lambda path: path.write_text(text)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


@pytest.mark.parametrize(
    ("name", "damage", "message"),
    [
        ("decoder.json", _write("{not json"), r"decoder\.json: not valid JSON"),
        ("decoder.json", _write("[]"), r"decoder\.json: not a report decoder config"),
        (
            "decoder.json",
            _write('{"format": "inspection.report-decoder/1", "config": {"name": "x", "y": 1}}'),
            r"decoder\.json: unusable decoder config",
        ),
        ("lm/config.json", _write("{not json"), r"lm: unusable LM config"),
        ("lm/config.json", _write('{"model_type": "nonexistent"}'), r"lm: unusable LM config"),
        ("tokenizer/tokenizer.json", _write("{not json"), r"tokenizer: unusable tokenizer"),
        ("tokenizer/tokenizer.json", _write("{}"), r"tokenizer: unusable tokenizer"),
        ("model.safetensors", _truncate, r"model\.safetensors: not a readable safetensors"),
    ],
)
def test_a_corrupt_decoder_file_is_a_model_error(packaged_copy, name, damage, message):
    from inspection.decoder.lora import load_decoder

    decoder = packaged_copy / "decoder"
    damage(decoder / name)
    with pytest.raises(ModelError, match=rf"decoder/{name}: SHA-256 differs"):
        load_decoder(decoder)
    with pytest.raises(ModelError, match=message):
        load_decoder(decoder, verify=False)  # what a decoder outside a package meets


# -- the shipped model --------------------------------------------------------------------

needs_shipped = pytest.mark.skipif(
    not (SHIPPED / "manifest.json").is_file(), reason="no shipped models/default here"
)


@needs_shipped
def test_the_shipped_model_matches_its_manifest():
    assert verify_manifest(SHIPPED) == []


@needs_shipped
def test_a_shipped_model_with_flipped_weight_bytes_is_refused(tmp_path):
    from inspection.decoder.lora import load_decoder

    copy = Path(shutil.copytree(SHIPPED, tmp_path / "default"))
    good = load_model(copy)
    flip_middle(copy / "model.safetensors")
    with pytest.raises(ModelError, match=r"default/model\.safetensors: SHA-256 differs"):
        load_model(copy)
    flipped = load_model(copy, verify=False)
    assert flipped.model_version != good.model_version
    load_decoder(copy / "decoder")  # the decoder's own files are intact


# -- the command line ---------------------------------------------------------------------


def _one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1, result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.output, result.output


@pytest.fixture(scope="module")
def part_png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("part") / "part.png"
    write_image(path, np.full((64, 64, 3), 128, np.uint8))
    return path


@pytest.mark.parametrize("where", ["empty", "missing"])
def test_commands_given_a_folder_without_a_model_print_one_line(tmp_path, part_png, where):
    model = tmp_path / where
    if where == "empty":
        model.mkdir()
    out = str(tmp_path / "out")
    data = str(tmp_path)
    for args in (
        ["evaluate", "--model", str(model), "--data", data, "--out", out],
        ["ask", "what is wrong?", "--image", str(part_png), "--model", str(model)],
        ["export", "--model", str(model), "--out", str(tmp_path / "x.onnx")],
        ["demo", "--model", str(model), "--out", out, "--n", "1"],
    ):
        _one_line_error(runner.invoke(app, args), str(model))


def test_evaluate_refuses_a_modified_model_and_runs_it_with_no_verify(copy, tmp_path):
    from inspection.synth import synthesize

    data = tmp_path / "line"
    synthesize(data, n=4, seed=9, product="bracket", size=64, workers=1, progress=False)
    torch.manual_seed(2)  # other weights in place of the recorded ones (flipped bytes
    other = save_model(create_model("tiny"), tmp_path / "other")  # could give NaN)
    shutil.copy(other / "model.safetensors", copy / "model.safetensors")
    args = ["evaluate", "--model", str(copy), "--data", str(data), "--split", "all"]
    refused = runner.invoke(app, [*args, "--out", str(tmp_path / "a")])
    _one_line_error(refused, "model.safetensors", "corrupt or modified", "--no-verify")
    assert not (tmp_path / "a").exists()
    unchecked = runner.invoke(app, [*args, "--out", str(tmp_path / "b"), "--no-verify"])
    assert unchecked.exit_code == 0, unchecked.output
    assert (tmp_path / "b" / "metrics.json").is_file()


@needs_shipped
@pytest.mark.skipif(not (REPO_ROOT / ".git").exists(), reason="not a git checkout")
def test_the_repository_ships_only_the_files_of_the_model_manifest():
    """A stray file committed into models/default (an adapter's log left by a refused
    `adapters train`) ships to every user unchecked: the manifest must cover all of it."""
    tracked = subprocess.run(
        ["git", "ls-files", "models/default"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    listed = json.loads((SHIPPED / "manifest.json").read_text())["files"]
    shipped = {str(Path(name).relative_to("models/default")) for name in tracked}
    assert shipped == {*listed, "manifest.json"}
