"""The service's answers, one per part id, in SQLite (WAL): the first one is kept."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from inspection.errors import UserError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS reports (
    part_id TEXT PRIMARY KEY,
    response TEXT NOT NULL,
    created_at TEXT NOT NULL
)
"""


def connect(path: str | Path) -> sqlite3.Connection:
    """A connection to ``path`` in WAL mode with full syncs: a commit is on disk before
    the service answers. One connection is shared by threads behind the caller's lock."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, timeout=30.0, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
    except sqlite3.DatabaseError as exc:  # a file that is not a database: the user's --db
        conn.close()
        raise UserError(f"{path}: not a SQLite database ({exc})") from None
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


class ReportStore:
    """Answers by part id. Thread-safe; several processes may share the file.

    Parameters
    ----------
    path : str | Path
        The SQLite file (created with its folder).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._conn = connect(self.path)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute(_SCHEMA)

    def get(self, part_id: str) -> dict[str, Any] | None:
        """The stored answer for ``part_id``, or ``None``."""
        with self._lock:
            row = self._conn.execute(
                "SELECT response FROM reports WHERE part_id = ?", (part_id,)
            ).fetchone()
        return None if row is None else json.loads(row[0])

    def put_many(self, answers: Iterable[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        """Store each answer unless its part id has one; one transaction, committed
        before returning.

        Returns
        -------
        list[dict]
            For each part id, the answer now stored: the given one, or the one stored
            first (another request or process won the race).
        """
        answers = list(answers)
        now = datetime.now(UTC).isoformat()
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "INSERT OR IGNORE INTO reports (part_id, response, created_at) "
                    "VALUES (?, ?, ?)",
                    [(p, json.dumps(a), now) for p, a in answers],
                )
                stored = [
                    self._conn.execute(
                        "SELECT response FROM reports WHERE part_id = ?", (p,)
                    ).fetchone()[0]
                    for p, _ in answers
                ]
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return [json.loads(s) for s in stored]

    def count(self) -> int:
        """Reports stored."""
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM reports").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
