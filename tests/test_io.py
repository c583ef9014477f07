"""Reading images and audio: every odd input loads or gives a clear error."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import soundfile as sf

from inspection.io import InputError, audio_clip, read_audio, read_image, read_mask, to_uint8_rgb


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
