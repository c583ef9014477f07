"""The console in Debian's Chromium, driven by Playwright as an operator uses it: log in,
open a REJECT part from the live table, override it with a reason, see the shift's KPI
change. Screenshots of each step are kept as test artefacts."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from console_helpers import PASSWORDS, console_service, launched, users_file
from sqlalchemy import select
from sqlalchemy.orm import Session

from inspection.records.models import Review

playwright = pytest.importorskip("playwright.sync_api", reason="needs playwright (dev extra)")

CHROMIUM = Path("/usr/bin/chromium")
# DESIGN.md §5: without the background-networking flags Chromium calls out (and is refused).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
WAIT_MS = 120_000  # generous: a loaded 2-core machine renders slowly
ARTIFACTS = Path(
    os.environ.get(
        "INSPECTION_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"
    )
)


@pytest.fixture
def browser_page():
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, locale="en-US")
        page.set_default_timeout(WAIT_MS)
        try:
            yield page
        finally:
            browser.close()


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium (.ci/run installs it)")
def test_an_operator_overrides_a_reject_and_the_kpi_follows(tmp_path, browser_page):
    page = browser_page
    shots = ARTIFACTS / "console"
    shots.mkdir(parents=True, exist_ok=True)
    service = console_service(tmp_path)
    with launched(service, users_file(tmp_path)) as url:
        page.goto(url)
        page.get_by_label(re.compile("username", re.I)).fill("op")
        page.get_by_label(re.compile("password", re.I)).fill(PASSWORDS["op"])
        page.screenshot(path=shots / "1-login.png")
        page.get_by_role("button", name=re.compile("login", re.I)).click()

        overrides = page.locator("#kpi-overrides")
        overrides.wait_for()
        assert overrides.inner_text() == "0"
        page.locator("#latest").get_by_text("P-REJECT-1", exact=True).click()
        summary = page.locator("#part-summary")
        summary.get_by_text("P-REJECT-1").wait_for()
        assert page.locator("#part-verdict").inner_text() == "REJECT"
        page.screenshot(path=shots / "2-reject-part.png", full_page=True)

        page.locator("#decision").get_by_text("PASS", exact=True).click()
        page.locator("#reason textarea").fill("burr, not a crack: deburred and re-measured")
        page.locator("#save-review").click()
        page.locator("#review-message").get_by_text(re.compile("Saved")).wait_for()
        page.screenshot(path=shots / "3-overridden.png", full_page=True)

        page.get_by_role("tab", name="Live").click()
        page.get_by_role("button", name="Refresh").first.click()
        page.wait_for_function(
            "document.querySelector('#kpi-overrides')?.innerText === '1'", timeout=WAIT_MS
        )
        page.screenshot(path=shots / "4-kpi-after.png", full_page=True)

    with Session(service.store.engine) as session:
        review = session.scalars(select(Review)).one()
    assert (review.reviewer, review.decision) == ("op", "PASS")
    assert review.reason.startswith("burr, not a crack")
