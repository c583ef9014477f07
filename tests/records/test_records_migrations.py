"""The records schema: created by the shipped migrations, matching the models, on SQLite
and (where a PostgreSQL server binary is installed) on a real PostgreSQL."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("alembic", reason="records need the line extra (sqlalchemy, alembic)")

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from records_helpers import result
from sqlalchemy import inspect

from inspection.records.db import (
    alembic_config,
    create_records_engine,
    current_revision,
    head_revision,
    open_records,
)
from inspection.records.models import Base
from inspection.types import Verdict

TABLES = {"stations", "parts", "inspections", "defects", "reports", "reviews"}


def _diff(engine) -> list:
    """What Alembic's autogenerate finds between the database and the models."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)


def test_migrations_create_the_schema_from_empty(tmp_path):
    engine = open_records(f"sqlite:///{tmp_path / 'records.db'}")
    try:
        assert current_revision(engine) == head_revision()
        names = set(inspect(engine).get_table_names())
        assert names >= TABLES and "alembic_version" in names
        indexes = {i["name"] for i in inspect(engine).get_indexes("inspections")}
        assert {
            "ix_inspections_captured_at",
            "ix_inspections_verdict_captured_at",
            "ix_inspections_station_id_captured_at",
        } <= indexes
        with engine.connect() as c:
            assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert c.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    finally:
        engine.dispose()


def test_models_match_head(tmp_path):
    # `alembic check`: autogenerate against a database at head finds nothing to do, so
    # every model change has its revision.
    engine = open_records(f"sqlite:///{tmp_path / 'records.db'}")
    try:
        assert _diff(engine) == []
    finally:
        engine.dispose()


def test_a_missing_migration_is_detected(tmp_path):
    # The check above can fail: a database one index short of the models shows a diff.
    engine = open_records(f"sqlite:///{tmp_path / 'records.db'}")
    try:
        with engine.begin() as c:
            c.exec_driver_sql("DROP INDEX ix_inspections_verdict_captured_at")
        kinds = [d[0] for d in _diff(engine)]
        assert kinds == ["add_index"]
    finally:
        engine.dispose()


def test_downgrade_and_upgrade_again(tmp_path):
    url = f"sqlite:///{tmp_path / 'records.db'}"
    engine = open_records(url)
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert set(inspect(engine).get_table_names()) & TABLES == set()
    assert current_revision(engine) is None
    engine.dispose()
    engine = open_records(url)  # upgrades again
    assert set(inspect(engine).get_table_names()) >= TABLES
    engine.dispose()


def test_a_database_of_the_previous_revision_is_upgraded_with_its_parts(tmp_path):
    from inspection.records.store import RecordStore

    url = f"sqlite:///{tmp_path / 'records.db'}"
    with RecordStore(url, tmp_path / "ev", tmp_path / "spool.db") as store:
        assert store.record("P-0", "s1", result("P-0", Verdict.REJECT, defects=1))
    engine = open_records(url)
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0002")  # before defects kept a footprint's box
    with engine.begin() as c:
        assert "footprint_bbox" not in {x["name"] for x in inspect(c).get_columns("defects")}
    engine.dispose()
    with RecordStore(url, tmp_path / "ev", tmp_path / "spool.db") as store:  # upgrades
        assert store.record("P-1", "s1", result("P-1", Verdict.REJECT, defects=2))
        assert [d["footprint_bbox"] for d in store.get("P-1", "s1").defects] == [None, None]
        (kept,) = store.get("P-0", "s1").defects  # recorded before: kept, with no box
        assert kept["bbox"] == [0, 0, 5, 7] and kept["footprint_bbox"] is None
    engine = open_records(url)
    assert current_revision(engine) == head_revision() and _diff(engine) == []
    engine.dispose()


def test_open_twice_is_a_no_op_and_keeps_data(tmp_path):
    from inspection.records.store import RecordStore

    url = f"sqlite:///{tmp_path / 'records.db'}"
    with RecordStore(url, tmp_path / "ev", tmp_path / "spool.db") as store:
        assert store.record("P-1", "s1", result("P-1"))
    with RecordStore(url, tmp_path / "ev", tmp_path / "spool.db") as store:
        assert store.get("P-1", "s1").verdict == "PASS"
        assert not store.record("P-1", "s1", result("P-1"))


def test_bad_url_is_a_user_error():
    from inspection.errors import UserError

    with pytest.raises(UserError, match="cannot open records database"):
        create_records_engine("nosuchdialect://x/y")


# ---------------------------------------------------------------------- PostgreSQL


