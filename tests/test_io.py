"""Reading images and audio: every odd input loads or gives a clear error."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf
from conftest import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from inspection import io as inspection_io
from inspection.config import get_settings
from inspection.errors import UserError
from inspection.io import (
    HeightEncoding,
    InputError,
    audio_clip,
    read_audio,
    read_header,
    read_height_map,
    read_image,
    read_mask,
    to_uint8_rgb,
)


@pytest.mark.parametrize(
    ("array", "shape", "dtype"),
    [
        (np.full((20, 30), 7, np.uint8), (20, 30), np.uint8),
        (np.full((20, 30), 4000, np.uint16), (20, 30), np.uint16),
        (np.zeros((20, 30, 3), np.uint8), (20, 30, 3), np.uint8),
        (np.zeros((20, 30, 4), np.uint8), (20, 30, 3), np.uint8),
    ],
)
def test_read_any_bit_depth_and_channels(tmp_path, array, shape, dtype):
    path = tmp_path / "img.png"
    cv2.imwrite(str(path), array)
    image = read_image(path)
    assert image.shape == shape and image.dtype == dtype
    assert to_uint8_rgb(image).shape == (20, 30, 3)


def test_rgb_channel_order(tmp_path):
    bgr = np.zeros((10, 10, 3), np.uint8)
    bgr[..., 2] = 255  # red in OpenCV's BGR
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    assert read_image(tmp_path / "red.png")[0, 0].tolist() == [255, 0, 0]


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty file"), (b"not an image at all", "not a readable image")],
)
def test_broken_images_name_the_file(tmp_path, content, message):
    path = tmp_path / "broken.png"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as info:
        read_image(path)
    assert "broken.png" in str(info.value)


def test_truncated_and_tiny_images(tmp_path):
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8))
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[:100])
    with pytest.raises(InputError):
        read_image(tmp_path / "cut.png")
    cv2.imwrite(str(tmp_path / "tiny.png"), np.zeros((4, 4), np.uint8))
    with pytest.raises(InputError, match="too small"):
        read_image(tmp_path / "tiny.png")
    with pytest.raises(InputError, match="no such file"):
        read_image(tmp_path / "absent.png")


def test_mask_threshold_drops_antialiased_fringe(tmp_path):
    mask = np.zeros((16, 16), np.uint8)
    mask[4:8, 4:8] = 255
    mask[8, 4:8] = 40  # anti-aliased edge
    cv2.imwrite(str(tmp_path / "m.png"), mask)
    assert read_mask(tmp_path / "m.png").sum() == 16
    cv2.imwrite(str(tmp_path / "binary01.png"), (mask == 255).astype(np.uint8))
    assert read_mask(tmp_path / "binary01.png").sum() == 16


def test_audio_mono_resampled_float32(tmp_path):
    t = np.arange(44100) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 440 * t)] * 2, axis=1) * 0.5
    sf.write(tmp_path / "a.wav", stereo, 44100)
    clip = read_audio(tmp_path / "a.wav")
    assert clip.sample_rate == 16000 and clip.samples.dtype == np.float32
    assert abs(clip.duration_s - 1.0) < 1e-3


@pytest.mark.parametrize(
    ("samples", "message"),
    [(np.zeros(0), "empty audio"), (np.array([0.1, np.nan, 0.2]), "NaN")],
)
def test_bad_audio_is_refused(samples, message):
    with pytest.raises(InputError, match=message):
        audio_clip(samples, 16000)


def test_unreadable_audio_file(tmp_path):
    (tmp_path / "x.wav").write_bytes(b"RIFF....garbage")
    with pytest.raises(InputError, match=r"x\.wav"):
        read_audio(tmp_path / "x.wav")


# ---------------------------------------------------------------------------------------
# EXIF orientation: read as viewers show the picture


def _asymmetric(height: int = 40, width: int = 64) -> np.ndarray:
    """RGB with a different mark in each corner, so any turn or mirror shows."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 3, y * 5, (x + y) % 64], axis=-1).astype(np.uint8)
    image[:8, :16] = (255, 0, 0)  # a red block at the top left
    return image


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


