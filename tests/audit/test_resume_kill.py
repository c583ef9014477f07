"""Resume after a kill: a real `inspection audit` process killed mid-run, then run again."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from audit_helpers import MM_PER_PX, STANDARD, records


def _lines(path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_a_killed_audit_resumes_with_no_part_lost_or_duplicated(tmp_path, parts, model_dir):
    lot = tmp_path / "lot"
    for copy in range(4):  # 48 parts: the kill lands long before the end
        shutil.copytree(parts, lot / f"copy{copy}")
    n = len(list(lot.rglob("*.png")))
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "inspection.cli", "audit", str(lot),
        "--model", str(model_dir), "--standard", str(STANDARD), "--out", str(out),
        "--batch-size", "1", "--workers", "1", "--mm-per-px", str(MM_PER_PX),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    results = out / "results.jsonl"
    deadline = time.monotonic() + 240  # a bound for a stuck run, not a speed requirement
    while _lines(results) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()[-2000:]
    before = [json.loads(line) for line in results.read_text().splitlines(keepends=True)
              if line.endswith("\n")]  # fmt: skip
    assert 3 <= len(before) < n
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    after = records(out)
    keys = [r["key"] for r in after]
    assert len(keys) == len(set(keys)) == n  # none lost, none twice
    assert after[: len(before)] == before  # what was finished is kept as it was
    assert f"{n - len(before)} audited now, {len(before)} done before" in done.stdout
    assert (out / "report.html").is_file()
