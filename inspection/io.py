"""Reading and writing images, masks and audio, with errors that name the file.

Every reader accepts what real stations produce (8/16-bit, grayscale/RGB/RGBA, any
size) and raises :class:`InputError` for anything it cannot use, so callers can report
the file and carry on instead of crashing.

Images (and masks, which are images) are read upright and within a pixel budget:

- **Orientation**: a camera that stores its pixels sideways says so in the EXIF
  orientation tag, and every viewer shows the picture turned; :func:`read_image` does
  the same, so a part is not inspected sideways. OpenCV applies the tag for every read
  flag but ``IMREAD_UNCHANGED``, so images are decoded with ``IMREAD_ANYDEPTH |
  IMREAD_ANYCOLOR``: 16-bit and grayscale are kept, alpha (dropped here anyway) is
  dropped by the decoder. OpenCV's TIFF decoder turns a TIFF itself.
- **Size**: the header is parsed first (Pillow opens lazily; OpenCV cannot read a
  header alone), so an image over ``max_image_pixels`` (:mod:`inspection.config`) is
  refused, or scaled down with ``max_side``, before any pixel is decoded, and a tiny
  file declaring a huge image (a decompression bomb) costs next to nothing.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf
from PIL import Image, TiffImagePlugin

from inspection.config import get_settings
from inspection.errors import UserError
from inspection.types import AUDIO_SAMPLE_RATE, AudioClip

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg"})
MIN_IMAGE_SIDE = 8

EXIF_ORIENTATION_TAG = 0x0112
ORIENTATIONS = {
    1: "upright",
    2: "mirrored left-right",
    3: "rotated 180°",
    4: "mirrored top-bottom",
    5: "mirrored and rotated 90° counter-clockwise",
    6: "rotated 90° clockwise",
    7: "mirrored and rotated 90° clockwise",
    8: "rotated 90° counter-clockwise",
}
"""What each EXIF orientation does to the stored pixels to show them upright."""

# Not IMREAD_UNCHANGED: OpenCV ignores the EXIF orientation for that flag alone.
_DECODE_FLAGS = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR
_WARNINGS_LOCK = threading.Lock()
_REDUCED_FLAGS = {  # (grayscale, factor): JPEG decoded at 1/factor by libjpeg's DCT scaling
    (False, 2): cv2.IMREAD_REDUCED_COLOR_2,
    (False, 4): cv2.IMREAD_REDUCED_COLOR_4,
    (False, 8): cv2.IMREAD_REDUCED_COLOR_8,
    (True, 2): cv2.IMREAD_REDUCED_GRAYSCALE_2,
    (True, 4): cv2.IMREAD_REDUCED_GRAYSCALE_4,
    (True, 8): cv2.IMREAD_REDUCED_GRAYSCALE_8,
}


class InputError(UserError):
    """An input file or array that cannot be used, with the reason."""


@dataclass(frozen=True)
class ImageHeader:
    """What an image file declares before its pixels are decoded.

    Attributes
    ----------
    width, height : int
        Size of the image as read (upright: after its EXIF orientation).
    orientation : int
        EXIF orientation, 1 (upright as stored) to 8 (see :data:`ORIENTATIONS`).
    format : str
        Pillow's name for the format (``"JPEG"``, ``"PNG"``, ...).
    mode : str
        Pillow's pixel mode (``"L"``, ``"RGB"``, ``"I;16"``, ...).
    """

    width: int
    height: int
    orientation: int = 1
    format: str = ""
    mode: str = ""

    @property
    def rotated(self) -> bool:
        """The stored pixels are turned or mirrored on read."""
        return self.orientation != 1


def read_image(path: str | Path, *, max_side: int | None = None) -> np.ndarray:
    """Read an image upright, as RGB (or single-channel), at its native bit depth.

    Parameters
    ----------
    path : str | Path
    max_side : int | None
        What to do with an image over the pixel budget (setting ``max_image_pixels``,
        env ``INSPECTION_MAX_IMAGE_PIXELS``). ``None``: refuse it. A number: scale it
        down so its longest side is ``max_side`` px (area interpolation; a JPEG is
        decoded at 1/2, 1/4 or 1/8 first), as ``inspection train --max-side`` does.
        Each pixel then spans more millimetres: multiply ``mm_per_px`` by
        ``read_header(path).width / image.shape[1]``. An image within the budget is
        never scaled.

    Returns
    -------
    np.ndarray
        ``(H, W)`` for grayscale, ``(H, W, 3)`` RGB otherwise; alpha is dropped.
        uint8 or uint16 as stored. Turned by its EXIF orientation, as viewers show it.

    Raises
    ------
    InputError
        A missing, empty, corrupt or unsupported file; an image under 8 px; one over the
        pixel budget (with ``max_side``: still over it at that size); one declaring
        more pixels than Pillow's decompression-bomb limit (about 179 Mpx), refused
        unread whatever the budget.
    """
    path = Path(path)
    if max_side is not None and max_side < MIN_IMAGE_SIDE:
        raise ValueError(f"max_side must be at least {MIN_IMAGE_SIDE} px, not {max_side}")
    _check_file(path)
    budget = get_settings().max_image_pixels
    header = _header(path)
    scale, flags = 1.0, _DECODE_FLAGS
    if header is not None:  # refused, or planned, before the pixels are even read
        scale = _fit_budget(path, header.width, header.height, budget, max_side)
        flags = _decode_flags(header, scale)
    image = cv2.imdecode(np.fromfile(path, dtype=np.uint8), flags)
    if image is None:
        raise InputError(f"{path}: not a readable image (corrupt or unsupported format)")
    image = _to_rgb(image, path)
    if header is None:  # a header Pillow cannot parse: held to the budget once decoded
        scale = _fit_budget(path, image.shape[1], image.shape[0], budget, max_side)
    if scale < 1.0:
        assert max_side is not None  # _fit_budget scales only with max_side
        image = _longest_side_to(image, max_side)
    _check_size(image, path)
    return image


def read_header(path: str | Path) -> ImageHeader | None:
    """The size and orientation an image file declares, without decoding its pixels.

    Returns
    -------
    ImageHeader | None
        ``None`` for a file that cannot be read or whose header Pillow cannot parse
        (:func:`read_image` then relies on OpenCV's decode alone), or one that declares
        a decompression bomb.
    """
    try:
        return _header(Path(path))
    except InputError:
        return None


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file")


def _header(path: Path) -> ImageHeader | None:
    """The header as Pillow parses it (lazily: it reads what it needs, and no pixel is
    decoded), or None."""
    try:
        # Quiet: Pillow warns of corrupt EXIF and of sizes from 89 Mpx on, but the decode
        # and the budget are the judges here, and they say why. The lock: catch_warnings
        # swaps process-wide state, and threads (datasets check) would leave it swapped.
        with _WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                return _upright_header(image)
    except Image.DecompressionBombError as exc:
        declared = str(exc).split(",")[0]  # "Image size (N pixels) exceeds limit of M pixels"
        raise InputError(
            f"{path}: {declared}: refused unread as a decompression bomb (no line camera "
            "comes near it)"
        ) from exc
    except Exception:
        # Pillow's parsers raise errors of many types on a malformed or unknown header.
        # This is a probe, not the judge: OpenCV's decode decides, and an image it
        # accepts is then held to the budget after decoding.
        return None


def _upright_header(image: Image.Image) -> ImageHeader:
    width, height = image.size
    if isinstance(image, TiffImagePlugin.TiffImageFile):
        # Pillow gives a TIFF's size upright already; OpenCV's TIFF decoder turns it.
        orientation = image.tag_v2.get(EXIF_ORIENTATION_TAG, 1)
    else:
        orientation = _exif_orientation(image.info.get("exif"))
        if orientation in (5, 6, 7, 8):
            width, height = height, width
    if orientation not in ORIENTATIONS:
        orientation = 1  # OpenCV ignores a value out of range, and so does the header
    return ImageHeader(int(width), int(height), int(orientation), image.format or "", image.mode)


def _exif_orientation(raw: bytes | None) -> int:
    """The orientation in an EXIF block; EXIF only (not XMP), as OpenCV applies it."""
    if not raw:
        return 1
    exif = Image.Exif()
    exif.load(raw)
    return int(exif.get(EXIF_ORIENTATION_TAG, 1))


def _fit_budget(path: Path, width: int, height: int, budget: int, max_side: int | None) -> float:
    """The scale to read a ``width x height`` image at (1.0: as it is), or refuse it."""
    pixels = width * height
    if pixels <= budget:
        return 1.0
    size = f"{width}x{height} px ({pixels / 1e6:.3g} Mpx)"
    over = f"over the pixel budget of {budget / 1e6:.3g} Mpx"
    if max_side is None:
        raise InputError(
            f"{path}: image is {size}, {over}: raise the budget with "
            "INSPECTION_MAX_IMAGE_PIXELS (setting max_image_pixels), or scale the image "
            "down (--max-side where the command has it)"
        )
    scale = max_side / max(width, height)
    if scale >= 1.0 or pixels * scale * scale > budget:
        raise InputError(
            f"{path}: image is {size}, {over} even with its longest side at {max_side} px: "
            "raise INSPECTION_MAX_IMAGE_PIXELS or lower max_side"
        )
    return scale


def _decode_flags(header: ImageHeader, scale: float) -> int:
    """A JPEG to be scaled down by 2 or more is decoded at 1/2, 1/4 or 1/8 by libjpeg
    (far faster, and a fraction of the memory); other decoders would only decode in
    full and resize, which the area interpolation after does better."""
    factor = max(f for f in (1, 2, 4, 8) if f * scale <= 1.0)  # never below max_side
    if factor == 1 or header.format != "JPEG":
        return _DECODE_FLAGS
    return _REDUCED_FLAGS[(header.mode == "L", factor)]


def _longest_side_to(image: np.ndarray, max_side: int) -> np.ndarray:
    h, w = image.shape[:2]
    factor = max_side / max(h, w)
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _to_rgb(image: np.ndarray, source: Path | str) -> np.ndarray:
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3:
        if image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
        elif image.shape[2] == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        else:
            raise InputError(f"{source}: unsupported channel count {image.shape[2]}")
    _check_size(image, source)
    if image.dtype not in (np.uint8, np.uint16):
        if image.dtype.kind == "f" and not np.isfinite(image).all():
            raise InputError(f"{source}: image has NaN or infinite pixels")
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return image


def _check_size(image: np.ndarray, source: Path | str) -> None:
    if image.shape[0] < MIN_IMAGE_SIDE or image.shape[1] < MIN_IMAGE_SIDE:
        raise InputError(f"{source}: image too small ({image.shape[1]}x{image.shape[0]} px)")


def to_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """Any image from :func:`read_image` as ``(H, W, 3)`` uint8 RGB."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image)


def read_mask(path: str | Path, *, max_side: int | None = None) -> np.ndarray:
    """Read a defect mask as ``(H, W)`` bool.

    Pixels above half the mask's maximum are defect: this reads 0/1 and 0/255 masks
    alike and drops the anti-aliased fringe some datasets' masks carry. A mask is read
    as its image is (:func:`read_image`: turned by its EXIF orientation, the same pixel
    budget, and ``max_side``), so the two stay aligned.
    """
    image = read_image(path, max_side=max_side)
    if image.ndim == 3:
        image = image.max(axis=2)
    peak = int(image.max())
    return image > peak / 2 if peak > 0 else np.zeros(image.shape, dtype=bool)


HEIGHT_MAP_SUFFIXES = (".height.tiff", ".height.png")
"""A profiler's height map exported beside its image as ``<stem>.height.tiff`` (float32
mm, or integer counts) or ``<stem>.height.png`` (16-bit counts, as 3D cameras save depth):
the image's, not a part of its own (a station's watched folder, an audited folder).
Counts are read through a height encoding (:class:`HeightEncoding`)."""

HEIGHT_MAP_SUFFIX = HEIGHT_MAP_SUFFIXES[0]
"""The name a height map beside an image is looked for under when none is there."""


def height_map_beside(image: str | Path) -> Path:
    """Where ``image``'s height map lies by :data:`HEIGHT_MAP_SUFFIXES`' convention: the
    first that exists, else ``<stem>.height.tiff``."""
    image = Path(image)
    candidates = [image.with_name(image.stem + suffix) for suffix in HEIGHT_MAP_SUFFIXES]
    return next((path for path in candidates if path.is_file()), candidates[0])


def height_map_suffix(name: str | Path) -> str | None:
    """The suffix of :data:`HEIGHT_MAP_SUFFIXES` a file's name ends in, or ``None``."""
    lower = str(name).lower()
    return next((suffix for suffix in HEIGHT_MAP_SUFFIXES if lower.endswith(suffix)), None)


def is_height_map(name: str | Path) -> bool:
    """Whether a file's name marks it as a height map beside an image."""
    return height_map_suffix(name) is not None


@dataclass(frozen=True)
class HeightEncoding:
    """How a profiler's integer height map reads in mm: ``mm = raw * scale_mm +
    offset_mm``, and a point equal to ``invalid`` is one the profiler missed (NaN). These
    are GenICam's Scan3dCoordinateScale, Scan3dCoordinateOffset and
    Scan3dInvalidDataValue, which a 3D camera reports beside its range image; a negative
    scale turns a range (distance from the sensor) into a height.

    Raises
    ------
    UserError
        A scale that is zero or not finite, an offset not finite, an invalid value not
        an integer.
    """

    scale_mm: float
    offset_mm: float = 0.0
    invalid: int | None = None

    def __post_init__(self) -> None:
        scale, offset = self.scale_mm, self.offset_mm
        if not _is_number(scale) or not np.isfinite(scale) or scale == 0:
            raise UserError(f"a height map's z scale must be a finite non-zero mm, not {scale!r}")
        if not _is_number(offset) or not np.isfinite(offset):
            raise UserError(f"a height map's z offset must be a finite mm, not {offset!r}")
        if self.invalid is not None and (
            isinstance(self.invalid, bool) or not isinstance(self.invalid, int | np.integer)
        ):
            raise UserError(
                f"a height map's invalid value must be an integer, not {self.invalid!r}"
            )

    @classmethod
    def from_mapping(cls, data: object, where: str) -> HeightEncoding:
        """The encoding a config or ``dataset.yaml`` states as ``{scale_mm, offset_mm,
        invalid}``; an error names ``where``."""
        if not isinstance(data, dict) or set(data) - {"scale_mm", "offset_mm", "invalid"}:
            raise UserError(
                f"{where}: a height encoding is a mapping of scale_mm, offset_mm and invalid, "
                f"not {data!r}"
            )
        if "scale_mm" not in data:
            raise UserError(f"{where}: a height encoding needs scale_mm (mm per count)")
        try:
            return cls(data["scale_mm"], data.get("offset_mm", 0.0), data.get("invalid"))
        except UserError as exc:
            raise UserError(f"{where}: {exc}") from exc

    def decode(self, raw: np.ndarray) -> np.ndarray:
        """``(H, W)`` float32 mm of an integer height map, NaN where it is ``invalid``."""
        height = (raw.astype(np.float64) * self.scale_mm + self.offset_mm).astype(np.float32)
        if self.invalid is not None:
            height[raw == self.invalid] = np.nan
        return height


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | np.number) and not isinstance(value, bool)


