"""The audit's HTML report: self-contained, complete, and as Chromium renders it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from audit_helpers import MM_PER_PX, REPO_ROOT, STANDARD, records

from inspection.audit import AuditOptions, audit
from inspection.audit.report import pareto_figure

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


@pytest.fixture(scope="module")
def report(tmp_path_factory, parts, model_dir) -> Path:
    lot = tmp_path_factory.mktemp("lot")
    shutil.copytree(parts, lot, dirs_exist_ok=True)
    (lot / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path_factory.mktemp("audit")
    options = AuditOptions(batch_size=4, workers=2, mm_per_px=MM_PER_PX, progress=False)
    audit(lot, out, model_dir, STANDARD, options)
    return out


def test_the_report_is_self_contained_and_shows_every_part_that_did_not_pass(report):
    page = (report / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)=['"]?(https?:)?//""", page)  # no CDN, no network
    flagged = [r for r in records(report) if r["verdict"] != "PASS" and not r["error"]]
    assert flagged
    for record in flagged:  # a thumbnail inlined, a click away from the full-size overlay
        link = f"<a href='{record['overlay']}' target='_blank'><img src='data:image/jpeg;base64,"
        assert link in page
        assert (report / record["overlay"]).is_file()
    for text in ("<figure id='pareto'>", "Counts by clause", "could not be read (1)</h2>"):
        assert text in page
    assert "broken.png" in page
    assert records(report)[0]["model_version"] in page
    assert records(report)[0]["standard_version"] in page


def test_the_pareto_chart_fits_its_tallest_bar():
    import base64
    from collections import Counter

    import cv2
    import numpy as np

    png = base64.b64decode(pareto_figure(Counter({"scratch": 120, "dent": 3})))
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    red = (image[:, :, 2] > 150) & (image[:, :, 1] < 80) & (image[:, :, 0] < 80)
    rows = np.nonzero(red.any(axis=1))[0]
    # The bar ends below the plot's top edge: some rows of background above it.
    assert rows.min() > 0.08 * image.shape[0]
    assert pareto_figure(Counter()) is None


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium (.ci/run installs it)")
def test_the_report_renders_in_headless_chromium(report, tmp_path):
    url = (report / "report.html").resolve().as_uri()
    dom = subprocess.run(
        [str(CHROMIUM), *FLAGS, "--dump-dom", url], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    n = len(records(report))
    # The inline script ran: it filled in the row count.
    assert re.search(rf"<span id=\"shown\">{n} of {n} rows shown</span>", dom.stdout)
    assert dom.stdout.count("<tr data-verdict=") == n
    shot = tmp_path / "audit-report.png"
    done = subprocess.run(
        [str(CHROMIUM), *FLAGS, "--window-size=1280,1600", f"--screenshot={shot}", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and shot.stat().st_size > 10_000, done.stderr[-2000:]
    artefacts = REPO_ROOT / "test-artifacts"  # kept for a person to look at (git-ignored)
    artefacts.mkdir(exist_ok=True)
    shutil.copy(shot, artefacts / shot.name)


def test_a_name_a_spreadsheet_would_run_as_a_formula_stays_text(tmp_path):
    """A file named like a formula (a crafted archive) must not run when results.csv is
    opened in a spreadsheet: the cell keeps a leading apostrophe."""
    import csv
    import json

    from inspection.audit.report import write_csv

    names = ['=HYPERLINK("http://example.invalid","x").png', "@SUM(A1).png", "part-1.png"]
    with (tmp_path / "results.jsonl").open("w", encoding="utf-8") as f:
        for name in names:
            f.write(json.dumps({"key": f"k:{name}", "source": name, "verdict": "PASS"}) + "\n")
    with write_csv(tmp_path).open(newline="", encoding="utf-8") as f:
        sources = [row["source"] for row in csv.DictReader(f)]
    assert sources == [f"'{names[0]}", f"'{names[1]}", "part-1.png"]
