"""API keys: random bearer tokens stored as SHA-256 hashes in the service's SQLite.

A token is 32 random bytes (``secrets``), so a plain SHA-256 of it is as strong as a
slow hash of a password would be: nobody can search 2^256 tokens. The token is shown
once, when the key is added; afterwards only its hash, name and dates exist. Keys are
revoked, never deleted, so a revoked token is told apart (403) from an unknown one (401).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path

from inspection.errors import UserError
from inspection.serve.store import connect

TOKEN_PREFIX = "insp_"
KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    name TEXT PRIMARY KEY,
    token_sha256 TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
)
"""


class KeyStatus(Enum):
    """What a presented token is."""

    VALID = "valid"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ApiKey:
    """A key as listed: never its token."""

    name: str
    created_at: str
    revoked_at: str | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def hash_token(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class KeyStore:
    """The service's API keys in SQLite (the reports' file, or one of their own).

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

    def add(self, name: str) -> str:
        """Create key ``name``; returns its token (shown once, stored only hashed).

        Raises
        ------
        UserError
            A bad name, or one already used (revoked keys keep their names).
        """
        if not KEY_NAME.fullmatch(name):
            raise UserError(
                f"bad key name {name!r}: 1 to 64 ASCII letters, digits, '.', '-' and '_', "
                "starting with a letter or digit"
            )
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self._lock:
            try:
                self._conn.execute(
                    "INSERT INTO api_keys (name, token_sha256, created_at) VALUES (?, ?, ?)",
                    (name, hash_token(token), now),
                )
            except sqlite3.IntegrityError as exc:
                raise UserError(f"a key named {name!r} exists already ({self.path})") from exc
        return token

    def revoke(self, name: str) -> None:
        """Revoke key ``name`` (kept, so that its token gets 403).

        Raises
        ------
        UserError
            No such key.
        """
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self._lock:
            cur = self._conn.execute(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE name = ?",
                (now, name),
            )
        if cur.rowcount == 0:
            known = ", ".join(k.name for k in self.list()) or "none"
            raise UserError(f"no key named {name!r} in {self.path} (keys: {known})")

    def list(self) -> list[ApiKey]:
        """Every key, by name."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT name, created_at, revoked_at FROM api_keys ORDER BY name"
            ).fetchall()
        return [ApiKey(*row) for row in rows]

    def count(self) -> int:
        """Keys ever added (revoked ones included)."""
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM api_keys").fetchone()[0])

    def check(self, token: str) -> KeyStatus:
        """Whether ``token`` is a valid, revoked or unknown key.

        Every stored hash is compared in constant time, with no early exit, so the
        answer's timing says nothing about which hash came close.
        """
        presented = hash_token(token)
        with self._lock:
            rows = self._conn.execute("SELECT token_sha256, revoked_at FROM api_keys").fetchall()
        status = KeyStatus.UNKNOWN
        for stored, revoked_at in rows:
            if hmac.compare_digest(stored, presented):
                status = KeyStatus.VALID if revoked_at is None else KeyStatus.REVOKED
        return status

    def close(self) -> None:
        with self._lock:
            self._conn.close()
