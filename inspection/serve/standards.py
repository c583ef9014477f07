"""The standards the service knows, by id and version."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from inspection.errors import UserError
from inspection.standards import Standard, load_standard

log = logging.getLogger("inspection.serve")

RESCAN_S = 10.0
"""A lookup that misses rescans the folders (a standard added while the service runs),
at most this often: a stream of bad ids costs no file reads."""


class StandardIndex:
    """Every standard in ``folders`` (``*.yaml``, ``*.yml``), by id and version.

    A payload names its standard by id and version: the content version
    (:attr:`Standard.version`, what the edge's results record) or the revision
    (``revision: C``) when exactly one loaded standard of that id has it.

    Parameters
    ----------
    folders : Sequence[Path]
        Folders (or single files) of standards. A file that does not load is logged and
        skipped; the others serve.
    clock : Callable[[], float]
        Monotonic seconds, for the rescan throttle.
    """

    def __init__(self, folders: Sequence[Path], clock: Callable[[], float] = time.monotonic):
        self.folders = tuple(Path(f) for f in folders)
        self.clock = clock
        self._by_key: dict[tuple[str, str], Standard] = {}
        self._lock = threading.Lock()
        self._scanned_at: float | None = None

    def scan(self) -> int:
        """(Re)load every standard file; returns how many loaded."""
        found: dict[tuple[str, str], Standard] = {}
        for path in self._files():
            try:
                standard = load_standard(path)
            except UserError as exc:
                log.warning("standard %s skipped: %s", path, exc)
                continue
            found[(standard.id, standard.version)] = standard
        with self._lock:
            self._by_key = found
            self._scanned_at = self.clock()
        return len(found)

    def _files(self) -> list[Path]:
        files: list[Path] = []
        for folder in self.folders:
            if folder.is_file():
                files.append(folder)
            elif folder.is_dir():
                files += sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml"))
            else:
                log.warning("standards folder %s does not exist", folder)
        return files

    def get(self, standard_id: str, version: str) -> Standard | None:
        """The standard, or ``None`` when none of that id has that version."""
        found = self._lookup(standard_id, version)
        due = self._scanned_at is None or self.clock() - self._scanned_at >= RESCAN_S
        if found is None and due:
            self.scan()
            found = self._lookup(standard_id, version)
        return found

    def _lookup(self, standard_id: str, version: str) -> Standard | None:
        with self._lock:
            exact = self._by_key.get((standard_id, version))
            if exact is not None:
                return exact
            by_revision = [
                s
                for (i, _), s in self._by_key.items()
                if i == standard_id and s.revision == version
            ]
        return by_revision[0] if len(by_revision) == 1 else None

    def describe(self) -> str:
        """``id version (revision)`` of each standard, for error messages."""
        with self._lock:
            keys = sorted(self._by_key.items())
        return ", ".join(f"{i} {v} (revision {s.revision})" for (i, v), s in keys) or "none"
