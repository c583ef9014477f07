"""The ``inspection`` command line.

Commands import what they need when they run, so ``inspection --help`` stays fast and
the edge runtime's commands never pull in torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="inspection",
    help="Multimodal industrial visual inspection.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
standards_app = typer.Typer(
    help="Validate, render and apply defect standards.", no_args_is_help=True
)
datasets_app = typer.Typer(help="Load and check datasets.", no_args_is_help=True)
app.add_typer(standards_app, name="standards")
app.add_typer(datasets_app, name="datasets")

console = Console()
err_console = Console(stderr=True)


@app.command()
def version() -> None:
    """Print the package version."""
    from importlib.metadata import version as pkg_version

    console.print(pkg_version("inspection"))


@app.command()
def synth(
    out: Annotated[Path, typer.Option(help="Output folder (MVTec AD layout + manifest.jsonl).")],
    n: Annotated[int, typer.Option(help="Number of parts.")] = 1000,
    seed: Annotated[
        int, typer.Option(help="Random seed; the output is deterministic per seed.")
    ] = 0,
    product: Annotated[str, typer.Option(help="Product: bracket, panel or tile.")] = "bracket",
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 256,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 2,
    train_ratio: Annotated[float, typer.Option(help="Share of parts in train/good.")] = 0.5,
    defect_ratio: Annotated[float, typer.Option(help="Share of defective test parts.")] = 0.7,
) -> None:
    """Synthesise a production line run: part images, defect masks and tap-test audio."""
    from inspection.synth import synthesize

    try:
        summary = synthesize(
            out,
            n=n,
            seed=seed,
            product=product,
            size=size,
            workers=workers,
            train_ratio=train_ratio,
            defect_ratio=defect_ratio,
        )
    except ValueError as exc:
        _fail(str(exc))
    table = Table(
        title=f"{summary.n} parts of {product} in {summary.seconds:.1f} s "
        f"({summary.parts_per_second:.0f} parts/s) -> {out}"
    )
    table.add_column("split")
    table.add_column("label")
    table.add_column("parts", justify="right")
    for split, labels in summary.counts.items():
        for label, count in labels.items():
            table.add_row(split, label, str(count))
    console.print(table)


@standards_app.command("validate")
def standards_validate(
    files: Annotated[list[Path], typer.Argument(help="Standard YAML files.")],
) -> None:
    """Validate standards; every problem is printed with its file, line and field."""
    from inspection.standards import StandardError, load_standard

    failed = False
    for path in files:
        try:
            standard = load_standard(path)
        except StandardError as exc:
            failed = True
            for problem in exc.problems:
                err_console.print(f"[red]✗[/red] {problem}", highlight=False)
            continue
        console.print(
            f"[green]✓[/green] {path}: {standard.id} rev {standard.revision} "
            f"version {standard.version} ({len(standard.clauses)} clauses)",
            highlight=False,
        )
    if failed:
        raise typer.Exit(1)


@standards_app.command("render")
def standards_render(
    file: Annotated[Path, typer.Argument(help="Standard YAML file or product name.")],
    lang: Annotated[str, typer.Option(help="Language: en or zh.")] = "en",
) -> None:
    """Print a standard as the prompt text the report decoder reads."""
    from inspection.standards import render_standard

    typer.echo(render_standard(_load_standard(file), lang))


@standards_app.command("apply")
def standards_apply(
    file: Annotated[Path, typer.Argument(help="Standard YAML file or product name.")],
    manifest: Annotated[
        Path | None, typer.Option(help="Dataset manifest.jsonl (or its folder): judge its parts.")
    ] = None,
    defects: Annotated[
        Path | None,
        typer.Option(help="JSON file: a list of defects {defect_class, attributes, zone}."),
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write results as JSON.")] = None,
    limit: Annotated[int, typer.Option(help="Rows to print.")] = 30,
) -> None:
    """Apply a standard to measured defects: severity, action and the clause cited."""
    from inspection.standards import apply_standard
    from inspection.types import Defect

    standard = _load_standard(file)
    if (manifest is None) == (defects is None):
        _fail("give exactly one of --manifest or --defects")
    if defects is not None:
        items = json.loads(defects.read_text(encoding="utf-8"))
        parts = [
            (
                "defects",
                [
                    Defect(d["defect_class"], d.get("attributes", {}), zone=d.get("zone"))
                    for d in items
                ],
                None,
                None,
            )
        ]
    else:
        parts = list(_manifest_parts(manifest))
    results = [
        (label, apply_standard(standard, found, part_id=part_id, image_size=size))
        for part_id, found, label, size in parts
    ]
    _print_results(results, limit, title=f"{standard.id} rev {standard.revision}")
    if json_out:
        json_out.write_text(json.dumps([r.to_json() for _, r in results], indent=1))


def _manifest_parts(path: Path):
    """(part_id, ground-truth defects, label, image size) for each part of a manifest."""
    from inspection.datasets import load_manifest
    from inspection.types import Defect

    if path.is_dir():
        path = path / "manifest.jsonl"
    for sample in load_manifest(path).samples:
        found = [
            Defect(
                d["defect_class"],
                d.get("attributes", {}),
                zone=d.get("zone"),
                frame_index=0,
                **_centroid_box(d),
            )
            for d in sample.attributes.get("defects", [])
        ]
        size = sample.attributes.get("image_size")
        yield sample.part_id, found, sample.label, tuple(size) if size else None


def _centroid_box(defect: dict) -> dict:
    from inspection.types import BBox

    box = defect.get("bbox") or (
        [*defect["centroid"], defect["centroid"][0] + 1, defect["centroid"][1] + 1]
        if defect.get("centroid")
        else None
    )
    return {"bbox": BBox(*map(int, box))} if box else {}


def _print_results(results, limit: int, title: str) -> None:
    from collections import Counter

    table = Table(title=title)
    for col in ("part", "label", "verdict", "action", "severity", "clauses"):
        table.add_column(col)
    colours = {"PASS": "green", "REJECT": "red", "REVIEW": "yellow"}
    for label, r in results[:limit]:
        table.add_row(
            r.part_id,
            label or "",
            f"[{colours[r.verdict]}]{r.verdict}[/]",
            r.action,
            r.severity or "",
            ", ".join(r.clauses),
        )
    console.print(table)
    counts = Counter(r.verdict.value for _, r in results)
    console.print("  ".join(f"{v}: {counts.get(v, 0)}" for v in ("PASS", "REVIEW", "REJECT")))


@datasets_app.command("check")
def datasets_check(
    path: Annotated[
        Path, typer.Argument(help="Dataset folder (MVTec, folder-per-class) or .jsonl")
    ],
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the report as JSON.")
    ] = None,
) -> None:
    """Decode every file and report problems; exits 1 when any file is broken."""
    from inspection.datasets import DatasetError, check_dataset, print_check_report

    try:
        report = check_dataset(path)
    except DatasetError as exc:
        _fail(str(exc))
    print_check_report(report, console)
    if json_out:
        json_out.write_text(json.dumps(report.to_json(), indent=1))
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def demo(
    out: Annotated[
        Path, typer.Option(help="Output folder for the run and its HTML report.")
    ] = Path("runs/demo"),
    product: Annotated[str, typer.Option(help="Product: bracket, panel or tile.")] = "bracket",
    n: Annotated[int, typer.Option(help="Parts through the simulated line.")] = 48,
    seed: Annotated[int, typer.Option(help="Line seed.")] = 2026,
) -> None:
    """Run a simulated line through measurement and the product's standard."""
    from inspection.demo import run_demo

    run_demo(out=out, product=product, n=n, seed=seed, console=console)


def _load_standard(file: Path):
    from inspection.config import standard_path
    from inspection.standards import StandardError, load_standard

    try:
        return load_standard(standard_path(file))
    except StandardError as exc:
        _fail(str(exc))


def _fail(message: str) -> None:
    err_console.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(2)


if __name__ == "__main__":
    app()
