"""API keys: stored hashed, revoked not deleted; ``inspection serve keys`` and the
refusal to serve a non-loopback host without a key."""

from __future__ import annotations

import sqlite3

import pytest
import typer
from typer.testing import CliRunner

from inspection.errors import UserError
from inspection.serve.auth import KeyStatus, KeyStore, hash_token
from inspection.serve.commands import is_loopback, serve_app
from inspection.terminal import UserErrorsExit


def test_keys_are_stored_hashed_and_checked(tmp_path):
    keys = KeyStore(tmp_path / "keys.db")
    token = keys.add("edge-1")
    other = keys.add("edge-2")
    assert token != other and len(token) > 40
    assert keys.check(token) is KeyStatus.VALID
    assert keys.check(token + "x") is KeyStatus.UNKNOWN
    assert keys.check("") is KeyStatus.UNKNOWN
    keys.revoke("edge-1")
    assert keys.check(token) is KeyStatus.REVOKED
    assert keys.check(other) is KeyStatus.VALID
    listed = {k.name: k for k in keys.list()}
    assert listed["edge-1"].revoked and not listed["edge-2"].revoked
    keys.close()
    raw = (tmp_path / "keys.db").read_bytes()
    wal = tmp_path / "keys.db-wal"
    raw += wal.read_bytes() if wal.exists() else b""
    assert token.encode() not in raw and other.encode() not in raw
    with sqlite3.connect(tmp_path / "keys.db") as conn:
        hashes = {row[0] for row in conn.execute("SELECT token_sha256 FROM api_keys")}
    assert hashes == {hash_token(token), hash_token(other)}


def test_bad_duplicate_and_missing_key_names_are_user_errors(tmp_path):
    keys = KeyStore(tmp_path / "keys.db")
    keys.add("line-3")
    with pytest.raises(UserError, match="exists already"):
        keys.add("line-3")
    with pytest.raises(UserError, match="bad key name"):
        keys.add("../etc")
    with pytest.raises(UserError, match="no key named 'ghost'"):
        keys.revoke("ghost")


def _root() -> typer.Typer:
    # The serve app under a root that turns UserError into `error: ...`, exit 2, as
    # `inspection` does.
    root = typer.Typer(cls=UserErrorsExit)
    root.add_typer(serve_app, name="serve")

    @root.command()
    def version() -> None:  # a second command keeps `serve` a sub-command
        """Unused."""

    return root


def test_keys_cli_adds_lists_and_revokes(tmp_path):
    db = str(tmp_path / "service.db")
    runner = CliRunner()
    added = runner.invoke(_root(), ["serve", "keys", "add", "edge-7", "--db", db])
    assert added.exit_code == 0, added.output
    token = added.stdout.strip().splitlines()[-1]
    assert token.startswith("insp_") and KeyStore(db).check(token) is KeyStatus.VALID
    listed = runner.invoke(_root(), ["serve", "keys", "list", "--db", db])
    assert listed.exit_code == 0 and "edge-7" in listed.stdout and token not in listed.stdout
    revoked = runner.invoke(_root(), ["serve", "keys", "revoke", "edge-7", "--db", db])
    assert revoked.exit_code == 0 and KeyStore(db).check(token) is KeyStatus.REVOKED
    missing = runner.invoke(_root(), ["serve", "keys", "revoke", "nobody", "--db", db])
    assert missing.exit_code == 2 and "no key named 'nobody'" in missing.output


def test_serve_refuses_a_public_host_without_a_key(tmp_path):
    db = str(tmp_path / "service.db")
    result = CliRunner().invoke(_root(), ["serve", "--host", "0.0.0.0", "--db", db])
    assert result.exit_code == 2
    assert "refusing to listen on 0.0.0.0 without an API key" in result.output


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("localhost", True), ("::1", True), ("0.0.0.0", False),
     ("10.1.2.3", False), ("example.com", False)],
)  # fmt: skip
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback
