"""`inspection audit` on the command line: errors as one line, a light --help."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from audit_helpers import MM_PER_PX, STANDARD, records
from typer.testing import CliRunner

from inspection.cli import app


def test_audit_help_imports_no_heavy_library():
    code = (
        "import sys, json; from typer.testing import CliRunner; from inspection.cli import app;"
        "r = CliRunner().invoke(app, ['audit', '--help']);"
        "heavy = {'torch', 'ray', 'sklearn', 'matplotlib', 'onnxruntime'};"
        "print(json.dumps([r.exit_code, sorted({m.split('.')[0] for m in sys.modules} & heavy)]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert json.loads(done.stdout.splitlines()[-1]) == [0, []], done.stderr


def test_a_missing_input_and_a_bundle_are_one_line_errors(tmp_path, model_dir):
    runner = CliRunner()
    args = ["--standard", str(STANDARD), "--out", str(tmp_path / "out")]
    missing = runner.invoke(
        app, ["audit", str(tmp_path / "nope"), "--model", str(model_dir), *args]
    )
    assert missing.exit_code == 2 and "no such file" in missing.output
    lot = tmp_path / "lot"
    lot.mkdir()
    shutil.copy(next(model_dir.parent.rglob("*.json")), lot / "x.png")
    bundle = tmp_path / "line3.bundle"
    bundle.write_bytes(b"not yet")
    refused = runner.invoke(app, ["audit", str(lot), "--model", str(bundle), *args])
    assert refused.exit_code == 2 and "not a model directory, an edge bundle" in refused.output
    bad = runner.invoke(
        app, ["audit", str(lot), "--model", str(model_dir), "--batch-size", "0", *args]
    )
    assert bad.exit_code == 2 and "--batch-size" in bad.output


def test_the_command_audits_and_reports(tmp_path, parts, model_dir):
    lot = tmp_path / "lot"
    shutil.copytree(parts / "good", lot)
    (lot / "photo.gif").write_bytes(b"GIF89a")  # a format the audit does not read
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["audit", str(lot), "--model", str(model_dir), "--standard", str(STANDARD),
         "--out", str(out), "--mm-per-px", str(MM_PER_PX), "--batch-size", "2"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    n = len(list(lot.glob("*.png")))
    assert f"{n} parts ({n} audited now, 0 done before)" in result.output
    assert "warning: 1 file not audited (.gif 1)" in result.output
    assert len(records(out)) == n and (out / "report.html").is_file()
