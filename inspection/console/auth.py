"""Who may use the console, and for what: users, hashed passwords, roles, sessions.

The user list is a YAML file an administrator keeps (``inspection console users add``)::

    users:
      li.wei: {role: operator, password: "scrypt$16384$8$1$<salt>$<hash>"}
      ana:    {role: engineer, password: "scrypt$..."}

Passwords are stored as scrypt hashes (salted, memory-hard) and compared in constant time.
Operators review parts and ask about them; engineers also edit standards and switch
models. A console without a user list has no login and binds to 127.0.0.1 only: whoever
sits at the station PC is its engineer (:data:`LOCAL_USER`).

Sessions are Gradio's login cookies; :class:`ExpiringTokens` replaces Gradio's token table
so that a session ends ``ttl_s`` after its login, on the page and on the API alike.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from inspection.errors import UserError, one_line

OPERATOR = "operator"
ENGINEER = "engineer"
ROLES = (OPERATOR, ENGINEER)

# What each role may do. Every handler of the app checks one of these.
VIEW, REVIEW, ASK, AUDIT, EDIT_STANDARDS, SWITCH_MODELS = (
    "view",
    "review",
    "ask",
    "audit",
    "edit standards",
    "switch models",
)
PERMISSIONS: Mapping[str, frozenset[str]] = {
    OPERATOR: frozenset({VIEW, REVIEW, ASK, AUDIT}),
    ENGINEER: frozenset({VIEW, REVIEW, ASK, AUDIT, EDIT_STANDARDS, SWITCH_MODELS}),
}

USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
MIN_PASSWORD_LENGTH = 8
DEFAULT_SESSION_HOURS = 12.0  # a shift and a half: log in once per shift

# scrypt at n=2**14, r=8, p=1: 16 MiB and ~50 ms a check, OWASP's minimum.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


@dataclass(frozen=True)
class User:
    """A console user: name and role (the password hash stays in the file)."""

    name: str
    role: str

    def can(self, action: str) -> bool:
        return action in PERMISSIONS[self.role]


LOCAL_USER = User("local", ENGINEER)
"""The one user of a console without a user list (bound to 127.0.0.1 only)."""


class Forbidden(UserError):
    """The user's role does not allow the action."""


def require(user: User | None, action: str) -> User:
    """``user`` when their role allows ``action``; :class:`Forbidden` otherwise."""
    if user is None:
        raise Forbidden("not logged in (or the session expired): log in again")
    if not user.can(action):
        raise Forbidden(f"{user.name} is an {user.role}: only an engineer may {action}")
    return user


# ---------------------------------------------------------------------- passwords


def hash_password(password: str) -> str:
    """A salted scrypt hash of ``password`` as one string (what the user file stores)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches the ``stored`` hash (constant time; False if malformed)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt" or int(n) > 2**20 or int(r) > 16 or int(p) > 16:
            return False  # a hash asking for absurd work would stall every login
        expected = base64.b64decode(digest, validate=True)
        actual = _scrypt(password, base64.b64decode(salt, validate=True), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=2**26, dklen=32)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# ---------------------------------------------------------------------- the user file


class UserDirectory:
    """The users of a console, read from their YAML file.

    Parameters
    ----------
    users : Mapping[str, tuple[str, str]]
        ``name -> (role, password hash)``.
    """

    def __init__(self, users: Mapping[str, tuple[str, str]]) -> None:
        self._users = dict(users)

    @classmethod
    def load(cls, path: str | Path) -> UserDirectory:
        """Read a user file; :class:`UserError` naming the file and entry when malformed."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise UserError(f"{path}: cannot read the user list: {one_line(exc)}") from None
        entries = data.get("users") if isinstance(data, dict) else None
        if not isinstance(entries, dict) or not entries:
            raise UserError(f"{path}: expected 'users:' with at least one user")
        users = {}
        for name, entry in entries.items():
            role = entry.get("role") if isinstance(entry, dict) else None
            password = entry.get("password") if isinstance(entry, dict) else None
            if not isinstance(name, str) or not USER_NAME.fullmatch(name):
                raise UserError(f"{path}: bad user name {name!r}")
            if role not in ROLES:
                raise UserError(f"{path}: user {name}: role must be one of {', '.join(ROLES)}")
            if not isinstance(password, str) or not password.startswith("scrypt$"):
                raise UserError(f"{path}: user {name}: password must be a scrypt hash")
            users[name] = (role, password)
        return cls(users)

    def authenticate(self, name: str, password: str) -> User | None:
        """The user when ``password`` is theirs; ``None`` otherwise (unknown names too)."""
        role, stored = self._users.get(name, (None, None))
        if stored is None:
            verify_password(password, _DUMMY_HASH)  # the same time for unknown names
            return None
        return User(name, role) if verify_password(password, stored) else None

    def get(self, name: str | None) -> User | None:
        role = self._users.get(name or "", (None, None))[0]
        return None if role is None else User(name, role)  # type: ignore[arg-type]

    def names(self) -> list[str]:
        return sorted(self._users)


_DUMMY_HASH = f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(b'0' * 16)}${_b64(b'0' * 32)}"


def check_user(name: str, role: str) -> None:
    """Refuse a login name or role the user file cannot hold (before a password is asked)."""
    if not USER_NAME.fullmatch(name):
        raise UserError(f"bad user name {name!r}: letters, digits, '.', '_', '@', '-'")
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}, not {role!r}")


def add_user(path: str | Path, name: str, role: str, password: str) -> None:
    """Add (or replace) a user in the user file, written atomically and readable by its
    owner only."""
    check_user(name, role)
    path = Path(path)
    data: dict = {"users": {}}
    if path.exists():
        UserDirectory.load(path)  # refuse to rewrite a file we cannot read
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["users"][name] = {"role": role, "password": hash_password(password)}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".users-", suffix=".yaml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yaml.safe_dump(data, f, sort_keys=True, allow_unicode=True)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------- sessions


class ExpiringTokens(dict):
    """Gradio's login-token table (``token -> user name``), where a token lapses
    ``ttl_s`` after the login that made it.

    A lapsed token reads as absent, so Gradio treats its holder as logged out: the page
    shows the login form again and API calls get 401.
    """

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.ttl_s, self.clock = ttl_s, clock
        self._issued: dict[str, float] = {}
        self._lock = threading.Lock()

    def __setitem__(self, token: str, user: str) -> None:
        with self._lock:
            self._issued[token] = self.clock()
            super().__setitem__(token, user)

    def _live(self, token: object) -> bool:
        with self._lock:
            issued = self._issued.get(token)  # type: ignore[call-overload]
            if issued is None:
                return False
            if self.clock() - issued < self.ttl_s:
                return True
            self._issued.pop(token, None)  # type: ignore[call-overload]
            super().pop(token, None)
            return False

    def __contains__(self, token: object) -> bool:
        return self._live(token)

    def __getitem__(self, token: str) -> str:
        # A lapsed token reads as no user (not KeyError): Gradio's logout lists the tokens,
        # then reads each, and one may lapse in between.
        return super().get(token, "") if self._live(token) else ""

    def get(self, token: object, default: str | None = None) -> str | None:  # type: ignore[override]
        return super().get(token, default) if self._live(token) else default

    def keys(self) -> list[str]:  # type: ignore[override]
        return [token for token in list(super().keys()) if self._live(token)]

    def __iter__(self):  # type: ignore[override]
        return iter(self.keys())

    def __delitem__(self, token: str) -> None:
        with self._lock:
            self._issued.pop(token, None)
            super().__delitem__(token)
