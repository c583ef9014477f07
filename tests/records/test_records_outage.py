"""The database locked, removed or replaced, the writer killed: no record lost, none
written twice. A real SQLite file locked by a real second connection; a real process
killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from records_helpers import result

from inspection.records.db import open_records
from inspection.records.store import RecordStore
from inspection.types import Verdict

REPO = Path(__file__).resolve().parents[2]


class Clock:
    """A clock the test moves: the store's retry backoff never depends on machine speed."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float = 120.0) -> None:
        self.now += seconds


def _store(tmp_path: Path, clock: Clock) -> RecordStore:
    return RecordStore(
        tmp_path / "records.db",
        tmp_path / "ev",
        tmp_path / "spool.db",
        busy_timeout_s=0.2,
        clock=clock,
    )


def _parts(db: Path) -> list[str]:
    """Part ids in the database, read by a connection of our own (duplicates kept)."""
    with sqlite3.connect(db, timeout=60) as c:
        return [row[0] for row in c.execute("SELECT part_id FROM parts ORDER BY part_id")]


def _lock(db: Path) -> sqlite3.Connection:
    """Another connection holding the write lock until it is closed."""
    locker = sqlite3.connect(db, isolation_level=None, timeout=60)
    locker.execute("BEGIN EXCLUSIVE")
    return locker


def test_database_locked_records_are_spooled_then_replayed(tmp_path):
    clock = Clock()
    store = _store(tmp_path, clock)
    db = tmp_path / "records.db"
    assert store.record("P-before", "s1", result("P-before"))

    locker = _lock(db)
    spooled = [store.record(f"P-{i}", "s1", result(f"P-{i}", Verdict.REJECT, 1)) for i in range(10)]
    assert all(spooled)
    assert store.record("P-before", "s1", result("P-before"))  # unknown while locked
    assert not store.record("P-3", "s1", result("P-3"))  # already spooled
    assert store.pending() == 11
    assert _parts(db) == ["P-before"]

    clock.advance()
    assert store.replay() == 0  # still locked: nothing written, all kept
    assert store.pending() == 11
    (item, *_) = store.spool.due(float("inf"))
    assert item.attempts == 1 and "locked" in item.last_error

    locker.close()  # the lock is gone
    clock.advance()
    assert store.replay() == 10  # P-before was in the database already: skipped
    assert store.pending() == 0
    assert _parts(db) == sorted(["P-before", *(f"P-{i}" for i in range(10))])
    assert len(store.get("P-7", "s1").defects) == 1
    assert not store.record("P-7", "s1", result("P-7"))
    assert store.replay() == 0
    store.close()


def test_lock_held_while_parts_keep_coming(tmp_path):
    # A lock held by another thread until 10 parts were spooled; the next records find
    # the backlog and write it first, by themselves: 20 parts, each once.
    clock = Clock()
    store = _store(tmp_path, clock)
    db = tmp_path / "records.db"
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        locker = _lock(db)
        locked.set()
        release.wait(120)
        locker.close()

    holder = threading.Thread(target=hold)
    holder.start()
    assert locked.wait(120)
    for i in range(10):
        assert store.record(f"P-{i:02d}", "s1", result(f"P-{i:02d}"))
    assert store.pending() == 10
    release.set()
    holder.join(120)
    clock.advance()
    for i in range(10, 20):
        assert store.record(f"P-{i:02d}", "s1", result(f"P-{i:02d}"))
    assert store.pending() == 0
    assert _parts(db) == [f"P-{i:02d}" for i in range(20)]
    store.close()


def test_database_file_removed_spools_until_it_is_recreated(tmp_path):
    clock = Clock()
    store = _store(tmp_path, clock)
    db = tmp_path / "records.db"
    for i in range(3):
        store.record(f"P-{i}", "s1", result(f"P-{i}"))
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)

    for i in range(3, 8):
        assert store.record(f"P-{i}", "s1", result(f"P-{i}"))
    assert store.pending() == 5
    assert not db.exists()  # no fresh empty database silently in its place
    clock.advance()
    assert store.replay() == 0 and store.pending() == 5

    open_records(f"sqlite:///{db}").dispose()  # `inspection records migrate`
    clock.advance()
    assert store.replay() == 5
    assert _parts(db) == [f"P-{i}" for i in range(3, 8)]
    store.close()


def test_database_file_replaced_then_restored(tmp_path):
    clock = Clock()
    store = _store(tmp_path, clock)
    db, moved = tmp_path / "records.db", tmp_path / "moved"
    for i in range(3):
        store.record(f"P-{i}", "s1", result(f"P-{i}"))
    # Moved away with its -wal and -shm (a SQLite database is all three files), and a
    # file that is no database put in its place (e.g. a botched restore).
    moved.mkdir()
    names = [p.name for p in tmp_path.glob("records.db*")]
    for name in names:
        os.replace(tmp_path / name, moved / name)
    db.write_bytes(b"this is not a database" * 100)

    for i in range(3, 8):
        assert store.record(f"P-{i}", "s1", result(f"P-{i}"))
    clock.advance()
    assert store.replay() == 0  # the file there is no database: keep everything
    assert store.pending() == 5
    assert "database" in store.spool.due(float("inf"))[0].last_error

    db.unlink()
    for name in names:  # restored
        os.replace(moved / name, tmp_path / name)
    clock.advance()
    assert store.replay() == 5
    assert _parts(db) == [f"P-{i}" for i in range(8)]
    store.close()


WRITER = textwrap.dedent(
    """
    import sys
    from inspection.records.store import RecordStore
    from inspection.types import Action, InspectionResult, Verdict

    root = sys.argv[1]
    store = RecordStore(f"{root}/records.db", f"{root}/ev", f"{root}/spool.db",
                        busy_timeout_s=0.2)
    i = 0
    while True:
        part = f"P-{i:05d}"
        store.record(part, "s1", InspectionResult(part, Verdict.PASS, None, Action.ACCEPT))
        print(part, flush=True)  # only once record() returned
        i += 1
    """
)


@pytest.mark.parametrize("locked", [False, True], ids=["database-up", "database-locked"])
def test_kill_9_loses_no_record_that_returned(tmp_path, locked):
    open_records(f"sqlite:///{tmp_path / 'records.db'}").dispose()
    locker = _lock(tmp_path / "records.db") if locked else None
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    returned = []
    try:
        for line in proc.stdout:
            returned.append(line.strip())
            if len(returned) == 40:
                break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(120)
    returned += proc.stdout.read().split()
    assert proc.returncode == -signal.SIGKILL and len(returned) >= 40
    if locker is not None:
        assert _parts(tmp_path / "records.db") == []  # all of them went to the spool
        locker.close()

    with _store(tmp_path, Clock()) as store:  # the restart
        store.replay()
        assert store.pending() == 0
    parts = _parts(tmp_path / "records.db")
    assert len(parts) == len(set(parts))  # none twice
    assert set(returned) <= set(parts)  # none lost
    assert len(parts) - len(returned) in (0, 1)  # at most the one in flight at the kill
