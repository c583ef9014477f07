"""How long ``inspection --help`` takes, and which imports it spends that time on.

Each command runs ``--runs`` times, each in a fresh process (nothing cached in memory but
the OS's file cache, as on a second call by a user), and the median and fastest wall time
are printed. Then one ``python -X importtime -c "import inspection.cli"`` lists the
modules whose imports (with what they import) cost the most, and says which of the heavy
libraries the CLI loads before any command has run.

Usage::

    .venv/bin/python benchmarks/cli_startup.py [--runs 7] [--top 15]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = (["--help"], ["ask", "--help"], ["evaluate", "--help"])
HEAVY = ("torch", "transformers", "sklearn", "scipy", "cv2", "matplotlib", "onnxruntime", "peft")


def _inspection() -> list[str]:
    """The installed ``inspection`` script next to this interpreter, else ``-m``-style."""
    script = Path(sys.executable).with_name("inspection")
    if script.exists():
        return [str(script)]
    found = shutil.which("inspection")
    return [found] if found else [sys.executable, "-c", "from inspection.cli import app; app()"]


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def time_command(args: list[str], runs: int) -> list[float]:
    """Wall seconds of ``runs`` fresh runs of ``inspection ARGS``."""
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(
            [*_inspection(), *args], env=_env(), check=True, capture_output=True, text=True
        )
        seconds.append(time.perf_counter() - start)
    return seconds


def import_times(module: str = "inspection.cli") -> tuple[list[tuple[float, str]], set[str]]:
    """``(cumulative seconds, top-level package)`` per package imported by ``module``, and
    the set of every top-level package it imported (from ``-X importtime``)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        env=_env(),
        check=True,
        capture_output=True,
        text=True,
    )
    cumulative: dict[str, float] = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cum, name = (part.strip() for part in line.removeprefix("import time:").split("|"))
        top = name.strip().split(".")[0]
        # A package's first (outermost) import holds all its submodules' time.
        cumulative[top] = max(cumulative.get(top, 0.0), int(cum) / 1e6)
    ranked = sorted(((s, name) for name, s in cumulative.items()), reverse=True)
    return ranked, set(cumulative)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="fresh runs per command")
    parser.add_argument("--top", type=int, default=15, help="packages listed by import time")
    args = parser.parse_args()

    time_command(["--help"], 1)  # warm the OS file cache: every run then starts alike
    print(f"{'command':<28} {'median s':>9} {'min s':>7}  ({args.runs} fresh runs)")
    for command in COMMANDS:
        seconds = time_command(command, args.runs)
        label = "inspection " + " ".join(command)
        print(f"{label:<28} {statistics.median(seconds):9.2f} {min(seconds):7.2f}")

    ranked, loaded = import_times()
    print(f"\nimport inspection.cli: top {args.top} packages by cumulative import time")
    for seconds, name in ranked[: args.top]:
        print(f"  {seconds:6.3f} s  {name}")
    heavy = [name for name in HEAVY if name in loaded]
    print("heavy packages imported by the CLI:", ", ".join(heavy) if heavy else "none")


if __name__ == "__main__":
    main()