@pytest.mark.parametrize(
    ("orientation", "upright"),
    [
        (6, lambda a: np.rot90(a, k=-1)),  # stored sideways: turn 90° clockwise
        (8, lambda a: np.rot90(a, k=1)),
        (3, lambda a: np.rot90(a, k=2)),
        (2, lambda a: a[:, ::-1]),
    ],
)
@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp"])
def test_exif_orientation_is_applied_on_read(tmp_path, orientation, upright, suffix):
    stored = _asymmetric()
    path = tmp_path / f"part{suffix}"
    options = {"quality": 100, "subsampling": 0} if suffix == ".jpg" else {"lossless": True}
    Image.fromarray(stored).save(path, exif=_exif(orientation), **options)
    image = read_image(path)
    expected = upright(stored)
    assert image.shape == expected.shape and image.dtype == np.uint8
    tolerance = 8 if suffix == ".jpg" else 0
    assert np.abs(image.astype(int) - expected.astype(int)).max() <= tolerance
    header = read_header(path)
    assert header is not None and header.orientation == orientation and header.rotated
    assert (header.height, header.width) == image.shape[:2]


def test_tiff_orientation_is_applied_too(tmp_path):
    """OpenCV's TIFF decoder turns a TIFF itself: once, not twice."""
    stored = _asymmetric()
    Image.fromarray(stored).save(tmp_path / "part.tif", tiffinfo={0x0112: 6})
    np.testing.assert_array_equal(read_image(tmp_path / "part.tif"), np.rot90(stored, k=-1))


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_grayscale_keeps_its_depth_and_is_turned(tmp_path, suffix):
    stored = (_asymmetric()[..., 0].astype(np.uint16) * 257) | 1  # odd values: not 8-bit
    path = tmp_path / f"deep{suffix}"
    if suffix == ".png":
        Image.fromarray(stored).save(path, exif=_exif(8))
    else:
        Image.fromarray(stored).save(path, tiffinfo={0x0112: 8})
    image = read_image(path)
    assert image.dtype == np.uint16 and image.ndim == 2
    np.testing.assert_array_equal(image, np.rot90(stored, k=1))


def test_16_bit_rgb_without_orientation_reads_as_before(tmp_path):
    stored = np.random.default_rng(1).integers(0, 65536, (20, 30, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), stored)
    image = read_image(tmp_path / "deep.png")
    assert image.dtype == np.uint16
    np.testing.assert_array_equal(image, stored[..., ::-1])  # BGR on disk, RGB read
    assert read_header(tmp_path / "deep.png").orientation == 1


def test_mask_is_turned_like_its_image(tmp_path):
    image = _asymmetric()
    mask = np.zeros(image.shape[:2], np.uint8)
    mask[:8, :16] = 255  # over the red block
    Image.fromarray(image).save(tmp_path / "part.png", exif=_exif(6))
    Image.fromarray(mask).save(tmp_path / "mask.png", exif=_exif(6))
    read = read_mask(tmp_path / "mask.png")
    assert read.shape == read_image(tmp_path / "part.png").shape[:2]
    np.testing.assert_array_equal(read, np.rot90(mask, k=-1) > 0)
    red = np.full((8 * 16, 3), [255, 0, 0])
    np.testing.assert_array_equal(read_image(tmp_path / "part.png")[read], red)


# ---------------------------------------------------------------------------------------
# Pixel budget: refused, or scaled with max_side, before decoding


@pytest.fixture
def pixel_budget(monkeypatch):
    """Set ``max_image_pixels`` through the environment, as a station would."""

    def set_budget(pixels: int) -> None:
        monkeypatch.setenv("INSPECTION_MAX_IMAGE_PIXELS", str(pixels))
        get_settings.cache_clear()

    yield set_budget
    get_settings.cache_clear()


@pytest.fixture
def decodes(monkeypatch) -> list[int]:
    """The flags of every ``cv2.imdecode`` call ``read_image`` makes."""
    flags: list[int] = []
    real = cv2.imdecode

    def spy(data, flag):
        flags.append(flag)
        return real(data, flag)

    monkeypatch.setattr(inspection_io.cv2, "imdecode", spy)
    return flags


