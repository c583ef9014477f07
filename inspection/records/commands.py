"""``inspection records migrate|prune|stats|export``: the records database from the command line.

Torch-free; SQLAlchemy and Alembic are imported inside each command (``line`` extra).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from inspection.errors import UserError, one_line
from inspection.terminal import UserErrorsExit, console

records_app = typer.Typer(
    help="The records of every part: create or upgrade the database, prune, count.",
    no_args_is_help=True,
    cls=UserErrorsExit,  # also when run on its own: a UserError is one line, exit 2
)

Db = Annotated[
    str,
    typer.Option(
        "--db",
        help="SQLAlchemy URL (sqlite:///records.db, postgresql+psycopg://user@host/db) "
        "or a SQLite file path.",
    ),
]
Evidence = Annotated[
    Path | None,
    typer.Option(help="Evidence folder (default: evidence/ next to a SQLite file)."),
]
SpoolPath = Annotated[
    Path | None,
    typer.Option(
        "--spool", help="Records spool file (default: records-outbox.db next to a SQLite file)."
    ),
]

Since = Annotated[
    str | None,
    typer.Option(
        help="Only parts captured since: a period back from now (24h, 7d) or an ISO date "
        "or time (2024-05-01, 2024-05-01T06:00; UTC unless it names a zone)."
    ),
]

_PERIOD = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_period(text: str, option: str = "--older-than") -> timedelta:
    """``"90d"``, ``"12h"``, ``"30m"``, ``"2w"``, ``"45s"`` as a :class:`timedelta`.

    Raises
    ------
    UserError
        For anything else, or a period that is not positive.
    """
    match = _PERIOD.fullmatch(text)
    if match is None:
        raise UserError(f"{option} must be a number and a unit s/m/h/d/w (90d), not {text!r}")
    period = timedelta(**{_UNITS[match[2]]: float(match[1])})
    if period <= timedelta(0):
        raise UserError(f"{option} must be positive, not {text!r}")
    return period


def parse_time(text: str, option: str) -> datetime:
    """An ISO date or date-time (``2024-05-01``, ``2024-05-01T06:00+02:00``); UTC when it
    names no time zone.

    Raises
    ------
    UserError
        When ``text`` is not ISO 8601.
    """
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UserError(
            f"{option} must be an ISO date or time (2024-05-01, 2024-05-01T06:00), not {text!r}"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def parse_since(text: str, option: str = "--since") -> datetime:
    """The start of a window: a period back from now (``24h``, ``7d``) or an ISO date or
    date-time (``2024-05-01``)."""
    if _PERIOD.fullmatch(text):
        return datetime.now(UTC) - parse_period(text, option)
    try:
        return parse_time(text, option)
    except UserError:
        raise UserError(
            f"{option} must be a period back from now (24h, 7d) or an ISO date or time "
            f"(2024-05-01, 2024-05-01T06:00), not {text!r}"
        ) from None


def missing_extra(error: ImportError) -> UserError:
    return UserError(f"{error.name} is not installed: pip install 'inspection[line]'")


@contextmanager
def database_errors(db: str) -> Iterator[None]:
    """A database the commands cannot open or read (not a database, a server that does not
    answer) is the user's ``--db``, not a bug: one line naming it (password hidden)."""
    from sqlalchemy.exc import SQLAlchemyError

    from inspection.records.db import normalize_url, safe_url
    from inspection.records.store import DatabaseUnavailable

    try:
        yield
    except DatabaseUnavailable as error:  # its reason is the store's logged warning
        raise UserError(f"{error} (--db)") from None
    except SQLAlchemyError as error:
        reason = one_line(getattr(error, "orig", None) or error)
        raise UserError(f"--db {safe_url(normalize_url(db))}: {reason}") from None


@records_app.command("migrate")
def migrate_command(db: Db) -> None:
    """Create the records database, or upgrade its schema to the newest revision."""
    try:
        from inspection.records.db import (
            create_records_engine,
            current_revision,
            head_revision,
            upgrade,
        )
    except ImportError as error:
        raise missing_extra(error) from error
    engine = create_records_engine(db)
    with database_errors(db):
        before = current_revision(engine)
        upgrade(engine)
        after = current_revision(engine)
    assert after == head_revision()
    console.print(
        f"records schema at {after}" + ("" if before == after else f" (was {before or 'empty'})"),
        highlight=False,
    )
    engine.dispose()