def read_height_map(path: str | Path, encoding: HeightEncoding | None = None) -> np.ndarray:
    """Read a 3D profiler's height map, ``(H, W)`` float32 in mm: a one-channel float
    TIFF in mm, as profilers export them (invalid points may be NaN), or a one-channel
    integer TIFF (a range image's counts) read through its ``encoding``.

    Raises
    ------
    InputError
        A file that is missing or not decodable, not one channel, an integer map without
        an encoding, or a float map with one (its values are mm already).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such height map")
    height = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if height is None:
        raise InputError(f"{path}: cannot decode a height map (expected a one-channel TIFF)")
    if height.ndim != 2 or not (
        np.issubdtype(height.dtype, np.floating) or np.issubdtype(height.dtype, np.integer)
    ):
        raise InputError(
            f"{path}: a height map is one channel of float32 mm or of integer counts, not "
            f"{height.dtype} of shape {height.shape}"
        )
    if np.issubdtype(height.dtype, np.floating):
        if encoding is not None:
            raise InputError(
                f"{path}: a {height.dtype} height map is in mm already; a height encoding "
                "(z scale, offset, invalid value) reads integer maps only"
            )
        return height.astype(np.float32, copy=False)
    if encoding is None:
        raise InputError(
            f"{path}: an integer ({height.dtype}) height map needs the profiler's z scale in "
            "mm per count, its offset and its invalid value (a height encoding: audit's "
            "--height-scale, a dataset's or a folder source's height_encoding)"
        )
    return encoding.decode(height)


def write_image(path: str | Path, image: np.ndarray) -> None:
    """Write an RGB or grayscale image; the format follows the suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    out = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, buf = cv2.imencode(path.suffix or ".png", out)
    if not ok:
        raise InputError(f"{path}: cannot encode image as {path.suffix}")
    buf.tofile(path)


