"""``inspection records migrate|prune|stats`` through typer, on a real SQLite file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from records_helpers import image, result
from typer.testing import CliRunner

from inspection.records.commands import parse_period, records_app
from inspection.records.db import create_records_engine, current_revision, head_revision
from inspection.records.store import RecordStore
from inspection.types import Verdict

runner = CliRunner()


def test_migrate_creates_then_reports_head(tmp_path):
    db = tmp_path / "lines" / "records.db"
    first = runner.invoke(records_app, ["migrate", "--db", f"sqlite:///{db}"])
    assert first.exit_code == 0, first.output
    assert f"records schema at {head_revision()} (was empty)" in first.output
    again = runner.invoke(records_app, ["migrate", "--db", str(db)])  # a bare path works
    assert again.exit_code == 0 and "(was" not in again.output
    assert current_revision(create_records_engine(str(db))) == head_revision()


def _fill(db, n_old: int, n_new: int) -> None:
    now = datetime.now(UTC)
    with RecordStore(db) as store:  # evidence/ and records-outbox.db next to the file
        for i in range(n_old):
            part = f"OLD-{i}"
            captured = now - timedelta(days=120)
            store.record(part, "s1", result(part, Verdict.REJECT, 1), [image(i)], captured)
        for i in range(n_new):
            store.record(f"NEW-{i}", "s1", result(f"NEW-{i}"), captured_at=now)
        store.record_not_inspected("GAP-1", "s1", "camera lost", captured_at=now)


def test_stats_and_prune(tmp_path):
    db = tmp_path / "records.db"
    _fill(db, n_old=3, n_new=2)
    stats = runner.invoke(records_app, ["stats", "--db", str(db)])
    assert stats.exit_code == 0, stats.output
    assert "parts (all time): 6" in stats.output
    assert "REJECT        3 (50.0%)" in stats.output
    assert "NOT_INSPECTED 1" in stats.output
    assert "spooled, not yet in the database: 0" in stats.output
    recent = runner.invoke(records_app, ["stats", "--db", str(db), "--since", "30d"])
    assert "parts (last 30d): 3" in recent.output

    prune = ["prune", "--db", str(db), "--older-than", "90d"]
    dry = runner.invoke(records_app, [*prune, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would remove" in dry.output and "3 parts, 3 inspections, 3 defects" in dry.output
    assert "parts (all time): 6" in runner.invoke(records_app, ["stats", "--db", str(db)]).output

    real = runner.invoke(records_app, prune)
    assert real.exit_code == 0, real.output
    assert "removed records captured before" in real.output
    assert "3 parts, 3 inspections, 3 defects" in real.output
    assert "parts (all time): 3" in runner.invoke(records_app, ["stats", "--db", str(db)]).output


def test_bad_retention_is_a_user_error(tmp_path):
    for bad in ("90", "ninety days", "0d", "-5d"):
        out = runner.invoke(
            records_app, ["prune", "--db", str(tmp_path / "r.db"), "--older-than", bad]
        )
        assert out.exit_code == 2, (bad, out.output)
        assert "error:" in out.output and "--older-than" in out.output
    assert parse_period("90d") == timedelta(days=90)
    assert parse_period("1.5h") == timedelta(minutes=90)
    assert parse_period("2w") == timedelta(days=14)


def test_a_database_that_cannot_be_opened_is_one_line_with_its_password_hidden(tmp_path):
    not_a_db = tmp_path / "photo.png"
    not_a_db.write_bytes(b"\x89PNG not a database" * 100)
    folder = tmp_path / "a-folder"
    folder.mkdir()
    for args in (
        ["migrate", "--db", str(not_a_db)],
        ["stats", "--db", str(not_a_db)],
        ["stats", "--db", str(folder)],
        ["prune", "--db", str(not_a_db), "--older-than", "5d"],
    ):
        out = runner.invoke(records_app, args)
        assert out.exit_code == 2, (args, out.output)
        assert out.output.count("error:") == 1 and "Traceback" not in out.output, out.output
    assert not_a_db.read_bytes().startswith(b"\x89PNG not a database")  # left as it was
    # A server that does not answer (port 1 on loopback refuses): its URL without the password
    url = "postgresql+psycopg://inspector:s3cret@127.0.0.1:1/records"
    out = runner.invoke(records_app, ["migrate", "--db", url])
    assert out.exit_code == 2, out.output
    assert "inspector:***@127.0.0.1:1" in out.output and "s3cret" not in out.output