def _pg_bin() -> Path | None:
    initdb = shutil.which("initdb")
    if initdb:
        return Path(os.path.realpath(initdb)).parent
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """A throw-away PostgreSQL server on 127.0.0.1 (initdb in a temporary folder)."""

    def __init__(self, bin_dir: Path, run_as: list[str]) -> None:
        self.bin_dir, self.run_as = bin_dir, run_as
        self.root = Path(tempfile.mkdtemp(prefix="records-pg-"))
        self.data = self.root / "data"
        if run_as:
            shutil.chown(self.root, "postgres")
        self.port = _free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self._pg("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust")

    def _pg(self, tool: str, *args: str) -> None:
        command = [*self.run_as, str(self.bin_dir / tool), *args]
        subprocess.run(command, check=True, capture_output=True, timeout=150)

    def start(self) -> None:
        options = f"-h 127.0.0.1 -p {self.port} -k {self.root} -F"
        log = str(self.root / "log")
        self._pg(
            "pg_ctl", "-D", str(self.data), "-o", options, "-w", "-t", "120", "-l", log, "start"
        )

    def stop(self) -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "120", "stop")


@pytest.fixture(scope="module")
def postgres():
    """A real PostgreSQL server, when its binaries are installed here."""
    pytest.importorskip("psycopg", reason="PostgreSQL needs the psycopg driver")
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binary here (initdb / pg_ctl not installed)")
    run_as: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL")
        run_as = ["runuser", "-u", "postgres", "--"]
    server = PostgresServer(bin_dir, run_as)
    server.start()
    try:
        yield server
    finally:
        subprocess.run(
            [*run_as, str(bin_dir / "pg_ctl"), "-D", str(server.data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(server.root, ignore_errors=True)


def test_postgresql_schema_and_records(postgres, tmp_path):
    from inspection.records.store import RecordStore

    postgres_url = postgres.url
    engine = open_records(postgres_url)
    try:
        assert current_revision(engine) == head_revision()
        assert _diff(engine) == []
    finally:
        engine.dispose()
    with RecordStore(postgres_url, tmp_path / "ev", tmp_path / "spool.db") as store:
        assert store.record("P-1", "s1", result("P-1", Verdict.REJECT, defects=2))
        assert not store.record("P-1", "s1", result("P-1"))
        assert store.record_not_inspected("P-2", "s1", "camera lost")
        got = store.get("P-1", "s1")
        assert (got.verdict, len(got.defects), got.standard_version) == ("REJECT", 2, "1.2")
        assert got.captured_at.tzinfo is not None
        assert store.counts()["NOT_INSPECTED"] == 1
        assert store.pending() == 0


def test_postgresql_pages_and_exports_records(postgres, tmp_path):
    """The export's queries (pages by id, latest reviews by station and part) on the
    server the line would share."""
    import csv

    from inspection.records.export import export_records
    from inspection.records.store import RecordStore

    with RecordStore(postgres.url, tmp_path / "ev", tmp_path / "spool.db") as store:
        for i in range(3):
            store.record(f"X-{i}", "export-s", result(f"X-{i}", Verdict.REJECT, defects=i))
        store.add_review("X-1", "export-s", "ana", Verdict.PASS, "burr removed")
        pages = list(store.iter_parts(station="export-s", batch=2))
        assert [[p.part_id for p in page] for page in pages] == [["X-0", "X-1"], ["X-2"]]
        assert store.latest_reviews(pages[0])[("export-s", "X-1")]["decision"] == "PASS"
        done = export_records(store, tmp_path / "x.csv", station="export-s", progress=False)
    assert (done.parts, done.verdicts) == (3, {"REJECT": 3})
    with (tmp_path / "x.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["part_id"], r["defects"], r["review_decision"]) for r in rows] == [
        ("X-0", "0", ""),
        ("X-1", "1", "PASS"),
        ("X-2", "2", ""),
    ]


def test_postgresql_server_down_records_are_spooled_then_replayed(postgres, tmp_path):
    from inspection.records.store import RecordStore

    now = [1_000_000.0]
    store = RecordStore(postgres.url, tmp_path / "ev", tmp_path / "spool.db", clock=lambda: now[0])
    assert store.record("D-0", "s-down", result("D-0"))
    postgres.stop()
    try:
        for i in range(1, 6):
            assert store.record(f"D-{i}", "s-down", result(f"D-{i}"))
        assert store.pending() == 5
        now[0] += 120
        assert store.replay() == 0 and store.pending() == 5  # still down: all kept
    finally:
        postgres.start()
    now[0] += 120
    assert store.replay() == 5 and store.pending() == 0
    assert [p.part_id for p in store.latest(10, station="s-down")] == [
        f"D-{i}" for i in reversed(range(6))
    ]
    store.close()
