"""``inspection --help`` stays fast: the CLI imports heavy libraries only inside the
commands that use them.

Checked by what a fresh Python has imported, not by timing it (a loaded machine would
make any time bound flaky); ``benchmarks/cli_startup.py`` measures the time itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

# Each takes from a tenth of a second (scipy.signal) to several (torch) to import.
HEAVY = ("torch", "transformers", "peft", "sklearn", "scipy", "matplotlib", "onnxruntime")

PROBE = """
import json
import sys

from typer.testing import CliRunner

from inspection.cli import app

exits = [CliRunner().invoke(app, args).exit_code for args in {commands!r}]
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))
print(json.dumps({{"exits": exits, "heavy": heavy}}))
"""


def _loaded_by(commands: list[list[str]], heavy: tuple[str, ...] = HEAVY) -> dict:
    code = textwrap.dedent(PROBE.format(commands=commands, heavy=heavy))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_the_cli_and_its_help_import_no_heavy_library():
    probe = _loaded_by([["--help"], ["ask", "--help"], ["evaluate", "--help"], ["train", "--help"]])
    assert probe["exits"] == [0, 0, 0, 0]
    assert probe["heavy"] == [], f"imported by `inspection --help`: {probe['heavy']}"


def test_metrics_import_sklearn_only_to_compute_an_auroc():
    """The CLI reads one constant from ``inspection.metrics``: importing it is light, and
    the check above can fail (computing an AUROC does import sklearn)."""
    code = """
import sys

import inspection.metrics

assert "sklearn" not in sys.modules, "importing inspection.metrics imported sklearn"
assert inspection.metrics.image_auroc([False, True], [0.2, 0.7]) == 1.0
assert "sklearn" in sys.modules
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
