"""Evidence images on disk, named by the SHA-256 of their content.

``<root>/ab/cd/abcd<...>.png``: the same image stored twice is one file, a name says
what it holds (a record can be checked against its file), and a file is written
atomically (a temporary file in the same folder, fsync'ed, then renamed), so a crash
leaves either the whole file or none. Torch-free.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from inspection.errors import UserError
from inspection.types import Frame

_HEX = frozenset("0123456789abcdef")
# Encoded images given as bytes keep their format; the suffix follows the magic number.
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", ".png"),
    (b"\xff\xd8\xff", ".jpg"),
    (b"BM", ".bmp"),
    (b"RIFF", ".wav"),  # a spoken question (WAV)
    (b"II*\x00", ".tiff"),  # a profiler's height map (float32 mm, encode_height_map)
    (b"MM\x00*", ".tiff"),
)
SUFFIXES = (".png", ".jpg", ".bmp", ".wav", ".tiff", ".bin")


@dataclass(frozen=True)
class EvidenceFile:
    sha256: str
    path: Path
    size: int
    mtime: float


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of an RGB (or grayscale, or 16-bit) image: lossless evidence."""
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
        shape = getattr(image, "shape", type(image).__name__)
        raise UserError(f"evidence image must be an (H, W) or (H, W, C) array, not {shape}")
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise UserError(f"cannot encode a {image.dtype} {image.shape} image as PNG")
    return buf.tobytes()


def encode_height_map(height_map: np.ndarray) -> bytes:
    """A profiler's height map as one-channel float32 TIFF bytes (mm, NaN kept)."""
    height = np.asarray(height_map, dtype=np.float32)
    if height.ndim != 2 or height.size == 0:
        raise UserError(f"a height map is an (H, W) array, not {height.shape}")
    ok, buf = cv2.imencode(".tiff", height)
    if not ok:
        raise UserError(f"cannot encode a {height.shape} height map as TIFF")
    return buf.tobytes()


NO_HEIGHT_MAP = encode_height_map(np.full((1, 1), np.nan, np.float32))
"""The height map a record keeps for a frame the profiler did not cover, where another
frame of the part has one: one point, not read (stored once, whatever the parts)."""
_NO_HEIGHT_MAP_SHA256 = hashlib.sha256(NO_HEIGHT_MAP).hexdigest()


def frame_evidence(frames: Sequence[Frame]) -> list[np.ndarray | bytes]:
    """What a part's record keeps of its ``n`` frames: each frame's image, then, where
    any frame has one, each frame's height map (a float32 TIFF), so that entry ``n + i``
    is frame ``i``'s (:func:`frame_height_map`): the console shows it beside the image,
    and reviewed parts are exported with it. A frame the profiler did not cover (a
    station profiling one of its cameras) keeps :data:`NO_HEIGHT_MAP` in its place."""
    images: list[np.ndarray | bytes] = [frame.image for frame in frames]
    if any(frame.height_map is not None for frame in frames):
        images += [
            NO_HEIGHT_MAP if frame.height_map is None else encode_height_map(frame.height_map)
            for frame in frames
        ]
    return images


def frame_height_map(evidence: Sequence[Path | None], frame: int) -> Path | None:
    """The height-map file of ``frame`` among a record's evidence files (in the record's
    order; ``None`` for one not found), as :func:`frame_evidence` keeps them; ``None``
    where the record keeps none, or none for that frame."""
    maps = [i for i, path in enumerate(evidence) if path is not None and path.suffix == ".tiff"]
    if not maps or len(maps) * 2 != len(evidence) or maps[0] != len(maps):
        return None  # not n images then n height maps: none kept (or not all found)
    path = evidence[maps[0] + frame] if 0 <= frame < len(maps) else None
    return None if path is None or path.stem == _NO_HEIGHT_MAP_SHA256 else path


def _suffix(data: bytes) -> str:
    for magic, suffix in _MAGIC:
        if data.startswith(magic):
            return suffix
    return ".bin"


def kept_as_is(data: bytes) -> bool:
    """Whether an encoded image's bytes are stored as they are (a format every reader of
    the evidence decodes: PNG, JPEG, BMP); store others' pixels instead."""
    return _suffix(data) in (".png", ".jpg", ".bmp")


class EvidenceStore:
    """Content-addressed image files under ``root``.

    Parameters
    ----------
    root : str | Path
        The evidence folder (created).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str, suffix: str = ".png") -> Path:
        """Where the file of ``sha256`` lives: ``root/ab/cd/abcd....suffix``."""
        if len(sha256) != 64 or not set(sha256) <= _HEX:
            raise UserError(f"not a SHA-256 in hex: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / f"{sha256}{suffix}"

    def find(self, sha256: str) -> Path | None:
        """The stored file of ``sha256``, whatever its format; ``None`` when absent."""
        for suffix in SUFFIXES:
            path = self.path(sha256, suffix)
            if path.exists():
                return path
        return None

    def put(self, image: np.ndarray | bytes) -> str:
        """Store an image (an array, saved as PNG; or an encoded file's bytes, kept as is).

        Returns its SHA-256; an image already stored is not written again.
        """
        data = bytes(image) if isinstance(image, bytes | bytearray | memoryview) else None
        if data is None:
            data = encode_png(image)
        digest = hashlib.sha256(data).hexdigest()
        path = self.path(digest, _suffix(data))
        if path.exists():
            return digest
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)  # atomic: readers see the whole file or none
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    def files(self) -> Iterator[EvidenceFile]:
        """Every stored file (temporary files of interrupted writes are left out)."""
        for path in self.root.glob("??/??/*"):
            name = path.stem
            if path.name.startswith(".tmp-") or len(name) != 64 or not set(name) <= _HEX:
                continue
            stat = path.stat()
            yield EvidenceFile(name, path, stat.st_size, stat.st_mtime)

    def remove(self, sha256: str) -> int:
        """Delete the file(s) of ``sha256``; returns the bytes freed."""
        freed = 0
        for suffix in SUFFIXES:
            path = self.path(sha256, suffix)
            if path.exists():
                freed += path.stat().st_size
                path.unlink()
        return freed
