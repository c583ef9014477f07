"""The station config: the shipped example loads, INSPECTION_* overrides it, mistakes are
named; the systemd unit is what systemd accepts; sd_notify reaches a socket."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from inspection.errors import UserError
from inspection.station.config import load_config
from inspection.station.daemon import sd_notify

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "edge" / "station.yaml"
UNIT = REPO / "edge" / "inspection-station.service"


def test_the_example_config_loads_with_paths_from_its_folder():
    config = load_config(EXAMPLE)
    assert config.station == "station-1" and config.bus.kind == "mqtt"
    assert config.late_verdict == "REJECT" and config.cycle_time_ms == 1500
    assert config.model.path == REPO / "edge" / ".." / "models" / "default"
    assert config.records.url == str(REPO / "edge" / ".." / "var" / "records.db")


def test_every_field_of_the_example_is_commented():
    for line in EXAMPLE.read_text().splitlines():
        if re.match(r"^\s*[a-z_]+:", line):
            assert "#" in line, f"no comment: {line!r}"


def test_environment_overrides_the_file_nested_fields_too(monkeypatch):
    monkeypatch.setenv("INSPECTION_CYCLE_TIME_MS", "800")
    monkeypatch.setenv("INSPECTION_BUS__PORT", "1884")
    monkeypatch.setenv("INSPECTION_LATE_VERDICT", "REVIEW")
    config = load_config(EXAMPLE)
    assert config.cycle_time_ms == 800 and config.bus.port == 1884
    assert config.bus.host == "127.0.0.1", "the rest of the section stays the file's"
    assert config.late_verdict == "REVIEW"


FOLDER = "model: {path: m}\nsource: {kind: folder, inbox: i, "


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("model: {path: m}\nlate_verdict: PASS\n", "late_verdict"),
        ("model: {path: m}\ncycle_tme_ms: 10\n", "cycle_tme_ms"),
        ("model: {path: m}\nbus: {kind: carrier-pigeon}\n", "bus"),
        ("model: {path: m, profiler_dents: maybe}\n", "model.profiler_dents"),
        (FOLDER + "height_encoding: {scale_mm: 0}}\n", "source.folder.height_encoding.scale_mm"),
        (FOLDER + "height_encoding: {scale_mm: .nan}}\n", "height_encoding.scale_mm"),
        (FOLDER + "height_encoding: {scale_mm: 0.001, invalid: '0'}}\n", "height_encoding.invalid"),
        (FOLDER + "height_encoding: {offset_mm: 1}}\n", "height_encoding.scale_mm"),
        ("- a list\n", "mapping"),
    ],
)
def test_a_bad_config_is_a_user_error_naming_the_field(tmp_path, text, words):
    path = tmp_path / "station.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=words):
        load_config(path)


@pytest.mark.parametrize(
    "content, words",
    [
        (b"model: {path: m\n", "not a readable YAML file \\(while parsing"),
        (b"\xa2\xff\x00binary", "not a readable YAML file \\('utf-8' codec"),
    ],
)
def test_an_unreadable_config_is_one_line(tmp_path, content, words):
    path = tmp_path / "station.yaml"
    path.write_bytes(content)
    with pytest.raises(UserError, match=words) as refused:
        load_config(path)
    assert "\n" not in str(refused.value)


def test_a_missing_config_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such station config"):
        load_config(tmp_path / "nope.yaml")


def test_the_systemd_unit_has_the_watchdog_and_a_graceful_stop():
    text = UNIT.read_text()
    for directive in (
        "Type=notify", "WatchdogSec=30", "Restart=on-failure", "KillSignal=SIGTERM",
        "TimeoutStopSec=", "User=inspection", "NoNewPrivileges=yes", "ProtectSystem=strict",
    ):  # fmt: skip
        assert directive in text, directive


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_accepts_the_unit():
    done = subprocess.run(
        ["systemd-analyze", "verify", str(UNIT)], capture_output=True, text=True, timeout=120
    )
    # The one complaint allowed: the daemon is not installed on this machine.
    problems = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if line.strip() and "is not executable" not in line
    ]
    assert not problems, problems


def test_sd_notify_sends_datagrams_to_the_socket(tmp_path, monkeypatch):
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.settimeout(30)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert sd_notify("READY=1")
        assert server.recv(64) == b"READY=1"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not sd_notify("WATCHDOG=1"), "outside systemd nothing is sent"
    assert not sd_notify("WATCHDOG=1", str(tmp_path / "gone.sock")), "never raises"


@pytest.mark.parametrize("marker", ["# A watched folder instead", "# A camera instead"])
def test_the_commented_source_alternatives_load_too(tmp_path, marker):
    lines = EXAMPLE.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(marker)) + 1
    block = []
    for line in lines[start:]:
        if not line.startswith("#  "):
            break
        block.append("  " + line[3:])
    text = "model: {path: m}\nsource:\n" + "\n".join(block) + "\n"
    path = tmp_path / "station.yaml"
    path.write_text(text)
    config = load_config(path)
    assert config.source.kind in ("folder", "camera")


def test_the_daemon_command_reports_a_bad_config_as_a_user_error(tmp_path):
    import typer
    from typer.testing import CliRunner

    from inspection.station.commands import daemon_command

    app = typer.Typer()
    app.command("daemon")(daemon_command)
    result = CliRunner().invoke(app, ["--config", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2
    assert "error:" in result.output and "no such station config" in result.output


def test_a_bad_environment_override_is_named_as_the_source(tmp_path, monkeypatch):
    path = tmp_path / "station.yaml"
    path.write_text("model: {path: m}\n")
    monkeypatch.setenv("INSPECTION_CYCLE_TIME_MS", "fast")
    with pytest.raises(UserError, match=r"cycle_time_ms: .* \(from INSPECTION_CYCLE_TIME_MS\)"):
        load_config(path)
    monkeypatch.delenv("INSPECTION_CYCLE_TIME_MS")
    path.write_text("model: {path: m}\ncycle_time_ms: fast\n")
    with pytest.raises(UserError, match="cycle_time_ms") as refused:
        load_config(path)
    assert "from INSPECTION" not in str(refused.value)  # the file's own mistake


def test_a_guard_band_path_is_read_against_the_config_folder(tmp_path):
    path = tmp_path / "station.yaml"
    path.write_text("model: {path: m, guard_band: gauge/guard_band.json}\n")
    assert load_config(path).model.guard_band == tmp_path / "gauge" / "guard_band.json"
    path.write_text("model: {path: m}\n")
    assert load_config(path).model.guard_band is None


def test_a_folder_sources_height_encoding_reaches_the_source(tmp_path):
    """The integer height maps of a 3D camera beside the images read through it."""
    from inspection.io import HeightEncoding
    from inspection.station.sources import build_source

    (tmp_path / "in").mkdir()
    path = tmp_path / "station.yaml"
    path.write_text(
        f"model: {{path: m}}\nsource: {{kind: folder, inbox: {tmp_path / 'in'}, "
        "height_encoding: {scale_mm: -0.002, offset_mm: 40, invalid: 0}}\n"
    )
    config = load_config(path)
    source = build_source(config)
    try:
        assert source.height_encoding == HeightEncoding(-0.002, 40.0, 0)
    finally:
        source.close()
