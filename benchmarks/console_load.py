"""The console's queries on a full records database: 100,000 parts over 7 days.

python benchmarks/console_load.py                      # 100,000 parts (built once, cached)
python benchmarks/console_load.py --n 5000 --runs 3    # a quick try
python benchmarks/console_load.py --rebuild            # build the database again

1. Build (skipped when ``--workdir`` already holds a finished database of this size): a
   SQLite records database written the way the line daemon writes it,
   ``RecordStore.record_many`` in batches of 1,000; parts spread evenly over 7 days on two
   stations, ~3 % REJECT with 1-3 defects of a skewed mix of classes, ~2 % REVIEW, ~0.2 %
   not inspected, one 16x16 evidence image each (PNG, from a pool of 512, stored by
   content hash), and operator reviews through ``RecordStore.add_review``: half of the
   REVIEW parts, a fifth of the REJECTs (a third of those overridden to PASS).
2. Time, median of ``--runs`` runs each (after one untimed warm-up), side by side: the
   record store's own queries, the statistics of :mod:`inspection.console.stats` over the
   shift or the 7 days, and the console's live page and review queue
   (``ConsoleService``), "now" being the end of the data; ``inspection records export``
   of the 7 days as CSV and JSON lines, with its peak Python memory (tracemalloc).

Target: the live page and the review queue each under 1 s.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import gettempdir

import numpy as np
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from inspection.console.stats import (
    defect_pareto,
    false_reject_trend,
    line_kpis,
    yield_trend,
)
from inspection.records.evidence import encode_png
from inspection.records.store import RecordEntry, RecordStore
from inspection.types import (
    Action,
    BBox,
    Defect,
    DefectDecision,
    InspectionResult,
    Severity,
    Verdict,
)

END = datetime(2026, 3, 9, 12, 0, tzinfo=UTC)  # "now": a Monday, mid shift A
DAYS = 7
STATIONS = ("station-1", "station-2")
CLASSES = ("scratch", "dent", "stain", "crack", "burr", "chip", "porosity")
CLASS_WEIGHTS = (0.35, 0.22, 0.15, 0.1, 0.08, 0.06, 0.04)  # a Pareto worth drawing
TARGET_S = 1.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="parts in the database")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per query (median)")
    parser.add_argument("--batch", type=int, default=1000, help="parts per record_many")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(gettempdir()) / "inspection-console-load",
        help="where the database is built and kept between runs",
    )
    parser.add_argument("--rebuild", action="store_true", help="build the database again")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-serve", action="store_true", help="skip the console served (API and browser)"
    )
    return parser.parse_args()


# ---------------------------------------------------------------------------------------
# building the database


def open_store(workdir: Path, n: int) -> tuple[RecordStore, bool]:
    """The store of ``n`` parts under ``workdir``; whether it is already built."""
    folder = workdir / f"parts-{n}"
    done = folder / "BUILT"
    if not done.exists():
        # A build that did not finish is started again from nothing.
        for name in ("records.db", "records.db-wal", "records.db-shm", "spool.db"):
            (folder / name).unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    store = RecordStore(folder / "records.db", folder / "evidence", folder / "spool.db")
    return store, done.exists()


def decision(defect_class: str, i: int) -> DefectDecision:
    length = 1.5 + 0.5 * i
    return DefectDecision(
        defect=Defect(
            defect_class,
            {"length_mm": length, "width_mm": 0.1},
            BBox(2 * i, 2 * i, 2 * i + 5, 2 * i + 5),
            zone="A",
            score=0.8,
        ),
        zone="A",
        severity=Severity.MAJOR,
        action=Action.REWORK,
        clause_id=f"4.1.{i}",
        reason=f"{defect_class} {length} mm over 1.5 mm",
    )


def make_result(part_id: str, verdict: Verdict, classes: list[str]) -> InspectionResult:
    decisions = tuple(decision(c, i) for i, c in enumerate(classes))
    action = {Verdict.PASS: Action.ACCEPT, Verdict.REVIEW: Action.REVIEW}.get(
        verdict, Action.REWORK
    )
    return InspectionResult(
        part_id=part_id,
        verdict=verdict,
        severity=Severity.MAJOR if decisions else None,
        action=action,
        decisions=decisions,
        reasons=tuple(d.reason for d in decisions),
        standard_id="bracket",
        standard_version="1.2",
        model_version="bench-model",
        calibration_version="cal-1",
        scores={"image": 0.9 if decisions else 0.1},
        timings_ms={"model": 4.0, "rules": 0.2},
    )


def build(store: RecordStore, n: int, batch: int, seed: int) -> dict[str, int]:
    """Record ``n`` parts and the reviews; the numbers written."""
    rng = np.random.default_rng(seed)
    pool = [encode_png(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)) for _ in range(512)]
    start = END - timedelta(days=DAYS)
    step = timedelta(days=DAYS) / n
    draw = rng.random(n)
    verdicts = np.where(
        draw < 0.03, "REJECT", np.where(draw < 0.05, "REVIEW", np.where(draw < 0.052, "", "PASS"))
    )
    reviewable: list[tuple[str, str, str]] = []
    with tqdm(total=n, desc="recording parts", unit="part", mininterval=1.0) as bar:
        for first in range(0, n, batch):
            entries = []
            for k in range(first, min(n, first + batch)):
                part_id, station = f"P-{k:07d}", STATIONS[k % len(STATIONS)]
                captured = start + k * step
                images = [pool[k % len(pool)]]
                if not verdicts[k]:
                    entries.append(
                        RecordEntry(part_id, station, None, "camera lost", images, captured)
                    )
                    continue
                verdict = Verdict(verdicts[k])
                classes = []
                if verdict is not Verdict.PASS:
                    size = int(rng.integers(1, 4)) if verdict is Verdict.REJECT else 1
                    classes = [str(c) for c in rng.choice(CLASSES, size=size, p=CLASS_WEIGHTS)]
                    reviewable.append((part_id, station, verdict.value))
                result = make_result(part_id, verdict, classes)
                decided = captured + timedelta(milliseconds=60)
                entries.append(
                    RecordEntry(part_id, station, result, None, images, captured, decided)
                )
            store.record_many(entries)
            bar.update(len(entries))
    reviews = 0
    chosen = [(p, s, v) for p, s, v in reviewable if rng.random() < (0.5 if v == "REVIEW" else 0.2)]
    for part_id, station, verdict in tqdm(chosen, desc="reviews", unit="review", mininterval=1.0):
        if verdict == "REVIEW":
            decision_ = "PASS" if rng.random() < 0.7 else "REJECT"
        else:
            decision_ = "PASS" if rng.random() < 1 / 3 else "REJECT"
        store.add_review(part_id, station, "bench", decision_, "benchmark review")
        reviews += 1
    return {
        "parts": n,
        "REJECT": int((verdicts == "REJECT").sum()),
        "REVIEW": int((verdicts == "REVIEW").sum()),
        "reviews": reviews,
    }


# ---------------------------------------------------------------------------------------
# timing


def median_s(call: Callable[[], object], runs: int) -> float:
    call()  # warm-up: the connection pool, SQLite's page cache, imports
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def queries(store: RecordStore) -> list[tuple[str, Callable[[], object] | None, str]]:
    """``(name, call, note)``; call ``None`` when it is not available."""
    engine, since = store.engine, END - timedelta(days=DAYS)
    rows: list[tuple[str, Callable[[], object] | None, str]] = [
        ("store.latest(20)", lambda: store.latest(20), ""),
        ("store.by_verdict('REVIEW', limit=50)", lambda: store.by_verdict("REVIEW", limit=50), ""),
        ("line_kpis (this shift)", lambda: line_kpis(engine, END), ""),
        ("defect_pareto (7 days)", lambda: defect_pareto(engine, since, END), ""),
        (
            "yield_trend (7 days, 1 h buckets)",
            lambda: yield_trend(engine, since, END, timedelta(hours=1)),
            "",
        ),
        ("false_reject_trend (7 days)", lambda: false_reject_trend(engine, since, END), ""),
    ]
    from inspection.console.service import ConsoleService

    service = ConsoleService(store, clock=END.timestamp)
    rows += [
        ("ConsoleService.live_page()", service.live_page, f"target < {TARGET_S:g} s"),
        ("ConsoleService.review_queue()", service.review_queue, f"target < {TARGET_S:g} s"),
    ]
    return rows


def exports(store: RecordStore, out: Path, runs: int) -> list[tuple[str, float, float, float]]:
    """``inspection records export`` of the 7 days, CSV and JSON lines: ``(format, median
    s, parts/s, peak Python memory MB)``; the memory of one more run, by tracemalloc."""
    import tracemalloc

    from inspection.records.export import export_records

    rows = []
    for suffix in (".csv", ".jsonl"):
        target = out / f"export{suffix}"

        def run(target: Path = target) -> object:
            return export_records(store, target, END - timedelta(days=DAYS), END, progress=False)

        seconds = median_s(run, runs)
        tracemalloc.start()
        parts = run().parts
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        rows.append((suffix, seconds, parts / seconds, peak / 2**20))
    return rows


def served(store: RecordStore, runs: int) -> list[tuple[str, float, str]]:
    """The console served on loopback over the same database: each view through its API
    (gradio_client: HTTP, queue, JSON) and, where Debian's Chromium is installed, the whole
    page in a browser, from navigation to the live table and KPIs on screen."""
    import socket

    from gradio_client import Client

    from inspection.console.app import build_console, launch_console
    from inspection.console.service import ConsoleService

    service = ConsoleService(store, clock=END.timestamp)
    blocks = build_console(service=service, simulate=False, refresh_s=3600)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _, url = launch_console(blocks, port=port, block=False)
    target = f"target < {TARGET_S:g} s"
    try:
        client = Client(url, verbose=False)
        found = [
            (
                "app API /live (KPIs + 20 parts)",
                median_s(lambda: client.predict(api_name="/live"), runs),
                target,
            ),
            (
                "app API /review_queue (50 parts)",
                median_s(lambda: client.predict(api_name="/review_queue"), runs),
                target,
            ),
        ]
        return found + browser_page_load(url, runs)
    finally:
        blocks.close()


def browser_page_load(url: str, runs: int) -> list[tuple[str, float, str]]:
    """Median seconds, in Chromium driven by Playwright (nothing without
    /usr/bin/chromium): from navigation until the KPIs and the live table's rows are shown;
    from a click on the Review queue tab until its rows are; and, beside them, the floor:
    an empty Gradio page of one Markdown served the same way."""
    if not Path("/usr/bin/chromium").exists():
        return []
    import gradio as gr
    from playwright.sync_api import sync_playwright

    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update"]  # fmt: skip
    with gr.Blocks() as empty:
        gr.Markdown("<span id='empty'>ready</span>")
    _, empty_url, _ = empty.launch(prevent_thread_lock=True, quiet=True, ssr_mode=False)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=flags)
            page = browser.new_page()

            def live() -> None:
                page.goto(url)
                page.locator("#kpi-parts").wait_for()
                page.locator("#latest").get_by_text("PASS", exact=True).filter(
                    visible=True
                ).first.wait_for()

            def queue() -> None:
                page.goto(url)
                page.locator("#kpi-parts").wait_for()
                started = time.perf_counter()
                page.get_by_role("tab", name="Review queue").click()
                page.locator("#queue").get_by_text("REVIEW", exact=True).filter(
                    visible=True
                ).first.wait_for()
                waits.append(time.perf_counter() - started)

            def floor() -> None:
                page.goto(empty_url)
                page.locator("#empty").wait_for()

            live()  # warm-up: the browser's cache holds Gradio's scripts, as at a station PC
            found = [("browser: page load to live table + KPIs", median_s(live, runs))]
            waits: list[float] = []
            for _ in range(runs + 1):
                queue()
            found.append(("browser: review tab clicked to its rows", statistics.median(waits[1:])))
            floor()
            found.append(("browser: empty Gradio page (floor)", median_s(floor, runs)))
            browser.close()
    finally:
        empty.close()
    target = f"target < {TARGET_S:g} s"
    return [(name, seconds, target if "floor" not in name else "") for name, seconds in found]


def main() -> None:
    args = parse_args()
    console = Console(width=110)
    store, built = open_store(args.workdir, args.n)
    try:
        if built and not args.rebuild:
            console.print(f"using the database built before: {store.url}")
        else:
            if args.rebuild:
                store.close()
                (args.workdir / f"parts-{args.n}" / "BUILT").unlink(missing_ok=True)
                store, _ = open_store(args.workdir, args.n)
            started = time.perf_counter()
            written = build(store, args.n, args.batch, args.seed)
            elapsed = time.perf_counter() - started
            (args.workdir / f"parts-{args.n}" / "BUILT").write_text(f"{written}\n")
            console.print(f"built {written} in {elapsed:.0f} s: {store.url}")
        console.print(f"counts (all time): {store.counts()}")
        table = Table(title=f"console queries, {args.n:,} parts, median of {args.runs} runs")
        for column in ("query", "median ms", "note"):
            table.add_column(column, justify="right" if column == "median ms" else "left")
        for name, call, note in queries(store):
            if call is None:
                table.add_row(name, "-", note)
                continue
            seconds = median_s(call, args.runs)
            if note.startswith("target"):
                note += ": met" if seconds < TARGET_S else ": MISSED"
            table.add_row(name, f"{1000 * seconds:,.1f}", note)
        console.print(table)
        export = Table(title="records export, the 7 days (every part)")
        for column in ("format", "median s", "parts/s", "peak Python MB"):
            export.add_column(column, justify="left" if column == "format" else "right")
        for suffix, seconds, rate, peak in exports(store, args.workdir, args.runs):
            export.add_row(suffix, f"{seconds:.1f}", f"{rate:,.0f}", f"{peak:.1f}")
        console.print(export)
        if args.no_serve:
            return
        app = Table(title="the console served (same database)")
        for column in ("view", "median ms", "note"):
            app.add_column(column, justify="right" if column == "median ms" else "left")
        for name, seconds, note in served(store, args.runs):
            if note:
                note += ": met" if seconds < TARGET_S else ": MISSED"
            app.add_row(name, f"{1000 * seconds:,.1f}", note)
        console.print(app)
    finally:
        store.close()


if __name__ == "__main__":
    main()
