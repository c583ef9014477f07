"""What an audit reads: a folder, a zip, a glob or a manifest, streamed part by part.

Every input becomes a stream of :class:`AuditItem` (a small, JSON-serialisable
descriptor; nothing is decoded here), so an archive of 100,000 images is listed without
holding it. What must never be read is refused here, as an item carrying its
``problem``, so that the report lists it and the audit goes on:

- a zip entry whose name is absolute or climbs out with ``..`` (a "zip slip"), or that
  is a symbolic link;
- a zip entry that would inflate past :data:`MAX_ENTRY_BYTES`, or whose compression
  ratio passes :data:`MAX_RATIO` (a decompression bomb); the inflated size is counted
  while reading too, since a header can lie;
- in a folder or a glob, a symbolic link that points out of the input.

Manifests are read by :func:`inspection.datasets.loaders.parse_manifest`, as every
other command reads them; a malformed line is listed with its line number.
"""

from __future__ import annotations

import glob
import hashlib
import os
import stat
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from inspection.datasets.loaders import (
    MANIFEST_NAME,
    METADATA_NAME,
    DatasetError,
    parse_manifest,
    read_metadata,
)
from inspection.errors import UserError
from inspection.io import (
    IMAGE_SUFFIXES,
    height_map_beside,
    height_map_suffix,
    is_height_map,
)

MAX_ENTRY_BYTES = 1 << 30
"""Largest zip entry inflated (1 GiB): a 50 Mpx 16-bit RGB TIFF, the largest image the
reader accepts by default, is 300 MB uncompressed."""
MAX_RATIO = 200
"""Largest compression ratio accepted for an entry over :data:`RATIO_FLOOR_BYTES`.
Images are compressed already (PNG, JPEG: ratio near 1); even a flat uncompressed BMP
or TIFF rarely passes 100, while a crafted bomb reaches 1,000 and more."""
RATIO_FLOOR_BYTES = 16 << 20  # small entries are cheap whatever their ratio
_GLOB_CHARS = frozenset("*?[")
_READ_CHUNK = 1 << 20


class AuditInputError(UserError):
    """An audit input that cannot be listed at all (missing, not a zip, unknown kind)."""


@dataclass(frozen=True)
class AuditItem:
    """One image to audit, or one input refused before reading (``problem`` set).

    Attributes
    ----------
    source : str
        Its name in the input: the path relative to the folder or glob root, the zip
        entry name, or the manifest's ``image`` path. Names the part in every output.
    path : str
        The file to read (the archive, for a zip entry).
    entry : str | None
        The zip entry, or ``None`` for a plain file.
    part_id : str
        The part's id: the manifest's ``part_id``, else ``source``.
    mm_per_px : float | None
        The scale stated by the manifest or ``dataset.yaml``; ``None`` when unstated.
    reference_rgb : list[int] | None
        The part's nominal colour (for ΔE), where the manifest states it.
    audio : str | None
        Its tap-test recording, where the manifest names one.
    height_map : str | None
        Its 3D profiler's height map (dents are measured on it), where the manifest
        names one or a folder holds ``<stem>.height.tiff`` or ``.height.png`` beside the image.
    height_encoding : dict | None
        How that map's integer counts read in mm, where ``dataset.yaml`` states it
        (``{scale_mm, offset_mm, invalid}``, :class:`~inspection.io.HeightEncoding`).
    problem : str | None
        Why it was refused unread, or ``None``.
    """

    source: str
    path: str
    entry: str | None = None
    part_id: str = ""
    mm_per_px: float | None = None
    reference_rgb: list[int] | None = None
    audio: str | None = None
    height_map: str | None = None
    height_encoding: dict[str, Any] | None = None
    problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AuditItem:
        return cls(**data)

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.entry or self.path).suffix.lower()


def input_kind(spec: str | Path) -> str:
    """``"zip"``, ``"manifest"``, ``"folder"`` or ``"glob"`` for an audit input.

    Raises
    ------
    AuditInputError
        A path that does not exist and is no glob, or a file of another kind.
    """
    text = str(spec)
    path = Path(text)
    if path.is_dir():
        return "manifest" if (path / MANIFEST_NAME).is_file() else "folder"
    if path.is_file():
        if path.suffix.lower() == ".jsonl":
            return "manifest"
        if zipfile.is_zipfile(path):
            return "zip"
        raise AuditInputError(
            f"{path}: not an audit input: expected a folder, a .zip archive, a .jsonl "
            "manifest or a glob such as 'images/**/*.png'"
        )
    if _GLOB_CHARS & set(text):
        return "glob"
    raise AuditInputError(f"{path}: no such file or folder")


