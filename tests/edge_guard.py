"""Run code in a fresh Python that refuses to import torch, as an edge box would."""

from __future__ import annotations

import subprocess
import sys
import textwrap

NO_TORCH = """\
import sys


class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ImportError("torch is not allowed on the edge")


sys.meta_path.insert(0, NoTorch())
"""

ASSERT_NO_TORCH = """
loaded = sorted(m for m in sys.modules if m.split(".")[0] == "torch")
assert not loaded, f"torch was imported: {loaded}"
"""


def run_without_torch(body: str) -> subprocess.CompletedProcess:
    """Run ``body`` (dedented) after the guard, then check that no ``torch`` module is in
    ``sys.modules``; returns the finished process (exit status 0: all went well)."""
    code = NO_TORCH + textwrap.dedent(body) + ASSERT_NO_TORCH
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