def _png_declaring(width: int, height: int) -> bytes:
    """A PNG of a few hundred bytes whose header declares ``width x height`` gray pixels
    (one compressed row of zeros: what a decompression bomb looks like before decoding)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    row = zlib.compress(b"\0" * (width + 1), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", row) + chunk(b"IEND", b"")


def test_image_over_the_budget_is_refused_from_its_header(tmp_path, decodes):
    """9000 x 9000 (81 Mpx) is over the default 50 Mpx: refused before decoding, with
    the file, the size, the budget and the setting that raises it."""
    path = tmp_path / "huge.png"
    path.write_bytes(_png_declaring(9000, 9000))
    with pytest.raises(InputError) as info:
        read_image(path)
    message = str(info.value)
    for part in ("huge.png", "9000x9000", "50 Mpx", "INSPECTION_MAX_IMAGE_PIXELS"):
        assert part in message
    assert decodes == []


@pytest.mark.parametrize("max_side", [None, 1024])
def test_a_decompression_bomb_is_refused_unread(tmp_path, decodes, max_side):
    """A file of a few hundred bytes declaring 100000 x 100000 px, even with max_side."""
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_declaring(100_000, 100_000))
    assert path.stat().st_size < 2_000
    with pytest.raises(InputError, match=r"bomb\.png.*decompression bomb"):
        read_image(path, max_side=max_side)
    assert decodes == []
    assert read_header(path) is None


def test_the_budget_is_a_setting(tmp_path, pixel_budget):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((40, 50), np.uint8))  # 2000 px
    pixel_budget(1999)
    with pytest.raises(InputError, match=r"a\.png: image is 50x40 px"):
        read_image(tmp_path / "a.png")
    pixel_budget(2000)
    assert read_image(tmp_path / "a.png").shape == (40, 50)


def test_max_side_scales_an_over_budget_image_and_keeps_its_depth(tmp_path, pixel_budget):
    rng = np.random.default_rng(0)
    stored = rng.integers(0, 65536, (120, 200), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "big.png"), stored)
    pixel_budget(10_000)  # 24000 px is over it
    image = read_image(tmp_path / "big.png", max_side=50)
    assert image.shape == (30, 50) and image.dtype == np.uint16
    expected = cv2.resize(stored, (50, 30), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(image, expected)
    # within the budget, max_side changes nothing: the model tiles at native resolution
    pixel_budget(24_000)
    assert read_image(tmp_path / "big.png", max_side=50).shape == (120, 200)


def test_max_side_decodes_a_large_jpeg_reduced_and_upright(tmp_path, pixel_budget, decodes):
    stored = cv2.resize(_asymmetric(), (640, 400), interpolation=cv2.INTER_NEAREST)
    path = tmp_path / "big.jpg"
    Image.fromarray(stored).save(path, exif=_exif(6), quality=95)
    pixel_budget(100_000)  # 256000 px is over it
    image = read_image(path, max_side=100)
    assert image.shape == (100, 62, 3)
    assert decodes == [cv2.IMREAD_REDUCED_COLOR_4]  # 640 -> 160 by libjpeg, then to 100
    expected = cv2.resize(np.rot90(stored, k=-1), (62, 100), interpolation=cv2.INTER_AREA)
    assert np.abs(image.astype(int) - expected.astype(int)).mean() < 4
    assert tuple(image[2, -3]) == pytest.approx((255, 0, 0), abs=40)  # red block: top right


def test_max_side_that_still_leaves_it_over_budget_is_refused(tmp_path, pixel_budget):
    cv2.imwrite(str(tmp_path / "big.png"), np.zeros((120, 200), np.uint8))
    pixel_budget(1000)
    with pytest.raises(InputError, match="even with its longest side at 100 px"):
        read_image(tmp_path / "big.png", max_side=100)  # 100 x 60 = 6000 px
    with pytest.raises(ValueError, match="max_side"):
        read_image(tmp_path / "big.png", max_side=0)


# ---------------------------------------------------------------------------------------
# Fuzz: whatever the bytes, read_image returns an image or raises InputError


def _seeds() -> list[bytes]:
    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    deep = rng.integers(0, 65536, (24, 32), dtype=np.uint16)
    rgba = rng.integers(0, 256, (24, 32, 4), dtype=np.uint8)
    encoded = [
        cv2.imencode(".png", rgb)[1],
        cv2.imencode(".png", deep)[1],
        cv2.imencode(".png", rgba)[1],
        cv2.imencode(".jpg", rgb)[1],
        cv2.imencode(".bmp", rgb)[1],
        cv2.imencode(".tif", deep)[1],
        cv2.imencode(".tif", rgb)[1],
        cv2.imencode(".webp", rgb)[1],
    ]
    return [bytes(e.tobytes()) for e in encoded]


SEEDS = _seeds()


@pytest.fixture(scope="module")
def fuzz_file(tmp_path_factory) -> Path:
    """One file rewritten by every example (module scope: hypothesis reruns the body)."""
    return tmp_path_factory.mktemp("fuzz") / "fuzz.img"


@st.composite
def image_bytes(draw) -> bytes:
    """Random bytes, or a real encoded image with bytes flipped, cut, or inserted."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=512))
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(("flip", "set", "cut", "insert")))
        at = draw(st.integers(0, len(data) - 1)) if data else 0
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[at] = draw(st.sampled_from((0x00, 0xFF, 0x7F, 0x80)))
        elif kind == "cut":
            data = data[:at]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


