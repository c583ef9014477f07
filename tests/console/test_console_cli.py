"""``inspection console`` and ``inspection console users``: the user list managed from the
command line, and the console refusing unsafe or wrong options without serving."""

from __future__ import annotations

import tempfile

import pytest
from typer.testing import CliRunner

pytest.importorskip("gradio", reason="the console needs the console extra (gradio)")

from inspection.cli import app
from inspection.console.auth import ENGINEER, OPERATOR, User, UserDirectory

runner = CliRunner()


def one_error_line(done) -> str:
    """The single ``error: ...`` line of a refused command (exit status 2)."""
    assert done.exit_code == 2, done.output
    lines = done.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.output
    return lines[0]


def test_add_users_from_stdin_and_list_them_without_hashes(tmp_path):
    users = tmp_path / "users.yaml"
    added = runner.invoke(
        app,
        ["console", "users", "add", "li.wei", "--role", "operator", "--users", str(users),
         "--password-stdin"],
        input="operator-pass-1\n",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "li.wei (operator) saved" in added.output and "operator-pass-1" not in added.output
    prompted = runner.invoke(
        app,
        ["console", "users", "add", "ana", "--role", "engineer", "--users", str(users)],
        input="engineer-pass-1\nengineer-pass-1\n",
    )
    assert prompted.exit_code == 0, prompted.output
    assert "engineer-pass-1" not in prompted.output  # the prompt hides what is typed

    directory = UserDirectory.load(users)
    assert directory.authenticate("li.wei", "operator-pass-1") == User("li.wei", OPERATOR)
    assert directory.authenticate("ana", "engineer-pass-1") == User("ana", ENGINEER)

    listed = runner.invoke(app, ["console", "users", "list", "--users", str(users)])
    assert listed.exit_code == 0, listed.output
    assert [line.split() for line in listed.output.splitlines()] == [
        ["ana", "engineer"],
        ["li.wei", "operator"],
    ]
    assert "scrypt" not in listed.output
    for line in users.read_text(encoding="utf-8").splitlines():
        if "password:" in line:
            assert line.split("password:")[1].strip() not in listed.output


@pytest.mark.parametrize(
    ("role", "password", "says"),
    [
        ("admin", "operator-pass-1", "role must be one of operator, engineer"),
        ("operator", "short", "at least 8 characters"),
    ],
)
def test_a_bad_role_or_short_password_is_one_error_line(tmp_path, role, password, says):
    users = tmp_path / "users.yaml"
    done = runner.invoke(
        app,
        ["console", "users", "add", "li.wei", "--role", role, "--users", str(users),
         "--password-stdin"],
        input=f"{password}\n",
    )  # fmt: skip
    assert says in one_error_line(done)
    assert not users.exists()


def test_listing_a_missing_user_file_is_one_error_line(tmp_path):
    missing = tmp_path / "users.yaml"
    line = one_error_line(runner.invoke(app, ["console", "users", "list", "--users", str(missing)]))
    assert str(missing) in line


def test_a_malformed_user_file_is_refused_by_list_add_and_console(tmp_path):
    users = tmp_path / "users.yaml"
    users.write_text("users: [unclosed\n", encoding="utf-8")
    for args in (
        ["console", "users", "list", "--users", str(users)],
        ["console", "users", "add", "bob", "--role", "operator", "--users", str(users),
         "--password-stdin"],
    ):  # fmt: skip
        line = one_error_line(runner.invoke(app, args, input="a-long-password\n"))
        assert str(users) in line
    assert users.read_text(encoding="utf-8") == "users: [unclosed\n"  # nothing rewritten


@pytest.fixture
def no_serving(monkeypatch, tmp_path):
    """Fail the test if the console would serve; keep temporary folders in tmp_path."""
    import gradio as gr

    def launch(*args, **kwargs):
        raise AssertionError("the console must not serve")

    monkeypatch.setattr(gr.Blocks, "launch", launch)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    return scratch


def test_serving_beyond_loopback_without_users_is_refused(no_serving):
    done = runner.invoke(app, ["console", "--host", "0.0.0.0"])  # no_serving: never launched
    assert done.exit_code == 2, done.output
    line = done.output.strip().splitlines()[-1]
    assert line.startswith("error: ") and "127.0.0.1" in line and "0.0.0.0" in line
    assert "--users" in line


def test_serving_beyond_loopback_without_users_is_refused_before_building(no_serving, monkeypatch):
    # Building the console (database, standards, Gradio app) only to refuse it is slow and
    # leaves a temporary database behind: the options are checked first.
    import inspection.console.app as console_app

    built = []

    def build_console(*args, **kwargs):
        built.append(args)
        raise AssertionError("built before checking --host")

    monkeypatch.setattr(console_app, "build_console", build_console)
    done = runner.invoke(app, ["console", "--host", "0.0.0.0"])
    assert built == []
    assert "127.0.0.1" in one_error_line(done)  # and no "console ... on http://0.0.0.0" first
    assert list(no_serving.iterdir()) == []


def test_an_unknown_language_is_refused(no_serving):
    line = one_error_line(runner.invoke(app, ["console", "--lang", "fr"]))
    assert "unknown --lang 'fr'; use one of en, zh" in line
    assert list(no_serving.iterdir()) == []  # refused before anything was built


def test_help_of_the_console_and_of_export_reviews():
    console_help = runner.invoke(app, ["console", "--help"])
    assert console_help.exit_code == 0, console_help.output
    assert "--users" in console_help.output and "users" in console_help.output
    export_help = runner.invoke(app, ["datasets", "export-reviews", "--help"])
    assert export_help.exit_code == 0, export_help.output
    assert "--overwrite" in export_help.output and "--since" in export_help.output


def test_a_user_file_that_is_not_yaml_is_one_error_line(tmp_path):
    users = tmp_path / "users.yaml"
    users.write_text("users: [unclosed\n", encoding="utf-8")
    line = one_error_line(runner.invoke(app, ["console", "users", "list", "--users", str(users)]))
    assert str(users) in line and "cannot read the user list" in line


def test_a_bad_role_is_refused_before_the_password_is_asked(tmp_path):
    users = tmp_path / "users.yaml"
    done = runner.invoke(app, ["console", "users", "add", "li.wei", "--role", "boss", "--users",
                               str(users)])  # fmt: skip
    line = one_error_line(done)  # no "password:" prompt before it
    assert "role must be one of operator, engineer, not 'boss'" in line
    assert not users.exists()
