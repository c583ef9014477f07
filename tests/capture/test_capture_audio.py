"""Microphones: real audio files through soundfile; sounddevice's absence said in words."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from inspection.capture import CaptureError
from inspection.capture.audio import (
    PORTAUDIO_MISSING,
    SOUNDDEVICE_MISSING,
    FileMicrophone,
    SoundDeviceMicrophone,
)
from inspection.types import AUDIO_SAMPLE_RATE


def tone(seconds: float, rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_wav_and_flac_are_mono_at_the_pipeline_rate(tmp_path: Path):
    wav, flac = tmp_path / "a.wav", tmp_path / "b.flac"
    sf.write(wav, np.stack([tone(1.0, 8000), tone(1.0, 8000)], axis=1), 8000)  # stereo 8 kHz
    sf.write(flac, tone(0.5, AUDIO_SAMPLE_RATE), AUDIO_SAMPLE_RATE)
    mic = FileMicrophone([wav, flac], kind="tap")
    a = mic.record(0.25)
    assert a.sample_rate == AUDIO_SAMPLE_RATE and a.samples.ndim == 1
    assert len(a.samples) == round(0.25 * AUDIO_SAMPLE_RATE)  # cropped, then resampled
    assert 0.3 < np.abs(a.samples).max() <= 0.55
    b = mic.record(10.0)  # a shorter file is returned whole
    assert len(b.samples) == round(0.5 * AUDIO_SAMPLE_RATE)
    assert len(mic.record(0.1).samples) == round(0.1 * AUDIO_SAMPLE_RATE)  # loops to a.wav


def test_faulty_audio_reaches_the_caller_unchanged(tmp_path: Path):
    nan, empty = tmp_path / "nan.wav", tmp_path / "empty.wav"
    samples = tone(0.1, 22_050)
    samples[10:20] = np.nan
    sf.write(nan, samples, 22_050, subtype="FLOAT")
    sf.write(empty, np.zeros(0, np.float32), 16_000)
    clip = FileMicrophone(nan).record(1.0)
    assert np.isnan(clip.samples).sum() == 10 and clip.sample_rate == 22_050  # not resampled
    assert len(FileMicrophone(empty).record(1.0).samples) == 0


def test_a_missing_or_unreadable_file_is_a_capture_error(tmp_path: Path):
    with pytest.raises(CaptureError, match=r"gone\.wav: no such file"):
        FileMicrophone(tmp_path / "gone.wav").record(1.0)
    (tmp_path / "junk.wav").write_bytes(b"RIFF not audio")
    with pytest.raises(CaptureError, match="not a readable audio file"):
        FileMicrophone(tmp_path / "junk.wav").record(1.0)
    sf.write(tmp_path / "one.wav", tone(0.1, 16_000), 16_000)
    mic = FileMicrophone(tmp_path / "one.wav", loop=False)
    mic.record(1.0)
    with pytest.raises(CaptureError, match="no more audio files"):
        mic.record(1.0)


def test_without_the_sounddevice_package_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import raises ImportError
    with pytest.raises(CaptureError) as info:
        SoundDeviceMicrophone()
    assert str(info.value) == SOUNDDEVICE_MISSING
    assert "pip install sounddevice" in str(info.value) and "libportaudio2" in str(info.value)


def test_without_portaudio_the_error_names_the_library(monkeypatch, tmp_path: Path):
    # What sounddevice itself raises at import when libportaudio is absent.
    (tmp_path / "sounddevice.py").write_text('raise OSError("PortAudio library not found")\n')
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(CaptureError) as info:
        SoundDeviceMicrophone()
    assert str(info.value) == PORTAUDIO_MISSING.format(error="PortAudio library not found")
    assert "apt-get install libportaudio2" in str(info.value)


def test_this_machine_either_records_or_says_what_is_missing():
    try:
        mic = SoundDeviceMicrophone()
    except CaptureError as exc:
        assert "PortAudio" in str(exc) or "pip install sounddevice" in str(exc)
        return
    try:
        clip = mic.record(0.05)
    except CaptureError as exc:  # PortAudio present, no input device: said so
        assert str(exc).startswith("microphone None:")
        return
    assert clip.sample_rate == AUDIO_SAMPLE_RATE