def iter_inputs(spec: str | Path) -> Iterator[AuditItem]:
    """Stream the items of an audit input in a stable order (see the module).

    Raises
    ------
    AuditInputError
        When the input as a whole cannot be listed (see :func:`input_kind`).
    """
    kind = input_kind(spec)
    if kind == "zip":
        yield from _zip_items(Path(spec))
    elif kind == "manifest":
        path = Path(spec)
        yield from _manifest_items(path / MANIFEST_NAME if path.is_dir() else path)
    elif kind == "folder":
        root = Path(spec)
        yield from _file_items(root, _walk(root), _stated(root))
    else:
        root = _glob_root(str(spec))
        files = (Path(p) for p in glob.iglob(str(spec), recursive=True))
        yield from _file_items(root, files, _Stated())


def count_inputs(spec: str | Path) -> int:
    """How many items :func:`iter_inputs` yields, listed without reading them (for a
    progress bar's ETA)."""
    return sum(1 for _ in iter_inputs(spec))


def files_not_audited(spec: str | Path) -> Counter[str]:
    """Files of a folder or zip that :func:`iter_inputs` passes over, counted by suffix:
    an audit of a folder of ``.gif`` or ``.heic`` photos must say it audited none of them,
    not report "0 parts". A glob or a manifest names its files, so has none."""
    kind = input_kind(spec)
    if kind == "folder":
        names = [p.name for p in _walk(Path(spec)) if p.name != METADATA_NAME]
    elif kind == "zip":
        with zipfile.ZipFile(spec) as zf:
            names = [PurePosixPath(i.filename).name for i in zf.infolist() if not i.is_dir()]
    else:
        return Counter()
    passed_over = (_passed_over(name, in_zip=kind == "zip") for name in names)
    return Counter(suffix for suffix in passed_over if suffix is not None)


def _passed_over(name: str, in_zip: bool) -> str | None:
    """The suffix a file the audit passes over is counted under; ``None`` for one it
    reads (an image, or in a folder a height map beside its image)."""
    if in_zip and is_height_map(name):
        return height_map_suffix(name)  # read beside its image in a folder, not in a zip
    suffix = PurePosixPath(name).suffix.lower()
    return None if suffix in IMAGE_SUFFIXES else suffix or "(no suffix)"


def describe_files_not_audited(counts: Counter[str]) -> str | None:
    """``"2 files not audited (.gif 1, .txt 1): the audit reads .bmp, ..."``, or ``None``
    when :func:`files_not_audited` found none: the line the CLI warns with and the
    console shows beside its summary."""
    if not counts:
        return None
    total = counts.total()
    by_suffix = ", ".join(f"{suffix} {n}" for suffix, n in sorted(counts.items()))
    return (
        f"{total} file{'' if total == 1 else 's'} not audited ({by_suffix}): the audit "
        f"reads {', '.join(sorted(IMAGE_SUFFIXES))}"
    )


@dataclass(frozen=True)
class _Stated:
    """What ``dataset.yaml`` states for every part beneath it."""

    mm_per_px: float | None = None
    height_encoding: dict[str, Any] | None = None


def _stated(root: Path) -> _Stated:
    try:
        metadata = read_metadata(root)  # a malformed height_encoding is refused here
    except DatasetError as exc:
        raise AuditInputError(str(exc)) from exc
    scale = metadata.get("mm_per_px")
    return _Stated(float(scale) if scale is not None else None, metadata.get("height_encoding"))


# ---------------------------------------------------------------------------------------
# Folders and globs


