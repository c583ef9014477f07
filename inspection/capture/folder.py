"""A watched folder: parts arrive as image files (a camera's FTP upload, a vision PC's
export) and leave to ``done/`` or ``failed/`` once decided, never deleted.

Polling with :func:`os.scandir` (no inotify dependency; works on network shares). A file
is taken only once it is completely written:

- names starting with ``.`` or ending in ``.partial`` / ``.tmp`` are ignored, so a
  writer that writes ``part.png.partial`` and renames it is taken at the rename;
- otherwise the file's size and mtime (and its sidecar's) must stay unchanged for
  ``settle_s`` of the source's clock, and the image must decode. An image that still
  does not decode ``unreadable_after_s`` later is handed on as a capture error.

Each image is one part. Its id is the file name's stem, or ``part_id`` in a sidecar
``<stem>.json`` beside it, which may also give ``product``, ``mm_per_px``, ``audio`` (a
WAV/FLAC file in the inbox) and any other keys (kept in the observation's metadata, e.g.
``reference_rgb``). A 3D profiler's height map of the part, registered to the camera, is
``<stem>.height.tiff`` beside it (one channel of float32 mm, or integer counts read
through the source's ``height_encoding``; or ``<stem>.height.png``, 16-bit counts):
dents are measured on it,
and it is never taken as a part of its own. Write the sidecar, audio and height map
before the image (or the image last as ``.partial``): an image is taken with what lies
beside it when it settles.

A part that cannot be read (a corrupt image, a bad sidecar, a missing audio file) is
still yielded, with no frames and the reason under ``metadata["capture_error"]``
(:data:`CAPTURE_ERROR`): the pipeline decides a part without frames REVIEW, so it is
recorded with its reason, never passed and never lost.

:meth:`FolderSource.ack` moves a yielded part's files to ``done/`` (or ``failed/``),
with a ``-1``, ``-2`` ... suffix where a name is taken. Across a restart, a part yielded
but not acknowledged is still in the inbox and is yielded again (the records store is
idempotent by part id); a file already moved is not. A file whose identical copy is
already in ``done/`` or ``failed/`` (a move cut short by a crash) is not taken again: the
inbox copy is removed, the moved one kept.

Torch-free: the edge box runs it.
"""

from __future__ import annotations

import errno
import filecmp
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from inspection.capture.audio import read_clip
from inspection.capture.base import CaptureError, PartSource
from inspection.errors import UserError
from inspection.io import (
    IMAGE_SUFFIXES,
    HeightEncoding,
    height_map_beside,
    is_height_map,
    read_height_map,
    read_image,
)
from inspection.types import Frame, Observation

__all__ = ["CAPTURE_ERROR", "FolderSource", "is_ignored"]

logger = logging.getLogger(__name__)

CAPTURE_ERROR = "capture_error"
"""Metadata key of an observation that could not be captured: the reason, in words."""

IGNORED_SUFFIXES = (".partial", ".tmp")
SIDECAR_SUFFIX = ".json"
_SIDECAR_FIELDS = frozenset({"part_id", "product", "mm_per_px", "audio"})


def is_ignored(name: str) -> bool:
    """A name still being written by convention: hidden, ``.partial`` or ``.tmp``."""
    return name.startswith(".") or name.lower().endswith(IGNORED_SUFFIXES)


@dataclass(frozen=True)
class _Pending:
    """A part handed out and not yet acknowledged: the files that move with it."""

    files: tuple[Path, ...]


