"""Microphones: audio files (WAV / FLAC through soundfile) and live devices (sounddevice).

The simulated line carries its own tap-test audio (:mod:`inspection.capture.simulator`).

Audio is handed on as it was captured when it cannot be used (empty, NaN or infinite
samples): deciding what such a part gets is the pipeline's job (REVIEW), not the
microphone's, and a clip "repaired" here would hide the fault from the record. Usable
audio is mixed to mono and resampled to the pipeline's rate
(:data:`~inspection.types.AUDIO_SAMPLE_RATE`). A device or file that delivers nothing
raises :class:`~inspection.capture.base.CaptureError`.

Torch-free: the edge box runs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import soundfile as sf

from inspection.capture.base import CaptureError, Microphone
from inspection.io import audio_clip
from inspection.types import AUDIO_SAMPLE_RATE, AudioClip

__all__ = ["FileMicrophone", "SoundDeviceMicrophone", "clip_as_captured", "read_clip"]

SOUNDDEVICE_MISSING = (
    "the sounddevice package is not installed: pip install sounddevice "
    "(it also needs the PortAudio library: apt-get install libportaudio2)"
)
PORTAUDIO_MISSING = (
    "sounddevice cannot find the PortAudio library ({error}): install it "
    "(Debian/Ubuntu: apt-get install libportaudio2)"
)


def clip_as_captured(
    samples: np.ndarray, rate: int, kind: str = "tap", source: str = "audio"
) -> AudioClip:
    """Mono float32 at the pipeline's rate; empty or non-finite samples are kept as they are.

    Parameters
    ----------
    samples : np.ndarray
        ``(n,)`` or ``(n, channels)`` samples as captured.
    rate : int
        Their sample rate.
    """
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    samples = samples.reshape(-1)
    if samples.size == 0 or not np.isfinite(samples).all():
        # Not resampled: a NaN spreads through a filter; the caller sees the fault as is.
        return AudioClip(samples=samples, sample_rate=int(rate), kind=kind)
    return audio_clip(samples, int(rate), sample_rate=AUDIO_SAMPLE_RATE, kind=kind, source=source)


def read_clip(path: str | Path, seconds: float | None = None, kind: str = "tap") -> AudioClip:
    """An audio file as a clip (the first ``seconds`` of it), faults and all.

    Raises
    ------
    CaptureError
        When the file is missing or not readable audio.
    """
    path = Path(path)
    if not path.is_file():  # libsndfile would say "System error."
        raise CaptureError(f"{path}: no such file")
    try:
        with sf.SoundFile(path) as f:
            frames = -1 if seconds is None else max(0, round(seconds * f.samplerate))
            samples = f.read(frames=frames, dtype="float32", always_2d=True)
            rate = f.samplerate
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise CaptureError(f"{path}: not a readable audio file ({exc})") from exc
    return clip_as_captured(samples, rate, kind=kind, source=str(path))


class FileMicrophone(Microphone):
    """Audio from files, one file a recording, in turn (a bench rig or a replayed line).

    Parameters
    ----------
    paths : str | Path | Sequence[str | Path]
        One file or several; each :meth:`record` takes the next, starting again after
        the last when ``loop``.
    loop : bool
        Start again after the last file; ``False``: a record past it raises.
    kind : str
        :attr:`AudioClip.kind` of the clips (``"tap"`` or ``"note"``).
    """

    def __init__(
        self,
        paths: str | Path | Sequence[str | Path],
        *,
        loop: bool = True,
        kind: str = "tap",
    ):
        single = isinstance(paths, str | Path)
        self.paths = [Path(paths)] if single else [Path(p) for p in paths]
        if not self.paths:
            raise CaptureError("FileMicrophone needs at least one audio file")
        self.loop, self.kind = loop, kind
        self._next = 0

    def record(self, seconds: float) -> AudioClip:
        """The next file's first ``seconds`` (all of a shorter file).

        Raises
        ------
        CaptureError
            When the file is missing or unreadable, or every file was played and
            ``loop`` is off.
        """
        if self._next >= len(self.paths):
            if not self.loop:
                raise CaptureError(f"no more audio files (all {len(self.paths)} were played)")
            self._next = 0
        path = self.paths[self._next]
        self._next += 1
        return read_clip(path, seconds, kind=self.kind)


class SoundDeviceMicrophone(Microphone):
    """A live microphone through PortAudio (the ``sounddevice`` package).

    ``sounddevice`` is imported here, on construction, and not by the package: a station
    without a microphone needs neither it nor PortAudio, and one configured with a
    microphone learns at start-up, in words, what is missing.

    Parameters
    ----------
    device : int | str | None
        PortAudio device index or name substring; ``None``: the system default.
    sample_rate : int
        Rate asked of the device (clips are resampled to the pipeline's rate).
    channels : int
        Channels recorded (mixed to mono).
    kind : str
        :attr:`AudioClip.kind` of the clips.

    Raises
    ------
    CaptureError
        When ``sounddevice`` or the PortAudio library is missing.
    """

    def __init__(
        self,
        device: int | str | None = None,
        sample_rate: int = AUDIO_SAMPLE_RATE,
        channels: int = 1,
        kind: str = "tap",
    ):
        self.device, self.sample_rate, self.channels, self.kind = (
            device,
            sample_rate,
            channels,
            kind,
        )
        self._sd: Any = _import_sounddevice()

    def record(self, seconds: float) -> AudioClip:
        """Record ``seconds`` of audio (blocking).

        Raises
        ------
        CaptureError
            When the device fails (unplugged, busy, an unsupported rate).
        """
        frames = max(1, round(seconds * self.sample_rate))
        try:
            samples = self._sd.rec(
                frames,
                samplerate=self.sample_rate,
                channels=self.channels,
                dtype="float32",
                device=self.device,
            )
            self._sd.wait()
        except Exception as exc:  # PortAudioError and friends: the device failed
            raise CaptureError(f"microphone {self.device!r}: {exc}") from exc
        return clip_as_captured(samples, self.sample_rate, kind=self.kind, source="microphone")


def _import_sounddevice() -> ModuleType:
    try:
        import sounddevice
    except ImportError as exc:
        raise CaptureError(SOUNDDEVICE_MISSING) from exc
    except OSError as exc:  # the package is there, libportaudio is not
        raise CaptureError(PORTAUDIO_MISSING.format(error=exc)) from exc
    return sounddevice
