"""Installing bundles in an edge home: verify, self-test, activate atomically, roll back."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from test_runtime import shared_bundle
from typer.testing import CliRunner

from inspection.edge.bundle import BundleError, load_bundle
from inspection.edge.commands import edge_app
from inspection.edge.install import (
    InstallError,
    install_bundle,
    rollback,
    status,
)
from inspection.export.runtime import record_hash


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    return shared_bundle(tmp_path_factory)


def rewrite(bundle: Path, name: str, data: bytes) -> Path:
    """Replace one file of an unsigned bundle and record its new SHA-256 in the manifest,
    as an export would: the bundle verifies, and is a different bundle (version)."""
    (bundle / name).write_bytes(data)
    manifest_path = bundle / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][name]["sha256"] = hashlib.sha256(data).hexdigest()
    if "size" in manifest["files"][name]:
        manifest["files"][name]["size"] = len(data)
    manifest_path.write_text(json.dumps(manifest, indent=2))
    record_hash(manifest_path)
    return bundle


def rebuilt(bundle_dir: Path, out: Path, note: str) -> Path:
    """Another export of the same model: the same files, another manifest (version)."""
    copy = shutil.copytree(bundle_dir, out)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["note"] = note
    (copy / "manifest.json").write_text(json.dumps(manifest, indent=2))
    record_hash(copy / "manifest.json")
    return copy


def wrong_selftest(bundle_dir: Path, out: Path) -> Path:
    """A bundle that verifies but whose self-test expects another verdict for one part
    (what an edge graph that drifted from its model would show)."""
    copy = shutil.copytree(bundle_dir, out)
    expected = json.loads((copy / "selftest" / "expected.json").read_text())
    part = expected["parts"][0]
    part["verdict"] = "REJECT" if part["verdict"] == "PASS" else "PASS"
    return rewrite(copy, "selftest/expected.json", json.dumps(expected, indent=2).encode())


def test_install_verifies_self_tests_and_activates(bundle_dir, tmp_path):
    home = tmp_path / "home"
    bundle = install_bundle(bundle_dir, home=home, threads=1)
    assert bundle.path == home / "bundles" / bundle.version
    assert load_bundle(bundle_dir).version == bundle.version  # the same manifest bytes
    current = home / "current"
    assert current.is_symlink() and not os.readlink(current).startswith("/")  # relative
    assert current.resolve() == bundle.path.resolve()
    state = status(home)
    assert (state.current, state.previous, state.installed) == (
        bundle.version,
        None,
        (bundle.version,),
    )
    assert state.details["verified"] is True and state.details["products"] == ["bracket"]
    # Installing the same bundle again changes nothing (it does not become its own previous).
    install_bundle(bundle_dir, home=home, threads=1)
    assert status(home).previous is None
    assert not [p for p in (home / "bundles").iterdir() if p.name.startswith(".")]


def test_a_new_bundle_keeps_the_old_one_for_rollback(bundle_dir, tmp_path):
    home = tmp_path / "home"
    first = install_bundle(bundle_dir, home=home, threads=1)
    second = install_bundle(rebuilt(bundle_dir, tmp_path / "v2", "v2"), home=home, threads=1)
    assert first.version != second.version
    assert (status(home).current, status(home).previous) == (second.version, first.version)
    back = rollback(home)
    assert back.version == first.version
    assert (status(home).current, status(home).previous) == (first.version, second.version)
    assert rollback(home).version == second.version  # and forward again


def test_a_bundle_that_fails_its_self_test_is_not_activated(bundle_dir, tmp_path):
    home = tmp_path / "home"
    good = install_bundle(bundle_dir, home=home, threads=1)
    bad = wrong_selftest(bundle_dir, tmp_path / "bad")
    part_id = json.loads((bad / "selftest" / "expected.json").read_text())["parts"][0]["part_id"]
    with pytest.raises(InstallError, match="failed its self-test") as caught:
        install_bundle(bad, home=home, threads=1)
    assert part_id in str(caught.value) and "verdict" in str(caught.value)
    state = status(home)
    assert (state.current, state.previous, state.installed) == (good.version, None, (good.version,))
    assert sorted(p.name for p in (home / "bundles").iterdir()) == [good.version]  # no leftovers


def test_a_tampered_bundle_is_not_installed(bundle_dir, tmp_path):
    home = tmp_path / "home"
    good = install_bundle(bundle_dir, home=home, threads=1)
    tampered = shutil.copytree(bundle_dir, tmp_path / "tampered")
    graph = tampered / "edge.onnx"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0x01
    graph.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"edge\.onnx"):
        install_bundle(tampered, home=home, threads=1)
    assert status(home).current == good.version
    assert sorted(p.name for p in (home / "bundles").iterdir()) == [good.version]


def test_a_trusted_key_refuses_unsigned_bundles_and_takes_signed_ones(bundle_dir, tmp_path):
    from inspection.edge.keys import fingerprint, new_keypair, sign_file

    home = tmp_path / "home"
    home.mkdir()
    new_keypair(tmp_path / "edge.key", home / "trusted.pub")
    with pytest.raises(BundleError, match=r"manifest\.sig|signature|signed"):
        install_bundle(bundle_dir, home=home, threads=1)
    assert status(home).current is None
    signed = shutil.copytree(bundle_dir, tmp_path / "signed")
    sign_file(signed / "manifest.json", tmp_path / "edge.key")
    bundle = install_bundle(signed, home=home, threads=1)
    assert bundle.signed_by == fingerprint(home / "trusted.pub")
    assert status(home).details["signed_by"] == bundle.signed_by
    # Signed with another key: refused as well, and the current one stays.
    new_keypair(tmp_path / "other.key", tmp_path / "other.pub")
    forged = rebuilt(bundle_dir, tmp_path / "forged", "forged")
    sign_file(forged / "manifest.json", tmp_path / "other.key")
    with pytest.raises(BundleError):
        install_bundle(forged, home=home, threads=1)
    assert status(home).current == bundle.version


def test_rollback_without_a_previous_bundle_says_so(bundle_dir, tmp_path):
    with pytest.raises(InstallError, match="no such edge home"):
        rollback(tmp_path / "mistyped")
    assert not (tmp_path / "mistyped").exists()  # no empty home left behind
    (tmp_path / "empty").mkdir()
    with pytest.raises(InstallError, match="no previous bundle"):
        rollback(tmp_path / "empty")
    home = tmp_path / "home"
    install_bundle(bundle_dir, home=home, threads=1)
    with pytest.raises(InstallError, match="no previous bundle"):
        rollback(home)


def test_the_commands_install_show_and_roll_back(bundle_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("INSPECTION_EDGE_HOME", str(tmp_path / "home"))  # no --home: the env
    runner = CliRunner()
    first = runner.invoke(edge_app, ["install", str(bundle_dir), "--threads", "1"])
    assert first.exit_code == 0, first.output
    version = load_bundle(bundle_dir).version
    assert f"installed and activated bundle {version}" in first.output
    second = runner.invoke(edge_app, ["install", str(rebuilt(bundle_dir, tmp_path / "v2", "v2"))])
    assert second.exit_code == 0, second.output
    shown = runner.invoke(edge_app, ["status", "--json"])
    assert shown.exit_code == 0 and json.loads(shown.output)["previous"] == version
    back = runner.invoke(edge_app, ["rollback"])
    assert back.exit_code == 0 and f"rolled back to bundle {version}" in back.output
    assert json.loads(runner.invoke(edge_app, ["status", "--json"]).output)["current"] == version


def test_the_commands_refuse_bad_input_in_one_line(tmp_path):
    runner = CliRunner()
    home = ["--home", str(tmp_path / "home")]
    for args, expected in (
        (["install", str(tmp_path), *home], "manifest.json: missing"),
        (["rollback", *home], "no such edge home"),
        (["serve", *home], "no bundle installed"),
        (["serve", "--host", "0.0.0.0", *home], "not a loopback address"),
    ):
        result = runner.invoke(edge_app, args)
        assert result.exit_code == 2, (args, result.output)
        assert "error:" in result.output and expected in result.output, result.output
        assert "Traceback" not in result.output