def read_audio(path: str | Path, sample_rate: int = AUDIO_SAMPLE_RATE) -> AudioClip:
    """Read a clip with soundfile (no ffmpeg), mix to mono and resample.

    Raises
    ------
    InputError
        For unreadable, empty, silent-NaN or non-finite audio.
    """
    path = Path(path)
    _check_file(path)
    try:
        samples, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise InputError(f"{path}: not a readable audio file ({exc})") from exc
    return audio_clip(samples.mean(axis=1), rate, sample_rate=sample_rate, source=str(path))


def audio_clip(
    samples: np.ndarray,
    rate: int,
    sample_rate: int = AUDIO_SAMPLE_RATE,
    kind: str = "tap",
    source: str = "audio",
) -> AudioClip:
    """Validate raw samples and resample them to ``sample_rate`` as float32."""
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    if samples.size == 0:
        raise InputError(f"{source}: empty audio")
    if not np.isfinite(samples).all():
        raise InputError(f"{source}: audio has NaN or infinite samples")
    if rate != sample_rate:
        g = np.gcd(int(rate), int(sample_rate))
        from scipy.signal import resample_poly  # here: scipy costs seconds at import

        samples = resample_poly(samples, sample_rate // g, int(rate) // g).astype(np.float32)
    return AudioClip(samples=samples, sample_rate=sample_rate, kind=kind)


def write_audio(path: str | Path, clip: AudioClip) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.clip(clip.samples, -1.0, 1.0), clip.sample_rate, subtype="PCM_16")