def _walk(root: Path) -> Iterator[Path]:
    """Files under ``root``, depth first, each folder's names sorted; hidden names
    skipped. Symbolic links to folders are not followed (a loop would never end); a
    link to a file is yielded and judged by :func:`_file_items`."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(folder) / name


def _file_items(root: Path, files: Iterator[Path], stated: _Stated) -> Iterator[AuditItem]:
    real_root = root.resolve()
    for path in files:
        if path.suffix.lower() not in IMAGE_SUFFIXES or path.is_dir() or is_height_map(path):
            continue
        source = _relative(path, root)
        problem = None
        if path.is_symlink():
            target = path.resolve()
            if not target.is_relative_to(real_root):
                problem = f"symbolic link to {target}, outside the input {root}: refused"
        height = height_map_beside(path)
        yield AuditItem(
            source,
            str(path),
            part_id=source,
            mm_per_px=stated.mm_per_px,
            height_map=str(height) if height.is_file() else None,
            height_encoding=stated.height_encoding,
            problem=problem,
        )


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _glob_root(pattern: str) -> Path:
    """The folder a glob's matches are named relative to: its part before any wildcard."""
    parts = []
    for part in Path(pattern).parts:
        if _GLOB_CHARS & set(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


# ---------------------------------------------------------------------------------------
# Zip archives


def _zip_items(archive: Path) -> Iterator[AuditItem]:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()  # the central directory only: no entry is inflated
    except (zipfile.BadZipFile, OSError) as exc:
        raise AuditInputError(f"{archive}: not a readable zip archive ({exc})") from exc
    for info in infos:
        if info.is_dir() or PurePosixPath(info.filename).suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if is_height_map(info.filename):
            continue  # a profiler's export is no part (read from folders, not archives)
        name = info.filename
        yield AuditItem(name, str(archive), entry=name, part_id=name, problem=_zip_problem(info))


def _zip_problem(info: zipfile.ZipInfo) -> str | None:
    """Why an entry must not be read, or ``None``."""
    name = info.filename
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "zip entry with an absolute path: refused"
    if ".." in pure.parts:
        return "zip entry whose path climbs out of the archive ('..'): refused"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "zip entry that is a symbolic link: refused"
    if info.file_size > MAX_ENTRY_BYTES:
        return (
            f"zip entry inflates to {info.file_size / 2**20:.0f} MiB, over the "
            f"{MAX_ENTRY_BYTES / 2**20:.0f} MiB cap: refused as a decompression bomb"
        )
    ratio = info.file_size / max(1, info.compress_size)
    if info.file_size > RATIO_FLOOR_BYTES and ratio > MAX_RATIO:
        return (
            f"zip entry compressed {ratio:.0f}:1 (cap {MAX_RATIO}:1): refused as a "
            "decompression bomb"
        )
    return None


# ---------------------------------------------------------------------------------------
# Manifests


def _manifest_items(path: Path) -> Iterator[AuditItem]:
    try:
        samples, problems = parse_manifest(path)
        stated = _stated(path.parent)
    except DatasetError as exc:
        raise AuditInputError(str(exc)) from exc
    for line, message in problems:
        where = f"{path.name}:{line}"
        yield AuditItem(where, str(path), part_id=where, problem=f"manifest line: {message}")
    for sample in samples:
        attrs = sample.attributes
        mm = attrs.get("mm_per_px", stated.mm_per_px)
        reference = attrs.get("reference_rgb")
        yield AuditItem(
            source=_relative(sample.image, path.parent),
            path=str(sample.image),
            part_id=sample.part_id,
            mm_per_px=mm,
            reference_rgb=list(reference) if isinstance(reference, list | tuple) else None,
            audio=str(sample.audio) if sample.audio is not None else None,
            height_map=str(sample.height_map) if sample.height_map is not None else None,
            height_encoding=stated.height_encoding,
        )


# ---------------------------------------------------------------------------------------
# Reading


def read_bytes(item: AuditItem) -> bytes:
    """The item's bytes: the file's, or the zip entry inflated within the caps.

    Raises
    ------
    InputRefused
        The entry inflates past :data:`MAX_ENTRY_BYTES` (a header that lied), or the file
        or entry cannot be read.
    """
    if item.entry is None:
        try:
            return Path(item.path).read_bytes()
        except OSError as exc:
            raise InputRefused(f"cannot read: {exc.strerror or exc}") from exc
    try:
        with zipfile.ZipFile(item.path) as zf, zf.open(item.entry) as f:
            chunks, total = [], 0
            while chunk := f.read(_READ_CHUNK):
                total += len(chunk)
                if total > MAX_ENTRY_BYTES:
                    raise InputRefused(
                        f"zip entry inflates past the {MAX_ENTRY_BYTES / 2**20:.0f} MiB cap "
                        "(more than its header declares): refused as a decompression bomb"
                    )
                chunks.append(chunk)
            return b"".join(chunks)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
        raise InputRefused(f"unreadable zip entry ({exc})") from exc
    except RuntimeError as exc:  # zipfile's word for an encrypted entry
        raise InputRefused(f"unreadable zip entry ({exc})") from exc


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class InputRefused(UserError):
    """An item that could not be read, with the reason (listed in the report)."""
