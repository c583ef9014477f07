"""A durable keyed queue: what the line must deliver later survives a crash or an outage.

Verdicts waiting for a broker and records waiting for a database go through a
:class:`Spool`: one SQLite file in WAL mode with ``synchronous=FULL``, so an item is on
disk once :meth:`Spool.put` returns, and a ``kill -9`` or a power cut a moment later
loses nothing. Items are keyed (by part id, or part id and purpose): a key is queued at
most once, and a key that was delivered is remembered, so that a replay after a restart
cannot deliver it twice.

Thread-safe (one connection behind a lock; SQLite's own locking between processes) and
torch-free: the edge daemon runs it.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_MAX_ITEMS = 1_000_000
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class SpoolFullError(RuntimeError):
    """The spool holds ``max_items`` pending items: the item was not queued.

    Raised rather than dropping an item silently or filling the disk; the caller decides
    (e.g. stop taking parts and raise an alarm).
    """


@dataclass(frozen=True)
class SpoolItem:
    """One pending item.

    Attributes
    ----------
    key : str
        Its key (a part id, or part id and purpose).
    body : dict[str, Any]
        What was put, as JSON gives it back.
    attempts : int
        Failed deliveries so far.
    next_at : float
        Clock time (the caller's clock, as passed to :meth:`Spool.due`) from which the item
        is due again; ``0.0`` for an item never tried.
    last_error : str | None
        The error of the last failed delivery.
    """

    key: str
    body: dict[str, Any]
    attempts: int
    next_at: float
    last_error: str | None


def retry_delay(attempts: int, base_s: float = 0.5, cap_s: float = 60.0) -> float:
    """Exponential backoff: the wait after the ``attempts``-th failed delivery.

    ``base_s * 2 ** (attempts - 1)``, at most ``cap_s``: 0.5, 1, 2, 4 ... 60 s by default.
    Deterministic (no jitter), so that a test can count on it.
    """
    if attempts < 1:
        return 0.0
    # min() on the exponent first: 2 ** 10_000 would overflow a float.
    return min(cap_s, base_s * 2.0 ** min(attempts - 1, 64))


class Spool:
    """A durable keyed queue in one SQLite file.

    Parameters
    ----------
    path : str | Path
        The SQLite file (created with its folder). Several spools may share one file under
        different names.
    name : str
        The queue's name: its tables are ``{name}_items`` and ``{name}_done``.
    max_items : int
        Most pending items; :meth:`put` beyond it raises :class:`SpoolFullError`.
    timeout_s : float
        How long to wait for another process's lock on the file.

    Examples
    --------
    >>> spool = Spool("/var/lib/inspection/outbox.db", name="verdicts")  # doctest: +SKIP
    >>> spool.put("P-0001", {"verdict": "PASS"})  # doctest: +SKIP
    True
    >>> for item in spool.due(time.time()):  # doctest: +SKIP
    ...     try:
    ...         send(item.body)
    ...         spool.done(item.key)
    ...     except OSError as error:
    ...         spool.retry(item.key, time.time() + retry_delay(item.attempts + 1), str(error))
    """

    def __init__(
        self,
        path: str | Path,
        name: str = "spool",
        max_items: int = DEFAULT_MAX_ITEMS,
        timeout_s: float = 30.0,
    ) -> None:
        if not _NAME.match(name):
            raise ValueError(f"spool name must be letters, digits and _ (not {name!r})")
        if max_items < 1:
            raise ValueError(f"max_items must be at least 1, not {max_items}")
        self.path = Path(path)
        self.name = name
        self.max_items = max_items
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._items = f"{name}_items"
        self._done = f"{name}_done"
        self._lock = threading.Lock()
        # Autocommit mode: every transaction below is an explicit BEGIN IMMEDIATE ... COMMIT.
        self._db: sqlite3.Connection | None = sqlite3.connect(
            self.path, timeout=timeout_s, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a transaction is fsync'ed before COMMIT returns (WAL's default NORMAL may
        # lose the last transactions on power loss).
        self._db.execute("PRAGMA synchronous=FULL")
        with self._transaction() as db:
            # seq (rowid) gives insertion order; next_at the retry schedule.
            db.execute(
                f"CREATE TABLE IF NOT EXISTS {self._items} ("
                "seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE, "
                "body TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, "
                "next_at REAL NOT NULL DEFAULT 0, last_error TEXT, created_at REAL NOT NULL)"
            )
            db.execute(
                f"CREATE INDEX IF NOT EXISTS {self._items}_due ON {self._items} (next_at, seq)"
            )
            db.execute(
                f"CREATE TABLE IF NOT EXISTS {self._done} "
                "(key TEXT PRIMARY KEY, done_at REAL NOT NULL) WITHOUT ROWID"
            )

    # ------------------------------------------------------------------ plumbing

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"spool {self.name!r} at {self.path} is closed")
        return self._db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = self._conn()
            # IMMEDIATE: take the write lock up front, so that a check-then-insert cannot
            # race another process.
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            try:
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    # ------------------------------------------------------------------ the queue

    def put(self, key: str, body: dict[str, Any]) -> bool:
        """Queue ``body`` under ``key``, durably.

        Returns
        -------
        bool
            ``True`` when queued (on disk once this returns); ``False`` when ``key`` is
            already pending or was delivered (idempotency: the first body stays).

        Raises
        ------
        SpoolFullError
            When ``max_items`` items are pending.
        TypeError
            When ``body`` is not JSON-serialisable (nothing is queued).
        """
        text = json.dumps(body)
        with self._transaction() as db:
            if db.execute(f"SELECT 1 FROM {self._done} WHERE key = ?", (key,)).fetchone():
                return False
            if db.execute(f"SELECT 1 FROM {self._items} WHERE key = ?", (key,)).fetchone():
                return False
            (count,) = db.execute(f"SELECT COUNT(*) FROM {self._items}").fetchone()
            if count >= self.max_items:
                raise SpoolFullError(
                    f"spool {self.name!r} at {self.path} holds {count} pending items "
                    f"(max_items={self.max_items}); {key!r} was not queued"
                )
            db.execute(
                f"INSERT INTO {self._items} (key, body, created_at) VALUES (?, ?, ?)",
                (key, text, time.time()),
            )
        return True

    def due(self, now: float, limit: int = 100) -> list[SpoolItem]:
        """Pending items whose ``next_at <= now``, oldest first (in the order put)."""
        with self._lock:
            rows = (
                self._conn()
                .execute(
                    f"SELECT key, body, attempts, next_at, last_error FROM {self._items} "
                    "WHERE next_at <= ? ORDER BY seq LIMIT ?",
                    (now, limit),
                )
                .fetchall()
            )
        return [SpoolItem(k, json.loads(b), a, n, e) for k, b, a, n, e in rows]

    def done(self, key: str) -> None:
        """Mark ``key`` delivered: removed from pending and remembered by :meth:`was_done`."""
        with self._transaction() as db:
            db.execute(f"DELETE FROM {self._items} WHERE key = ?", (key,))
            db.execute(
                f"INSERT OR IGNORE INTO {self._done} (key, done_at) VALUES (?, ?)",
                (key, time.time()),
            )

    def retry(self, key: str, next_at: float, error: str) -> None:
        """A delivery of ``key`` failed: count it, keep ``error``, due again at ``next_at``.

        Raises
        ------
        KeyError
            When ``key`` is not pending.
        """
        with self._transaction() as db:
            cursor = db.execute(
                f"UPDATE {self._items} SET attempts = attempts + 1, next_at = ?, "
                "last_error = ? WHERE key = ?",
                (next_at, error, key),
            )
            if cursor.rowcount == 0:
                raise KeyError(f"{key!r} is not pending in spool {self.name!r}")

    def pending(self) -> int:
        """Items not yet delivered."""
        with self._lock:
            (count,) = self._conn().execute(f"SELECT COUNT(*) FROM {self._items}").fetchone()
        return int(count)

    def was_done(self, key: str) -> bool:
        """Whether ``key`` was delivered (remembered across restarts)."""
        with self._lock:
            row = (
                self._conn().execute(f"SELECT 1 FROM {self._done} WHERE key = ?", (key,)).fetchone()
            )
        return row is not None

    def forget_done(self, before: float) -> int:
        """Forget delivered keys marked done before ``before`` (a ``time.time()``).

        The done list otherwise grows by one key per part, forever; a key forgotten can be
        queued again. Returns how many were forgotten.
        """
        with self._transaction() as db:
            cursor = db.execute(f"DELETE FROM {self._done} WHERE done_at < ?", (before,))
        return int(cursor.rowcount)

    def close(self) -> None:
        """Close the file; later calls raise ``RuntimeError``. Closing twice is fine."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Spool({str(self.path)!r}, name={self.name!r})"