@records_app.command("prune")
def prune_command(
    db: Db,
    older_than: Annotated[
        str, typer.Option(help="Retention: records captured before now minus this (90d).")
    ],
    dry_run: Annotated[
        bool, typer.Option(help="Count what would be removed; remove nothing.")
    ] = False,
    evidence: Evidence = None,
    spool: SpoolPath = None,
) -> None:
    """Delete the records older than the retention period, and their evidence files.

    Evidence files that a kept record still refers to stay. Prints what it removed (or,
    with --dry-run, would remove)."""
    period = parse_period(older_than)
    try:
        from inspection.records.db import require_database
        from inspection.records.store import RecordStore
    except ImportError as error:
        raise missing_extra(error) from error
    require_database(db)
    with database_errors(db), RecordStore(db, evidence, spool) as store:
        counts = store.prune(period, dry_run=dry_run)
    console.print(counts.summary(), highlight=False, soft_wrap=True)


@records_app.command("stats")
def stats_command(
    db: Db,
    since: Since = None,
    evidence: Evidence = None,
    spool: SpoolPath = None,
) -> None:
    """Parts by verdict, records still spooled, and the schema revision."""
    try:
        from inspection.records.db import require_database
        from inspection.records.store import RecordStore
    except ImportError as error:
        raise missing_extra(error) from error
    require_database(db)
    start = None if since is None else parse_since(since)
    with database_errors(db), RecordStore(db, evidence, spool) as store:
        counts = store.counts(since=start)
        pending = store.pending()
        from inspection.records.db import current_revision

        revision = current_revision(store.engine)
    total = sum(counts.values())
    window = "all time" if since is None else f"last {since}"
    console.print(f"parts ({window}): {total}", highlight=False)
    for verdict, count in counts.items():
        share = f" ({100 * count / total:.1f}%)" if total else ""
        console.print(f"  {verdict:<14}{count}{share}", highlight=False)
    console.print(f"spooled, not yet in the database: {pending}", highlight=False)
    console.print(f"schema revision: {revision}", highlight=False)


@records_app.command("export")
def export_command(
    db: Db,
    out: Annotated[
        Path,
        typer.Option(
            help="The file to write: .csv (one row a part, defects as counts and lists) or "
            ".jsonl (each defect whole). Replaced whole when it exists."
        ),
    ],
    since: Since = None,
    until: Annotated[
        str | None,
        typer.Option(help="Only parts captured before this ISO date or time."),
    ] = None,
    station: Annotated[str | None, typer.Option(help="Only this station's parts.")] = None,
    product: Annotated[str | None, typer.Option(help="Only this product's parts.")] = None,
    verdict: Annotated[
        str | None,
        typer.Option(help="Only parts with this verdict: PASS, REJECT, REVIEW or NOT_INSPECTED."),
    ] = None,
    evidence: Evidence = None,
    spool: SpoolPath = None,
) -> None:
    """Export the parts' records for a spreadsheet, an MES or SPC: CSV or JSON lines.

    One row a part, in recording order: verdict, severity, action, clauses, defects, every
    version that made the decision, and the latest operator review."""
    start = None if since is None else parse_since(since)
    end = None if until is None else parse_time(until, "--until")
    try:
        from inspection.records.db import require_database
        from inspection.records.export import check_out, export_records
        from inspection.records.store import RecordStore
    except ImportError as error:
        raise missing_extra(error) from error
    check_out(out)
    require_database(db)
    with database_errors(db), RecordStore(db, evidence, spool) as store:
        done = export_records(store, out, start, end, station, verdict, product=product)
    verdicts = "  ".join(f"{k} {v}" for k, v in sorted(done.verdicts.items()))
    console.print(
        f"{done.parts} parts written to {done.out}: {verdicts}", highlight=False, soft_wrap=True
    )
