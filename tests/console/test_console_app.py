"""The console launched on loopback and driven through its API with gradio_client, as a
script or an integration would; every assertion reads the records database."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from console_helpers import (
    STATION,
    client,
    console_service,
    launched,
    synthetic_image,
    users_file,
)
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from serve_helpers import tiny_decoder_dir
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from inspection.console.service import ModelSet
from inspection.records.models import ActivityEvent, ProductSetting, Question, Review
from inspection.records.models import StandardVersion as Version
from inspection.transcribe import bundled_whisper_dir

ESPEAK = Path("/usr/bin/espeak-ng")


def _rows(service, model):
    with Session(service.store.engine) as session:
        return list(session.scalars(select(model).order_by(model.id)))


def _bracket(service) -> str:
    """The id of the standard active for bracket (QS-BRK-200 as shipped)."""
    return service.library.setting("bracket").standard_id


def _count(service, model) -> int:
    with Session(service.store.engine) as session:
        return int(session.scalar(select(func.count()).select_from(model)))


@pytest.fixture(scope="module")
def decoder_with_adapter(tmp_path_factory):
    """The tiny decoder (copied) with one saved LoRA adapter, ``line-a``."""
    from inspection.decoder.lora import add_adapter, save_adapter
    from inspection.decoder.model import ReportDecoder

    decoder_dir = tmp_path_factory.mktemp("console-decoder") / "decoder"
    shutil.copytree(tiny_decoder_dir(tmp_path_factory), decoder_dir)
    model = ReportDecoder.load(decoder_dir)
    add_adapter(model, "line-a")
    save_adapter(model, "line-a", decoder_dir / "adapters")
    return decoder_dir


@pytest.fixture(scope="module")
def console(tmp_path_factory, model_dir, decoder_with_adapter):
    """One launched console (users op and eng) over a filled records database."""
    tmp = tmp_path_factory.mktemp("console")
    models = ModelSet(model_dir, decoder_with_adapter, mm_per_px=0.1)
    service = console_service(tmp, models)
    with launched(service, users_file(tmp)) as url:
        yield service, url


@pytest.fixture(scope="module")
def operator(console):
    return client(console[1], "op")


@pytest.fixture(scope="module")
def engineer(console):
    return client(console[1], "eng")


def test_live_view_lists_the_latest_parts_and_shift_kpis(console, operator):
    kpis, table = operator.predict(api_name="/live")
    assert "kpi-parts'>5<" in kpis  # five parts this shift
    assert "kpi-yield'>40.0 %<" in kpis  # 2 PASS of 5 decided
    parts = [row[2] for row in table["data"]]
    assert parts[0] == "P-PASS-2" and len(parts) == 5  # newest first


def test_review_queue_holds_the_unreviewed_review_parts(console, operator):
    table = operator.predict(api_name="/review_queue")
    assert table["data"][0][2] == "P-REVIEW-1"


def test_override_needs_a_reason_then_is_stored_as_the_operators_review(console, operator):
    service, _ = console
    before = _count(service, Review)
    with pytest.raises(AppError, match="needs a reason"):
        operator.predict(STATION, "P-REJECT-1", "PASS", "", "", None, api_name="/review")
    assert _count(service, Review) == before

    message, history = operator.predict(
        STATION, "P-REJECT-1", "PASS", "a smudge, wiped off", "", None, api_name="/review"
    )
    assert "review" in message and "a smudge" in history
    review = _rows(service, Review)[-1]
    assert (review.reviewer, review.decision, review.reason) == (
        "op",
        "PASS",
        "a smudge, wiped off",
    )
    kpis, _ = operator.predict(api_name="/live")
    assert "kpi-overrides'>1<" in kpis


def test_confirming_a_verdict_needs_no_reason(console, operator):
    service, _ = console
    operator.predict(STATION, "P-REJECT-2", "REJECT", "", "scratch", None, api_name="/review")
    review = _rows(service, Review)[-1]
    assert (review.decision, review.reason, review.defect_class) == ("REJECT", None, "scratch")
    queue = operator.predict(api_name="/review_queue")
    assert "P-REJECT-2" not in [row[2] for row in queue["data"]]


def test_a_standard_upload_with_an_error_shows_its_line_and_stores_nothing(console, engineer):
    service, _ = console
    text = service.library.text(_bracket(service))
    broken = text.replace("clauses:", "clauses: [unclosed", 1)
    before = _count(service, Version)
    with pytest.raises(AppError, match=r"not saved: line 25: invalid YAML"):
        engineer.predict(broken, "typo", api_name="/save_standard")
    assert _count(service, Version) == before
    problems = engineer.predict(broken, api_name="/check_standard")
    assert problems.startswith("- line 25: invalid YAML")


def test_an_engineer_saves_a_version_diffs_it_and_activates_it(console, engineer):
    service, _ = console
    standard = _bracket(service)
    edited = service.library.text(standard) + "\n# reviewed by quality, week 49\n"
    message, *_ = engineer.predict(edited, "week 49 review", api_name="/save_standard")
    newest = service.library.versions(standard)[0]
    assert newest.author == "eng" and newest.text == edited and f"v{newest.version}" in message
    diff = engineer.predict(standard, newest.version, 1, api_name="/diff_standard")
    assert "+# reviewed by quality, week 49" in diff
    engineer.predict("bracket", standard, newest.version, api_name="/activate_standard")
    setting = next(s for s in _rows(service, ProductSetting) if s.product == "bracket")
    assert (setting.standard_version, setting.updated_by) == (newest.version, "eng")


def test_an_engineer_switches_the_products_adapter(console, engineer):
    service, _ = console
    message, table = engineer.predict("bracket", "line-a", api_name="/switch_adapter")
    assert "line-a" in message
    assert ["bracket", "line-a"] in [[row[0], row[3]] for row in table["data"]]
    setting = next(s for s in _rows(service, ProductSetting) if s.product == "bracket")
    assert setting.adapter == "line-a"
    events = [e for e in _rows(service, ActivityEvent) if e.action == "adapter.set"]
    assert events[-1].actor == "eng"
    with pytest.raises(AppError, match="missing"):
        engineer.predict("bracket", "missing", api_name="/switch_adapter")
    engineer.predict("bracket", "(base)", api_name="/switch_adapter")
    setting = next(s for s in _rows(service, ProductSetting) if s.product == "bracket")
    assert setting.adapter is None


def test_an_operator_cannot_edit_a_standard_or_switch_a_model_through_the_api(console, operator):
    service, _ = console
    versions, settings = (
        _count(service, Version),
        [(s.product, s.standard_version, s.adapter) for s in _rows(service, ProductSetting)],
    )
    text = service.library.text(_bracket(service)) + "\n# an operator's edit\n"
    with pytest.raises(AppError, match="only an engineer"):
        operator.predict(text, "", api_name="/save_standard")
    with pytest.raises(AppError, match="only an engineer"):
        operator.predict("bracket", _bracket(service), 1, api_name="/activate_standard")
    with pytest.raises(AppError, match="only an engineer"):
        operator.predict("bracket", "line-a", api_name="/switch_adapter")
    assert _count(service, Version) == versions
    assert [(s.product, s.standard_version, s.adapter) for s in _rows(service, ProductSetting)] == (
        settings
    )


def test_no_login_no_api(console):
    with pytest.raises(Exception, match=r"(?i)login|auth|401"):
        client(console[1], None).predict(api_name="/live")


def test_a_typed_question_is_answered_and_stored_with_the_part(console, operator):
    service, _ = console
    answer, _ = operator.predict(
        STATION, "P-REJECT-1", "Is this part acceptable?", None, api_name="/ask"
    )
    assert "rules:" in answer
    question = _rows(service, Question)[-1]
    assert (question.asker, question.question, question.audio) == (
        "op",
        "Is this part acceptable?",
        None,
    )
    assert question.answer or question.error


def test_a_spoken_question_keeps_its_clip_with_the_part(console, operator, tmp_path):
    import numpy as np
    import soundfile as sf

    service, _ = console
    wav = tmp_path / "tap.wav"
    sf.write(wav, 0.1 * np.sin(np.linspace(0, 2000, 16000)), 16000)
    operator.predict(
        STATION, "P-REVIEW-1", "这个零件合格吗？", handle_file(str(wav)), api_name="/ask"
    )
    question = _rows(service, Question)[-1]
    assert question.audio is not None
    assert service.store.evidence.find(question.audio).suffix == ".wav"
    before = _count(service, Question)
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.full(1600, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AppError, match="NaN"):
        operator.predict(STATION, "P-REVIEW-1", "ok?", handle_file(str(nan)), api_name="/ask")
    assert _count(service, Question) == before


@pytest.mark.skipif(not ESPEAK.exists(), reason="needs Debian espeak-ng (.ci/run installs it)")
@pytest.mark.skipif(bundled_whisper_dir() is None, reason="needs the pretrained extra")
def test_a_question_spoken_alone_is_transcribed_offline_and_answered(console, operator, tmp_path):
    import subprocess

    service, _ = console
    wav = tmp_path / "spoken.wav"
    subprocess.run([str(ESPEAK), "-w", str(wav), "Is this part acceptable?"], check=True)
    answer, _ = operator.predict(STATION, "P-REVIEW-1", "", handle_file(str(wav)), api_name="/ask")
    question = _rows(service, Question)[-1]
    assert "acceptable" in question.transcript.lower()  # the bundled tiny.en heard it
    assert question.question == question.transcript and question.audio is not None
    assert question.transcript in answer


def test_an_audit_runs_on_uploaded_images(console, operator, tmp_path):
    from inspection.io import write_image

    paths = []
    for seed in range(2):
        path = tmp_path / f"part-{seed}.png"
        write_image(path, synthetic_image(seed))
        paths.append(handle_file(str(path)))
    note = tmp_path / "shift-notes.txt"  # an upload the audit cannot read is named
    note.write_text("lamp changed at 14:00\n")
    paths.append(handle_file(str(note)))
    summary, files = operator.predict(paths, "bracket", False, api_name="/audit")
    assert summary.startswith("2 parts")
    assert "1 file not audited (.txt 1)" in summary
    names = sorted(f["orig_name"] for f in files)
    assert names == ["report.html", "results.csv"]


def test_an_audit_records_its_parts_for_review_when_asked(console, operator, tmp_path):
    import re

    from inspection.io import write_image

    service, _ = console
    paths = []
    for seed in (5, 6):
        path = tmp_path / f"lot-{seed}.png"
        write_image(path, synthetic_image(seed))
        paths.append(handle_file(str(path)))
    summary, _ = operator.predict(paths, "bracket", True, api_name="/audit")
    station = re.search(r"2 parts recorded at station `(audit-\d{8}T\d{6}Z-[^`]+)`", summary)
    assert station, summary
    recorded = service.store.latest(n=10, station=station[1])
    assert len(recorded) == 2 and {p.product for p in recorded} == {"bracket"}
    assert all(p.evidence and p.verdict in ("PASS", "REJECT", "REVIEW") for p in recorded)


def test_statistics_plots_come_back(console, operator):
    from PIL import Image

    pictures = operator.predict(7, api_name="/statistics")
    sizes = [Image.open(picture["path"]).size for picture in pictures]  # served from here
    assert len(sizes) == 3 and all(w > 300 and h > 150 for w, h in sizes)


def test_the_records_of_the_window_download_as_csv(console, operator):
    import csv

    service, _ = console
    downloaded = operator.predict(7, api_name="/export_records")
    with open(downloaded["path"], newline="", encoding="utf-8") as f:  # served from here
        rows = list(csv.DictReader(f))
    since, until = service.statistics_window(7)
    counts = service.store.counts(since, until)
    assert len(rows) == sum(counts.values()) >= 5
    assert {r["verdict"] for r in rows} >= {"PASS", "REJECT", "REVIEW"}
    assert all(r["station"] and r["part_id"] and r["captured_at"] for r in rows)


def test_a_session_lapses(tmp_path):
    now = [1000.0]
    service = console_service(tmp_path)
    with launched(service, users_file(tmp_path), session_hours=1, clock=lambda: now[0]) as url:
        engineer = client(url, "eng")
        engineer.predict(api_name="/live")
        now[0] += 3601
        with pytest.raises(Exception):  # noqa: B017  the token lapsed: 401 from the queue
            engineer.predict(api_name="/live")
        client(url, "eng").predict(api_name="/live")  # logging in again works