class FolderSource(PartSource):
    """Parts from image files dropped in ``inbox``.

    Parameters
    ----------
    inbox : str | Path
        The watched folder (only its top level; sub-folders are left alone).
    done_dir, failed_dir : str | Path
        Where :meth:`ack` moves a part's files; created if missing. Keep them on the
        inbox's file system, so that a move is a rename.
    settle_s : float
        How long a file's size and mtime must stay unchanged before it is taken.
    clock : Callable[[], float]
        Seconds (monotonic) that ``settle_s`` is measured with.
    poll_s : float
        Pause between scans of an empty inbox while iterating.
    station, camera : str
        Set on every observation and frame.
    mm_per_px : float | None
        The station's scale, unless a sidecar gives one.
    product : str | None
        The product, unless a sidecar gives one.
    unreadable_after_s : float
        How long after settling an image that does not decode is given up on.
    max_side : int | None
        Passed to :func:`~inspection.io.read_image` for images over the pixel budget.
    height_encoding : HeightEncoding | None
        How integer height maps beside the images read in mm
        (:func:`~inspection.io.read_height_map`); ``None``: they are float mm.
    """

    def __init__(
        self,
        inbox: str | Path,
        done_dir: str | Path,
        failed_dir: str | Path,
        *,
        settle_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        poll_s: float = 0.2,
        station: str = "station-1",
        camera: str = "cam0",
        mm_per_px: float | None = None,
        product: str | None = None,
        unreadable_after_s: float = 10.0,
        max_side: int | None = None,
        height_encoding: HeightEncoding | None = None,
    ):
        self.inbox, self.done_dir, self.failed_dir = Path(inbox), Path(done_dir), Path(failed_dir)
        if not self.inbox.is_dir():
            raise UserError(f"inbox {self.inbox} is not a folder")
        for folder in (self.done_dir, self.failed_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.settle_s, self.clock, self.poll_s = settle_s, clock, poll_s
        self.station, self.camera, self.mm_per_px, self.product = (
            station,
            camera,
            mm_per_px,
            product,
        )
        self.unreadable_after_s, self.max_side = unreadable_after_s, max_side
        self.height_encoding = height_encoding
        self._seen: dict[str, tuple[tuple[tuple[int, int], ...], float]] = {}
        self._pending: dict[str, _Pending] = {}
        self._taken: set[str] = set()  # image names handed out, not yet acknowledged
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.last_error: str | None = None

    # ------------------------------------------------------------------ public API

    @property
    def pending(self) -> tuple[str, ...]:
        """Part ids handed out and not yet acknowledged."""
        with self._lock:
            return tuple(self._pending)

    def poll(self) -> list[Observation]:
        """Scan the inbox once; the parts whose files are complete, in name order.

        Raises
        ------
        CaptureError
            When the inbox cannot be read (also kept in :attr:`last_error`).
        """
        now = self.clock()
        found: list[Observation] = []
        present: set[str] = set()
        try:
            with os.scandir(self.inbox) as entries:
                names = sorted(
                    e.name
                    for e in entries
                    if e.is_file(follow_symlinks=False) and not is_ignored(e.name)
                )
        except OSError as exc:  # an unmounted share, a removed folder
            self.last_error = f"inbox {self.inbox} cannot be read: {exc}"
            raise CaptureError(self.last_error) from exc
        for name in names:
            if Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if is_height_map(name):
                continue
            present.add(name)
            with self._lock:
                if name in self._taken:
                    continue
            observation = self._try_take(name, now)
            if observation is not None:
                found.append(observation)
        with self._lock:
            for name in set(self._seen) - present:  # gone (moved away by someone else)
                del self._seen[name]
        return found

    def __iter__(self) -> Iterator[Observation]:
        """Observations as files complete, until :meth:`close`.

        An inbox that cannot be read (a share unmounted) is retried every ``poll_s``;
        :attr:`last_error` says why meanwhile.
        """
        while not self._closed.is_set():
            try:
                batch = self.poll()
            except CaptureError as exc:
                logger.warning("%s", exc)
                batch = []
            else:
                self.last_error = None
            yield from batch
            if not batch:
                self._closed.wait(self.poll_s)

    def close(self) -> None:
        """End iteration (after the current scan)."""
        self._closed.set()

    def ack(self, part_id: str, ok: bool, reason: str | None = None) -> Path:
        """Move a part's files to ``done/`` (``ok``) or ``failed/``; returns the image's
        new path.

        Parameters
        ----------
        part_id : str
            A part :meth:`poll` handed out.
        ok : bool
            ``True``: ``done/``; ``False``: ``failed/``.
        reason : str | None
            For ``failed/``: written beside the image as ``<name>.reason.txt``.

        Raises
        ------
        UserError
            When the part was not handed out (or was acknowledged already).
        """
        with self._lock:
            pending = self._pending.get(part_id)
        if pending is None:
            raise UserError(f"part {part_id!r} is not pending in {self.inbox}")
        target = self.done_dir if ok else self.failed_dir
        moved = _move_group(pending.files, target)
        if not ok and reason:
            note = moved[0].with_name(moved[0].name + ".reason.txt")
            note.write_text(reason.rstrip("\n") + "\n", encoding="utf-8")
        with self._lock:
            del self._pending[part_id]
            self._taken.discard(pending.files[0].name)
            self._seen.pop(pending.files[0].name, None)
        return moved[0]

    # ------------------------------------------------------------------ taking a file

    def _try_take(self, name: str, now: float) -> Observation | None:
        image = self.inbox / name
        sidecar = image.with_suffix(SIDECAR_SUFFIX)
        signature = _signature(image, sidecar, height_map_beside(image))
        if signature is None:
            return None  # vanished between the scan and the stat
        with self._lock:
            before = self._seen.get(name)
            if before is None or before[0] != signature:
                before = self._seen[name] = (signature, now)  # new or changing: start again
                if self.settle_s > 0:
                    return None
        settled_for = now - before[1]
        if settled_for < self.settle_s:
            return None
        if self._finish_interrupted_move(image):
            return None
        try:
            observation = self._observe(image, sidecar)
        except Exception as exc:  # whatever the file holds, the part is handed on
            if settled_for < self.settle_s + self.unreadable_after_s:
                return None  # perhaps written in place without a size change yet: wait
            text = str(exc) if isinstance(exc, UserError | CaptureError) else repr(exc)
            observation = self._failed_observation(image, sidecar, f"{name}: {text}")
        files = [image]
        for beside in (sidecar, height_map_beside(image)):
            if beside.is_file():
                files.append(beside)
        audio = observation.metadata.get("audio_path")
        if audio:
            files.append(Path(audio))
        with self._lock:
            if observation.part_id in self._pending:
                return None  # same part id still being decided: after its ack
            self._pending[observation.part_id] = _Pending(files=tuple(files))
            self._taken.add(name)
        return observation

    def _observe(self, image_path: Path, sidecar_path: Path) -> Observation:
        info = _read_sidecar(sidecar_path)
        image = read_image(image_path, max_side=self.max_side)
        part_id = str(info.get("part_id") or image_path.stem)
        mm_per_px = info.get("mm_per_px", self.mm_per_px)
        height_path = height_map_beside(image_path)
        height = (
            read_height_map(height_path, self.height_encoding) if height_path.is_file() else None
        )
        frame = Frame(image=image, camera=self.camera, mm_per_px=mm_per_px, height_map=height)
        metadata: dict[str, Any] = {k: v for k, v in info.items() if k not in _SIDECAR_FIELDS}
        metadata["source_path"] = str(image_path)
        audio = None
        if info.get("audio"):
            audio_path = self._inside_inbox(str(info["audio"]))
            audio = read_clip(audio_path)
            metadata["audio_path"] = str(audio_path)
        return Observation(
            part_id=part_id,
            station=self.station,
            frames=(frame,),
            audio=audio,
            timestamp=_mtime(image_path),
            product=str(info["product"]) if info.get("product") else self.product,
            metadata=metadata,
        )

    def _failed_observation(self, image: Path, sidecar: Path, reason: str) -> Observation:
        logger.warning("folder %s: %s", self.inbox, reason)
        metadata: dict[str, Any] = {CAPTURE_ERROR: reason, "source_path": str(image)}
        part_id = image.stem
        try:
            info = _read_sidecar(sidecar)
            part_id = str(info.get("part_id") or part_id)
            if info.get("audio"):  # moved along with the part, if it is there
                metadata["audio_path"] = str(self._inside_inbox(str(info["audio"])))
        except (UserError, OSError):
            pass
        return Observation(
            part_id=part_id,
            station=self.station,
            frames=(),  # no frames: the pipeline can only decide REVIEW
            timestamp=_mtime(image),
            product=self.product,
            metadata=metadata,
        )

    def _inside_inbox(self, name: str) -> Path:
        path = (self.inbox / name).resolve()
        if path.parent != self.inbox.resolve():
            raise UserError(f"audio file {name!r} must be a file name in the inbox")
        if not path.is_file():
            raise UserError(f"audio file {name!r} is not in the inbox")
        return path

    def _finish_interrupted_move(self, image: Path) -> bool:
        """A byte-identical copy already in done/ or failed/: the move was cut short."""
        for folder in (self.done_dir, self.failed_dir):
            twin = folder / image.name
            if twin.is_file() and (
                os.path.samefile(twin, image) or filecmp.cmp(twin, image, shallow=False)
            ):
                logger.warning("%s: already in %s (a move cut short): not taken", image, folder)
                image.unlink()
                sidecar = image.with_suffix(SIDECAR_SUFFIX)
                sidecar_twin = folder / sidecar.name
                if (
                    sidecar.is_file()
                    and sidecar_twin.is_file()
                    and filecmp.cmp(sidecar_twin, sidecar, shallow=False)
                ):
                    sidecar.unlink()
                with self._lock:
                    self._seen.pop(image.name, None)
                return True
        return False


def _signature(*paths: Path) -> tuple[tuple[int, int], ...] | None:
    """Size and mtime of each file (``(-1, -1)`` for one absent); ``None``: the first is gone."""
    out = []
    for i, path in enumerate(paths):
        try:
            st = path.stat()
        except FileNotFoundError:
            if i == 0:
                return None
            out.append((-1, -1))
            continue
        out.append((st.st_size, st.st_mtime_ns))
    return tuple(out)


def _read_sidecar(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"sidecar {path.name} is not JSON ({exc})") from exc
    if not isinstance(info, dict):
        raise UserError(f"sidecar {path.name} must hold a JSON object")
    part_id = info.get("part_id")
    if part_id is not None and (not isinstance(part_id, str) or not part_id.strip()):
        raise UserError(f"sidecar {path.name}: part_id must be a non-empty string")
    return info


def _mtime(path: Path) -> datetime:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError:
        return datetime.now(UTC)


def _move_group(files: tuple[Path, ...], folder: Path) -> list[Path]:
    """Move files into ``folder`` under one free suffix (``a.png``, ``a.json`` -> ``a-1.*``).

    A file is linked into place before its inbox name is removed, so a crash leaves it in
    both places (then cleaned up on the next scan), never in neither; an existing file is
    never overwritten (a name taken meanwhile moves that file to the next free suffix).
    """
    # A sidecar or audio file another part took along already is not there to move.
    files = (files[0], *(f for f in files[1:] if f.exists()))
    k = 0
    while any((folder / _suffixed(f.name, k)).exists() for f in files):
        k += 1
    moved = []
    for source in files:
        for j in range(k, k + 10_000):
            target = folder / _suffixed(source.name, j)
            try:
                _move_no_clobber(source, target)
            except FileExistsError:
                continue
            moved.append(target)
            break
        else:
            raise CaptureError(f"no free name in {folder} for {source.name}")
    return moved


def _suffixed(name: str, k: int) -> str:
    if k == 0:
        return name
    stem, dot, suffix = name.partition(".")
    return f"{stem}-{k}{dot}{suffix}"


def _move_no_clobber(source: Path, target: Path) -> None:
    try:
        os.link(source, target)  # fails if target exists: nothing is overwritten
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP):
            raise
        # Another file system (or no hard links): copy beside the target, then link.
        temp = target.with_name(f".{target.name}.tmp")
        shutil.copy2(source, temp)
        try:
            os.link(temp, target)
        finally:
            temp.unlink()
    source.unlink()
