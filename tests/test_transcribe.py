"""Offline speech to text: the Whisper tiny.en bundled in the pretrained extra hears a
spoken question; bad input and a missing model are clear errors."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from inspection.errors import UserError
from inspection.io import read_audio
from inspection.transcribe import Transcriber, bundled_whisper_dir

ESPEAK = Path("/usr/bin/espeak-ng")


@pytest.mark.skipif(not ESPEAK.exists(), reason="needs Debian espeak-ng (.ci/run installs it)")
@pytest.mark.skipif(bundled_whisper_dir() is None, reason="needs the pretrained extra")
def test_the_bundled_model_hears_a_spoken_sentence(tmp_path):
    wav = tmp_path / "note.wav"
    subprocess.run([str(ESPEAK), "-w", str(wav), "The scratch is near the left hole."], check=True)
    transcript = Transcriber().transcribe(read_audio(wav).samples)
    words = transcript.text.lower()
    assert "scratch" in words and "hole" in words
    assert transcript.model == "model"  # the bundled folder


@pytest.mark.skipif(bundled_whisper_dir() is None, reason="needs the pretrained extra")
def test_no_speech_gives_no_text_not_a_word_never_said():
    """Whisper writes " you" over silence; over a tap's ring or mains hum too."""
    t = np.arange(32_000) / 16_000
    transcriber = Transcriber()
    for clip in (
        np.zeros(16_000),  # silence
        0.05 * np.sin(2 * np.pi * 50 * t),  # mains hum
        0.3 * np.exp(-t * 8) * np.sin(2 * np.pi * 2000 * t),  # a tap's ring
        np.random.default_rng(0).normal(0, 0.01, t.size),  # hiss
    ):
        assert transcriber.transcribe(clip.astype(np.float32)).text == ""


def test_empty_or_nan_audio_is_refused_before_any_model_runs(tmp_path):
    folder = tmp_path / "ct2"
    folder.mkdir()  # never loaded: the input is refused first
    transcriber = Transcriber(folder)
    with pytest.raises(UserError, match="empty or not finite"):
        transcriber.transcribe(np.zeros(0, np.float32))
    with pytest.raises(UserError, match="empty or not finite"):
        transcriber.transcribe(np.full(160, np.nan, np.float32))


def test_a_missing_model_is_named(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="no Whisper model at"):
        Transcriber(tmp_path / "absent.pt")
    monkeypatch.setattr("inspection.transcribe.bundled_whisper_dir", lambda: None)
    with pytest.raises(UserError, match="install the pretrained extra"):
        Transcriber()


def test_the_transcribe_command_prints_what_it_heard(tmp_path):
    from typer.testing import CliRunner

    from inspection.cli import app

    if not ESPEAK.exists() or bundled_whisper_dir() is None:
        pytest.skip("needs espeak-ng and the pretrained extra (.ci/run installs both)")
    wav = tmp_path / "note.wav"
    subprocess.run([str(ESPEAK), "-w", str(wav), "Reject this part."], check=True)
    result = CliRunner().invoke(app, ["transcribe", str(wav)])
    assert result.exit_code == 0, result.output
    assert "reject" in result.output.lower()
    bad = CliRunner().invoke(app, ["transcribe", str(tmp_path / "none.wav")])
    assert bad.exit_code == 2


def test_the_transcribe_command_refuses_a_file_that_is_not_audio(tmp_path):
    from typer.testing import CliRunner

    from inspection.cli import app

    junk = tmp_path / "note.wav"
    junk.write_bytes(b"RIFF\x00\x00not really a wave file")
    result = CliRunner().invoke(app, ["transcribe", str(junk)])
    assert result.exit_code == 2
    assert "not a readable audio file" in result.output


def test_an_openai_whisper_checkpoint_transcribes_and_drops_what_is_not_speech(tmp_path):
    """The ``.pt`` path (openai-whisper's own format): a tiny checkpoint loads and decodes;
    of its segments, those Whisper itself calls no speech are dropped."""
    from dataclasses import asdict

    import torch
    from whisper.model import ModelDimensions, Whisper

    # A random decoder writes until its context is full: a context of 64 keeps that short.
    dims = ModelDimensions(
        n_mels=80, n_audio_ctx=1500, n_audio_state=32, n_audio_head=2, n_audio_layer=1,
        n_vocab=51864, n_text_ctx=64, n_text_state=32, n_text_head=2, n_text_layer=1,
    )  # fmt: skip
    model = Whisper(dims)
    with torch.no_grad():  # zero weights: every logit 0, so no decode can reach NaN
        for parameter in model.parameters():  # (random ones did, in whisper's sampling)
            parameter.zero_()
    path = tmp_path / "tiny.pt"
    torch.save({"dims": asdict(dims), "model_state_dict": model.state_dict()}, path)
    transcriber = Transcriber(path)
    assert not transcriber.is_ctranslate2
    clip = np.random.default_rng(0).normal(0, 0.01, 16_000).astype(np.float32)
    heard = transcriber.transcribe(clip)
    assert isinstance(heard.text, str) and heard.model == "tiny.pt"

    segments = [
        {"text": " Reject", "no_speech_prob": 0.05},
        {"text": " you", "no_speech_prob": 0.9},  # Whisper's word over a tap's ring
        {"text": " this part.", "no_speech_prob": 0.3},
    ]
    transcriber._model.transcribe = lambda samples, fp16: {"segments": segments}
    assert transcriber.transcribe(clip).text == "Reject this part."
