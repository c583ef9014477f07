"""The command line's one rule for errors: a user's mistake is one line and exit 2, a bug
keeps its traceback."""

from __future__ import annotations

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
