"""Opening the records database: an engine on any SQLAlchemy URL, its schema at head.

SQLite (the default, one file per station) runs in WAL mode with a busy timeout and
foreign keys on; PostgreSQL (a shared deployment) or any other SQLAlchemy URL works by
configuration. The schema is created and upgraded by the Alembic migrations shipped in
``migrations/``, run from code: no ``alembic.ini`` is needed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from inspection.errors import UserError

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
DEFAULT_BUSY_TIMEOUT_S = 30.0
SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file
WRITE_OPTION = "inspection_write"
"""Execution option of a connection that writes: on SQLite it begins with the write lock."""


def writer(engine: Engine) -> Engine:
    """The same engine (same pool), for transactions that write."""
    return engine.execution_options(**{WRITE_OPTION: True})


def alembic_config(url: str | None = None) -> Any:
    """An Alembic ``Config`` for the shipped migrations (``url`` for offline / CLI use)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        # ConfigParser interpolation: a '%' in a password must be doubled.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL; ``None`` for another backend or in memory."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def require_database(url: str | Path, missing_ok: bool = False) -> None:
    """Refuse a SQLite file that does not exist, or is not a database: opening a store creates
    its database (a command that reads or prunes records must not invent an empty one at a
    mistyped path), and retries one it cannot read.

    Parameters
    ----------
    url
        The records database.
    missing_ok
        Let a SQLite file that is not there pass (a command that writes records creates
        it); one that is there must still be a database.

    Raises
    ------
    UserError
        When ``url`` names a SQLite file that is not there or is not a SQLite database.
    """
    path = sqlite_path(normalize_url(url))
    if path is None or (missing_ok and not path.exists()):
        return
    if not path.is_file():
        raise UserError(
            f"no records database at {path} (`inspection records migrate --db {path}` creates one)"
        )
    with path.open("rb") as f:
        header = f.read(len(SQLITE_HEADER))
    if header and header != SQLITE_HEADER:  # an empty file is an empty SQLite database
        raise UserError(f"{path}: not a SQLite database")


def create_records_engine(
    url: str | Path, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S
) -> Engine:
    """An engine on ``url``; for SQLite: WAL, ``busy_timeout`` and foreign keys on.

    Parameters
    ----------
    url : str | Path
        Any SQLAlchemy URL (``sqlite:///records.db``, ``postgresql+psycopg://...``).
        A bare path is taken as a SQLite file.
    busy_timeout_s : float
        How long a write waits for another connection's lock before it fails (the record
        then goes to the spool).

    Raises
    ------
    UserError
        When the URL does not parse or names a driver that is not installed.
    """
    url = normalize_url(url)
    path = sqlite_path(url)
    options: dict[str, Any] = {}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The driver's own timeout too: it applies before the PRAGMA below can run.
        options["connect_args"] = {"timeout": busy_timeout_s}
    else:
        options["pool_pre_ping"] = True  # a server restarted under us: reconnect
    try:
        engine = create_engine(url, **options)
    except Exception as error:  # ArgumentError, NoSuchModuleError, a missing driver
        raise UserError(f"cannot open records database {safe_url(url)}: {error}") from error
    if engine.dialect.name == "sqlite":
        _sqlite_pragmas(engine, busy_timeout_s, wal=path is not None)
    return engine


def _sqlite_pragmas(engine: Engine, busy_timeout_s: float, wal: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, connection_record) -> None:
        cursor = dbapi_connection.cursor()
        if wal:
            cursor.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable against a process crash in WAL mode; the spool, which must
            # survive power loss before the database has the record, uses FULL.
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
        # The driver's own BEGIN is deferred and skipped before DDL; SQLAlchemy emits it.
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        # A writer takes the write lock up front (BEGIN IMMEDIATE): a deferred transaction
        # that read first and then writes fails at once with SQLITE_BUSY when another
        # writer got in between, without waiting for the busy timeout.
        immediate = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def normalize_url(url: str | Path) -> str:
    """A SQLAlchemy URL; a bare file path becomes ``sqlite:///<path>``."""
    url = str(url)
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    return url


def safe_url(url: str) -> str:
    """``url`` as it may be printed or logged: its password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparsable URL>"


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Create or upgrade the schema of ``engine``'s database to ``revision``."""
    from alembic import command

    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (``None``: no schema yet)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    """The newest revision shipped."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, f"no migrations in {MIGRATIONS}"
    return head


def open_records(url: str | Path, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> Engine:
    """An engine on ``url`` with its schema created or upgraded to the newest revision.

    Examples
    --------
    >>> engine = open_records("sqlite:////var/lib/inspection/records.db")  # doctest: +SKIP
    """
    engine = create_records_engine(url, busy_timeout_s)
    before = current_revision(engine)
    head = head_revision()
    if before != head:
        upgrade(engine)
        log.info("records database %s: schema %s -> %s", safe_url(url), before, head)
    return engine
