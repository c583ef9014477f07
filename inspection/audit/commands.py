"""``inspection audit``: the command line over :func:`inspection.audit.audit`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from inspection.terminal import (
    GuardBandFile,
    NoVerify,
    ProfilerDents,
    ReviewFrom,
    console,
    err_console,
    fail,
)

if TYPE_CHECKING:
    from inspection.io import HeightEncoding


def audit_command(
    input_spec: Annotated[
        str,
        typer.Argument(
            metavar="INPUT",
            help="A folder (searched recursively), a .zip, a quoted glob ('lot7/**/*.png') "
            "or a .jsonl manifest.",
        ),
    ],
    model: Annotated[
        Path, typer.Option(help="Model directory, edge bundle folder or exported .onnx edge graph.")
    ],
    standard: Annotated[Path, typer.Option(help="Defect standard: YAML file or product name.")],
    out: Annotated[
        Path,
        typer.Option(
            help="Output folder: report.html, results.csv, results.jsonl, overlays/. "
            "Running again into it resumes (parts already done are skipped)."
        ),
    ],
    engine: Annotated[str, typer.Option(help="local, or ray (Ray Data).")] = "local",
    batch_size: Annotated[
        int, typer.Option(help="Parts whose tiles run through the model together.")
    ] = 16,
    workers: Annotated[
        int,
        typer.Option(help="Decoding threads (local engine) or model replicas (ray engine)."),
    ] = 4,
    mm_per_px: Annotated[
        float | None,
        typer.Option(
            help="Scale for parts whose input states none (manifest, dataset.yaml); "
            "without one, sizes are not measured and size clauses go to review."
        ),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            help="An existing Ray cluster (e.g. ray://head:10001 or auto); default: a "
            "local Ray on 127.0.0.1. Input, model, standard and --out must be reachable "
            "at the same paths from every node."
        ),
    ] = None,
    normality: Annotated[
        Path | None,
        typer.Option(
            help="Fuse this feature normality model of the product (inspection train "
            "--normal-only) with MODEL: a region only it finds goes to REVIEW. Parts then "
            "run one at a time."
        ),
    ] = None,
    review_from: ReviewFrom = None,
    guard_band: GuardBandFile = None,
    profiler_dents: ProfilerDents = False,
    height_scale: Annotated[
        float | None,
        typer.Option(
            help="Integer height maps (a 3D camera's range counts): mm per count, as the "
            "camera reports it (GenICam Scan3dCoordinateScale; negative for a range). "
            "Default: dataset.yaml's height_encoding; float maps are mm already."
        ),
    ] = None,
    height_offset: Annotated[
        float, typer.Option(help="With --height-scale: mm at count 0 (Scan3dCoordinateOffset).")
    ] = 0.0,
    height_invalid: Annotated[
        int | None,
        typer.Option(
            help="With --height-scale: the count of a point the profiler missed "
            "(Scan3dInvalidDataValue)."
        ),
    ] = None,
    no_verify: NoVerify = False,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="The line's records database (SQLAlchemy URL or SQLite file; created if "
            "absent): every audited part is recorded there with its image, so the console "
            "lists and reviews it. Evidence goes to evidence/ next to a SQLite file.",
        ),
    ] = None,
    station: Annotated[
        str,
        typer.Option(
            help="The station audited parts are recorded at with --db (a part id is "
            "recorded once a station: name each lot's, e.g. --station lot7)."
        ),
    ] = "audit",
) -> None:
    """Audit an archive of part images under a standard, with a report to read.

    Writes report.html, results.csv and results.jsonl, with the defect overlays of every
    part that did not pass."""
    from inspection.audit import AuditOptions, audit
    from inspection.config import standard_path
    from inspection.io import HeightEncoding

    if ray_address is not None and engine != "ray":
        fail("--ray-address needs --engine ray")
    if station != "audit" and db is None:
        fail("--station needs --db (the records database the parts are recorded in)")
    if not station.strip():
        fail("--station must name a station")
    if height_scale is None and (height_offset != 0.0 or height_invalid is not None):
        fail("--height-offset and --height-invalid need --height-scale")
    encoding = None
    if height_scale is not None:
        encoding = HeightEncoding(height_scale, height_offset, height_invalid)
    options = AuditOptions(
        batch_size=batch_size,
        workers=workers,
        mm_per_px=mm_per_px,
        engine=engine,
        ray_address=ray_address,
        verify=not no_verify,
        normality=normality,
        review_from=review_from,
        guard_band=guard_band,
        profiler_dents=profiler_dents,
        height_encoding=encoding,
    )
    _warn_of_files_not_audited(input_spec)
    if profiler_dents:
        _warn_of_no_height_maps(input_spec)
    standard_file = standard_path(standard)
    with ExitStack() as stack:
        store = None if db is None else stack.enter_context(_records(db))  # refused first
        summary = audit(input_spec, out, model, standard_file, options)
        verdicts = "  ".join(f"{k} {v}" for k, v in summary.verdicts.items())
        console.print(
            f"{summary.parts} parts ({summary.new} audited now, {summary.skipped} done "
            f"before) in {summary.seconds:.1f} s ({summary.images_per_second:.1f} img/s): "
            f"{verdicts}; {summary.unreadable} could not be read",
            highlight=False,
        )
        report = (summary.out / "report.html").resolve()
        console.print(f"report: [link=file://{report}]{summary.out / 'report.html'}[/link]")
        if store is not None:
            _record(input_spec, out, store, station, standard_file, options.height_encoding)


@contextmanager
def _records(db: str) -> Iterator[Any]:
    """The records database of ``--db`` (created when absent), opened before the audit so
    that one it cannot write is refused before the work; its errors are one line naming it."""
    from inspection.records.commands import database_errors, missing_extra

    try:
        from inspection.records.db import open_records, require_database
        from inspection.records.store import RecordStore
    except ImportError as error:
        raise missing_extra(error) from error
    require_database(db, missing_ok=True)
    with database_errors(db):
        # Reachable and at the newest schema now, before the store makes its evidence
        # folder and spool: a database it cannot write leaves nothing behind.
        open_records(db).dispose()
    with database_errors(db), RecordStore(db) as store:
        yield store


def _record(
    input_spec: str,
    out: Path,
    store: Any,
    station: str,
    standard: Path,
    height_encoding: HeightEncoding | None = None,
) -> None:
    """The audited parts into the records database (``--db``)."""
    from inspection.audit.recording import record_audit
    from inspection.standards import load_standard

    product = load_standard(standard).product
    done = record_audit(input_spec, out, store, station, product, height_encoding=height_encoding)
    pending = f"; {done.pending} spooled until the database answers" if done.pending else ""
    console.print(
        f"records: {done.new} parts recorded at station {done.station!r}, {done.before} "
        f"recorded before{pending}",
        highlight=False,
    )


def _warn_of_no_height_maps(input_spec: str) -> None:
    """``--profiler-dents`` on an input none of whose parts has a height map searches
    nothing: say so before the audit, not after it."""
    from inspection.audit.inputs import iter_inputs

    if not any(item.height_map for item in iter_inputs(input_spec)):
        err_console.print(
            f"warning: --profiler-dents: no part of {input_spec} has a height map (a "
            "manifest's `height`, or <stem>.height.tiff or .height.png beside an image): "
            "nothing is searched",
            highlight=False,
            soft_wrap=True,
        )


def _warn_of_files_not_audited(input_spec: str) -> None:
    """Name the files of the input the audit will pass over (``.gif 2, .txt 1``)."""
    from inspection.audit.inputs import describe_files_not_audited, files_not_audited

    warning = describe_files_not_audited(files_not_audited(input_spec))
    if warning:
        err_console.print(f"warning: {warning}", highlight=False, soft_wrap=True)