@fuzz_settings()
@given(data=image_bytes())
def test_fuzz_read_image_raises_only_input_error(fuzz_file, data):
    path = fuzz_file
    path.write_bytes(data)
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        image = read_image(path)
    except InputError:
        return
    finally:
        cv2.utils.logging.setLogLevel(level)
    assert image.dtype in (np.uint8, np.uint16)
    assert image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)
    assert min(image.shape[:2]) >= 8


# ---------------------------------------------------------------------------------------
# Height maps: float mm, or a 3D camera's integer counts through their encoding


def _tiff(path, array) -> str:
    assert cv2.imwrite(str(path), array)
    return str(path)


def test_an_integer_height_map_reads_in_mm_through_its_encoding(tmp_path):
    """A 3D camera's range image: counts times its z scale plus its offset, the invalid
    count a point it missed; a negative scale turns a distance into a height."""
    counts = np.array([[0, 1000, 2000], [65535, 1500, 0]], np.uint16)
    path = _tiff(tmp_path / "p.height.tiff", counts)
    height = read_height_map(path, HeightEncoding(0.001, -1.0, invalid=65535))
    assert height.dtype == np.float32
    assert np.allclose(height[0], [-1.0, 0.0, 1.0]) and np.isnan(height[1, 0])
    assert np.allclose(height[1, 1:], [0.5, -1.0])
    inverted = read_height_map(path, HeightEncoding(-0.001, 10.0))
    assert np.allclose(inverted[0], [10.0, 9.0, 8.0]) and not np.isnan(inverted).any()
    signed = _tiff(tmp_path / "s.height.tiff", np.array([[-32768, -100]], np.int16))
    read = read_height_map(signed, HeightEncoding(0.01, invalid=-32768))
    assert np.allclose(read, [[np.nan, -1.0]], equal_nan=True)


def test_a_height_map_that_cannot_be_read_as_mm_is_a_clear_error(tmp_path):
    counts = _tiff(tmp_path / "c.height.tiff", np.zeros((4, 4), np.uint16))
    with pytest.raises(InputError, match=r"integer \(uint16\) height map needs .* z scale"):
        read_height_map(counts)
    floats = _tiff(tmp_path / "f.height.tiff", np.zeros((4, 4), np.float32))
    with pytest.raises(InputError, match="in mm already"):
        read_height_map(floats, HeightEncoding(0.001))
    colour = _tiff(tmp_path / "rgb.height.tiff", np.zeros((4, 4, 3), np.uint16))
    with pytest.raises(InputError, match="one channel"):
        read_height_map(colour, HeightEncoding(0.001))
    doubles = _tiff(tmp_path / "d.height.tiff", np.full((4, 4), 0.25, np.float64))
    assert read_height_map(doubles).dtype == np.float32  # float64 mm is mm too


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"scale_mm": 0}, "finite non-zero"),
        ({"scale_mm": float("nan")}, "finite non-zero"),
        ({"scale_mm": "0.001"}, "finite non-zero"),
        ({"scale_mm": 0.001, "offset_mm": float("inf")}, "offset must be a finite"),
        ({"scale_mm": 0.001, "invalid": 0.5}, "invalid value must be an integer"),
        ({"scale_mm": 0.001, "invalid": True}, "invalid value must be an integer"),
        ({"offset_mm": 1.0}, "needs scale_mm"),
        ({"scale_mm": 0.001, "scale": 2}, "a mapping of scale_mm"),
        ([0.001], "a mapping of scale_mm"),
    ],
)
def test_a_malformed_height_encoding_is_refused_naming_where(data, match):
    with pytest.raises(UserError, match=match) as caught:
        HeightEncoding.from_mapping(data, "dataset.yaml: height_encoding")
    assert str(caught.value).startswith("dataset.yaml: height_encoding: ")
