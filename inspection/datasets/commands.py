"""``inspection datasets export-reviews``: operator reviews as an MVTec AD training set.

Torch-free; SQLAlchemy and the export itself are imported inside the command, so that
``inspection --help`` stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from inspection.records.commands import Db, Evidence, SpoolPath, missing_extra, parse_time
from inspection.terminal import console


def export_reviews_command(
    db: Db,
    out: Annotated[
        Path,
        typer.Option(help="Folder to write: <product>/train|test|ground_truth and reviews.jsonl."),
    ],
    station: Annotated[str | None, typer.Option(help="Only parts of this station.")] = None,
    product: Annotated[str | None, typer.Option(help="Only parts of this product.")] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Only parts captured from this ISO date or time on (UTC if no zone)."),
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Only parts captured before this ISO date or time.")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Replace a non-empty --out (once the new export is complete).")
    ] = False,
    evidence: Evidence = None,
    spool: SpoolPath = None,
) -> None:
    """Export the parts operators reviewed as training data, one dataset per product.

    PASS goes to train/good, REJECT to test/<class> with its mask (drawn, or the
    machine's boxes the reviewer accepted); REVIEW, and parts whose evidence is gone, are
    skipped and counted."""
    start = None if since is None else parse_time(since, "--since")
    end = None if until is None else parse_time(until, "--until")
    try:
        from inspection.datasets.reviews import export_reviews
        from inspection.records.db import require_database
        from inspection.records.store import RecordStore
    except ImportError as error:
        raise missing_extra(error) from error
    require_database(db)
    with RecordStore(db, evidence, spool) as store:
        summary = export_reviews(
            store,
            out,
            station=station,
            product=product,
            since=start,
            until=end,
            overwrite=overwrite,
        )
    console.print(summary.summary(), highlight=False, soft_wrap=True)
