"""Every command handed a path that is not there, or a file of junk: one line naming it,
exit 2, and nothing created or changed (a command that opened a missing database created
an empty one and reported "0 parts"; `keys list` an empty key store; `edge rollback` an
empty home; a junk file as the key store was a traceback).

The cases name each command's input paths one at a time, the others valid, so that the
missing one is the first thing the command meets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from inspection.cli import app
from inspection.config import REPO_ROOT
from inspection.io import write_image

SHIPPED = str(REPO_ROOT / "models" / "default")

# {m}: the folder of bad paths; {ok}: a folder that exists (with part.png in it).
CASES = [
    ["daemon", "--config", "{m}/station.yaml"],
    ["ask", "q", "--image", "{m}/part.png"],
    ["ask", "q", "--image", "{ok}/part.png", "--audio", "{m}/note.wav"],
    ["ask", "q", "--image", "{ok}/part.png", "--model", "{m}/model"],
    ["ask", "q", "--image", "{ok}/part.png", "--standard", "{m}/std.yaml"],
    ["audit", "{m}/parts", "--model", SHIPPED, "--standard", "bracket", "--out", "{ok}/a"],
    ["audit", "{ok}", "--model", "{m}/model", "--standard", "bracket", "--out", "{ok}/a"],
    ["audit", "{ok}", "--model", SHIPPED, "--standard", "{m}/std.yaml", "--out", "{ok}/a"],
    ["transcribe", "{m}/note.wav"],
    ["train", "--data", "{m}/data", "--out", "{ok}/t"],
    ["train", "--data", "{ok}", "--out", "{ok}/t", "--config", "{m}/cfg.yaml"],
    ["train", "--data", "{ok}", "--out", "{ok}/t", "--init", "{m}/model"],
    ["evaluate", "--model", "{m}/model", "--data", "{ok}", "--out", "{ok}/e"],
    ["evaluate", "--model", SHIPPED, "--data", "{m}/data", "--out", "{ok}/e"],
    ["evaluate", "--model", SHIPPED, "--data", "{ok}", "--out", "{ok}/e", "--normality", "{m}/n"],
    ["second-look", "--model", SHIPPED, "--normality", "{m}/n", "--good", "{ok}"],
    ["package", "--model", SHIPPED, "--eval", "{m}/eval", "--command", "x"],
    ["package", "--model", "{m}/model", "--manifest-only"],
    ["export", "--out", "{ok}/x.onnx", "--model", "{m}/model"],
    ["export", "--out", "{ok}/x.onnx", "--int8", "--calibration-data", "{m}/calibration"],
    ["demo", "--normality", "{m}/n", "--n", "1", "--out", "{ok}/d"],
    ["standards", "render", "{m}/std.yaml"],
    ["standards", "apply", "bracket", "--manifest", "{m}/manifest.jsonl"],
    ["datasets", "export-reviews", "--db", "{m}/records.db", "--out", "{ok}/r"],
    ["datasets", "merge", "{m}/a", "{m}/b", "--out", "{ok}/merged"],
    ["console", "users", "list", "--users", "{m}/users.json"],
    ["edge", "install", "{m}/bundle"],
    ["edge", "serve", "--home", "{m}/home"],
    ["edge", "rollback", "--home", "{m}/home"],
    ["records", "stats", "--db", "{m}/records.db"],
    ["records", "prune", "--db", "{m}/records.db", "--older-than", "30d"],
    ["records", "export", "--db", "{m}/records.db", "--out", "{ok}/parts.csv"],
    ["serve", "keys", "list", "--db", "{m}/service.db"],
    ["serve", "keys", "revoke", "edge-1", "--db", "{m}/service.db"],
    ["decoder", "train", "--out", "{ok}/dt", "--init", "{m}/decoder"],
    ["decoder", "evaluate", "--decoder", "{m}/decoder", "--out", "{ok}/de"],
    ["decoder", "ship", "--decoder", "{m}/decoder", "--to", "{ok}/ds"],
    ["adapters", "list", "--decoder", "{m}/decoder"],
    ["adapters", "activate", "none", "--decoder", "{m}/decoder"],
]


GARBAGE = b"\x00\xffnot what it should be\n" * 50


@pytest.mark.parametrize("how", ["missing", "garbage"])
@pytest.mark.parametrize("case", CASES, ids=lambda case: " ".join(case[:3]))
def test_a_bad_input_path_is_one_line_and_changes_nothing(case, how, tmp_path):
    """``missing``: the path is not there, and must not be created. ``garbage``: a file of
    junk bytes stands where a file or folder belongs, and must be left as it was."""
    bad, ok = tmp_path / "bad", tmp_path / "ok"
    ok.mkdir()
    write_image(ok / "part.png", np.full((64, 64, 3), 128, np.uint8))
    args = [arg.format(m=bad, ok=ok) for arg in case]
    named = next(arg for arg in args if arg.startswith(str(bad)))
    if how == "garbage":
        bad.mkdir()
        Path(named).write_bytes(GARBAGE)

    result = CliRunner().invoke(app, args)

    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert named in lines[0] or named.rsplit("/", 1)[0] in lines[0], result.output
    if how == "missing":
        assert not bad.exists(), f"{' '.join(case)} created {sorted(bad.rglob('*'))}"
    else:
        assert [p.name for p in bad.iterdir()] == [Path(named).name]
        assert Path(named).read_bytes() == GARBAGE


def test_edge_status_of_a_home_that_is_not_there_says_so(tmp_path):
    home = tmp_path / "mistyped"
    result = CliRunner().invoke(app, ["edge", "status", "--home", str(home)])
    assert result.exit_code == 0, result.output
    assert "no such folder: nothing installed there" in result.output
    assert not home.exists()


@pytest.mark.parametrize(
    "command", [["standards", "validate", "{ok}/bracket.yaml", "{m}"], ["datasets", "check", "{m}"]]
)
def test_a_checker_handed_a_path_that_is_not_there_is_a_usage_error(command, tmp_path):
    """A checker's exit 1 says it found problems in what it checked; a path that is not
    there is a mistyped command (exit 2, one line), and nothing is checked or created."""
    bad, ok = tmp_path / "std.yaml", tmp_path / "ok"
    ok.mkdir()
    (ok / "bracket.yaml").write_bytes((REPO_ROOT / "datasets/standards/bracket.yaml").read_bytes())
    args = [arg.format(m=bad, ok=ok) for arg in command]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(bad) in lines[0]
    assert not bad.exists()
    bad.write_bytes(GARBAGE)  # there, but broken: what the checker is for
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
