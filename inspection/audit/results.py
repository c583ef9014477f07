"""The audit's durable state: ``results.jsonl`` (one line a part) and ``audit.json``.

``results.jsonl`` is appended and flushed part by part, so a run killed at any moment
keeps every part it finished; a line cut short by the kill is dropped when the run is
resumed. Each record carries a ``key`` (the SHA-256 of the file's bytes and its name in
the input): a re-run skips every key already there, so no part is audited twice and
none is lost. ``audit.json`` holds what the verdicts depend on (model, standard,
calibration); a re-run into the same folder with another of them is refused rather than
mixing two audits in one report.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from inspection.errors import UserError

RESULTS_NAME = "results.jsonl"
RUN_NAME = "audit.json"
# What must match for a re-run to resume the audit already in a folder.
RUN_IDENTITY = (
    "model_version",
    "standard_id",
    "standard_version",
    "calibration_version",
    "mm_per_px",
    "height_encoding",
)
"""What a resumed audit must share with the first run: its verdicts depend on each. An
audit recorded before the scale and height encoding were (they read as ``None``) resumes
only without them."""


class AuditStateError(UserError):
    """An output folder whose audit state cannot be resumed."""


def record_key(sha256: str | None, source: str) -> str:
    """A part's identity across runs: its bytes and its name (a file refused unread has
    no hash, and is known by name alone)."""
    return f"{sha256 or 'unread'}:{source}"


class ResultsLog:
    """``DIR/results.jsonl``, opened for appending; the keys already done are known.

    Parameters
    ----------
    out : Path
        The audit's output folder.

    Raises
    ------
    AuditStateError
        A line other than the last that is not a JSON record (the file was edited).
    """

    def __init__(self, out: Path):
        self.path = Path(out) / RESULTS_NAME
        self.keys: set[str] = set()
        if self.path.exists():
            _drop_cut_line(self.path)
            for number, record in _read(self.path):
                key = record.get("key") if isinstance(record, dict) else None
                if not isinstance(key, str):
                    raise AuditStateError(f"{self.path}:{number}: record without a key")
                self.keys.add(key)
        self._file: TextIO = self.path.open("a", encoding="utf-8")

    def __contains__(self, key: str) -> bool:
        return key in self.keys

    def __len__(self) -> int:
        return len(self.keys)

    def append(self, record: dict[str, Any]) -> bool:
        """Write one record and flush it; ``False`` (nothing written) for a key already
        there."""
        if record["key"] in self.keys:
            return False
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()  # a kill now loses nothing finished
        self.keys.add(record["key"])
        return True

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ResultsLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_records(out: Path) -> Iterator[dict[str, Any]]:
    """The records of ``DIR/results.jsonl`` in file order, one at a time."""
    path = Path(out) / RESULTS_NAME
    if path.exists():
        for _, record in _read(path):
            yield record


class RecordIndex:
    """``results.jsonl`` by key without holding its records: each key's byte offset, the
    record read back when asked for (an index of 100,000 parts is a few MB, the records
    a hundred times that).

    Parameters
    ----------
    out : Path
        The audit's output folder.
    """

    def __init__(self, out: Path):
        self.path = Path(out) / RESULTS_NAME
        self.offsets: dict[str, int] = {}
        self._file: BinaryIO = self.path.open("rb")
        offset = 0
        for number, line in enumerate(self._file, start=1):
            record = _parse(line, self.path, number)
            if isinstance(record, dict) and isinstance(record.get("key"), str):
                self.offsets[record["key"]] = offset
            offset += len(line)

    def get(self, key: str) -> dict[str, Any] | None:
        """The record of ``key``, or ``None``."""
        offset = self.offsets.get(key)
        if offset is None:
            return None
        self._file.seek(offset)
        return json.loads(self._file.readline())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RecordIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_run(out: Path, run: dict[str, Any]) -> dict[str, Any]:
    """Write ``DIR/audit.json`` for a new audit, or check a resumed one against it.

    Returns
    -------
    dict
        The run as recorded (the first run's, when resuming).

    Raises
    ------
    AuditStateError
        When ``DIR`` holds an audit made with another model, standard, calibration,
        default scale or height encoding.
    """
    path = Path(out) / RUN_NAME
    results = Path(out) / RESULTS_NAME
    if path.exists() and results.exists():
        try:
            recorded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise AuditStateError(f"{path}: unreadable audit record ({exc})") from exc
        changed = [k for k in RUN_IDENTITY if recorded.get(k) != run.get(k)]
        if changed:
            was = ", ".join(f"{k} {recorded.get(k)} (now {run.get(k)})" for k in changed)
            raise AuditStateError(
                f"{out} holds an audit made with {was}: give another --out, or remove "
                f"{results} to start this one over"
            )
        return recorded
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(run, indent=1) + "\n", encoding="utf-8")
    partial.replace(path)
    return run


def _drop_cut_line(path: Path) -> None:
    """Truncate a last line without its newline: the record a kill cut short."""
    with path.open("rb+") as f:
        f.seek(0, 2)
        size = f.tell()
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        # Walk back to the last newline; a cut record is one line, so this is short.
        pos = size - 1
        while pos > 0:
            step = min(pos, 1 << 16)
            f.seek(pos - step)
            block = f.read(step)
            index = block.rfind(b"\n")
            if index >= 0:
                f.truncate(pos - step + index + 1)
                return
            pos -= step
        f.truncate(0)


def _read(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            record = _parse(line, path, number)
            if record is not None:
                yield number, record


def _parse(line: bytes, path: Path, number: int) -> Any:
    """One line's record; ``None`` for a blank line."""
    if not line.strip():
        return None
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise AuditStateError(
            f"{path}:{number}: not a JSON record ({exc.msg}); the file was edited: "
            "give another --out, or remove it to start over"
        ) from exc
