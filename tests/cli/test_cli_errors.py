"""The command line's one rule for errors: a user's mistake is one line and exit 2, a bug
keeps its traceback."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from inspection.cli import app
from inspection.errors import ModelError, UserError
from inspection.io import InputError
from inspection.standards import StandardError


def _invoke_raising(exc: Exception):
    """Run the real root group with a sub-command that raises ``exc``."""
    sub = typer.Typer()

    @sub.command("boom")
    def boom() -> None:
        raise exc

    app.add_typer(sub, name="raise-for-test")
    try:
        return CliRunner().invoke(app, ["raise-for-test", "boom"])
    finally:
        app.registered_groups.pop()


def test_every_user_error_family_member_is_one_line_and_exit_2():
    for exc in (UserError("a: b"), ModelError("m: corrupt"), InputError("i.png: empty file")):
        result = _invoke_raising(exc)
        assert result.exit_code == 2, result.output
        assert result.output == f"error: {exc}\n"
        assert "Traceback" not in result.output


def test_a_standard_error_lists_each_problem_without_a_traceback():
    from inspection.standards import Problem

    exc = StandardError([Problem("s.yaml", 3, "id", "missing"), Problem("s.yaml", 9, "x", "bad")])
    result = _invoke_raising(exc)
    assert result.exit_code == 2
    assert "s.yaml:3: id: missing" in result.output and "s.yaml:9: x: bad" in result.output


def test_a_bug_keeps_its_traceback():
    result = _invoke_raising(KeyError("not a user error"))
    assert result.exit_code == 1
    assert isinstance(result.exception, KeyError)


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--steps", "0"], "--steps and --batch-size must be >= 1, not 0 and 8"),
        (["train", "--batch-size", "0"], "--steps and --batch-size must be >= 1, not 3000 and 0"),
        (["train", "--lr", "-1"], "--lr must be a positive number, not -1.0"),
        (["train", "--max-minutes", "0"], "--max-minutes must be a positive number, not 0.0"),
        (["train", "--normal-only", "--max-minutes", "nan"], "--max-minutes must be a positive"),
        (["decoder", "train", "--steps", "0"], "--steps and --batch-size must be >= 1"),
        (["decoder", "train", "--batch-size", "0"], "--steps and --batch-size must be >= 1"),
        (["demo", "--n", "0"], "--n must be at least 1 part, not 0"),
        (["demo", "--n", "-3"], "--n must be at least 1 part, not -3"),
        (["demo", "--language", "fr"], "unknown --language 'fr'; use one of en, zh"),
        (["serve", "--max-batch", "0"], "--max-batch, --max-queue and --max-payload-bytes"),
        (["serve", "--timeout-s", "-1"], "--max-wait-ms must be >= 0 and --timeout-s > 0"),
    ],
)
def test_an_option_out_of_range_is_one_line_and_writes_nothing(tmp_path, args, message):
    """Each of these once ran: a model of 0 steps saved as trained, a demo of no parts
    reported, a batch of 0 or an unknown language ended in a traceback."""
    out = tmp_path / "out"
    if args[0] in ("train", "decoder"):
        args += ["--out", str(out)] + (["--data", str(tmp_path)] if args[0] == "train" else [])
    elif args[0] == "demo":
        args += ["--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.output.count("error:") == 1 and "Traceback" not in result.output
    assert message in " ".join(result.output.split()), result.output
    assert not out.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["decoder", "evaluate", "--decoder", ".", "--out", "x", "--n", "0"],
        ["decoder", "evaluate", "--decoder", ".", "--out", "x", "--batch-size", "0"],
        # refused before the adapter trains for minutes, not when it is scored after
        ["adapters", "train", "--name", "a", "--standard", "bracket", "--eval-parts", "0"],
    ],
)
def test_a_count_of_zero_is_a_usage_error_before_any_work(args):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "greater than or equal to 1" in " ".join(result.output.split()), result.output


@pytest.mark.parametrize("command", [["serve"], ["console"], ["edge", "serve"]])
@pytest.mark.parametrize("port", ["-1", "65536"])
def test_a_port_out_of_range_is_a_usage_error(command, port):
    result = CliRunner().invoke(app, [*command, "--port", port])
    assert result.exit_code == 2 and "--port" in result.output, result.output
