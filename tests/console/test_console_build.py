"""Building the console serves nothing; its labels in English and Chinese; the simulated
line's feed recording parts inspected by the tiny model."""

from __future__ import annotations

import json
import re
import tempfile

import numpy as np
import pytest

pytest.importorskip("gradio", reason="the console needs the console extra (gradio)")

import gradio as gr
from console_helpers import NOW, STANDARDS_DIR

from inspection.console.labels import LANGUAGES, VERDICTS, labels, verdict_label
from inspection.errors import UserError

TABS = ("live", "review", "part", "ask", "audit", "standards", "models", "statistics")
CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture
def unserved(monkeypatch, tmp_path):
    """Blocks.launch recorded, never run; temporary folders kept in tmp_path."""
    launched = []
    monkeypatch.setattr(gr.Blocks, "launch", lambda *a, **k: launched.append(a))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    return launched


def config_text(blocks: gr.Blocks) -> str:
    return json.dumps(blocks.get_config_file(), ensure_ascii=False, default=str)


def test_build_console_with_no_arguments_builds_and_serves_nothing(unserved):
    from inspection.console.app import build_console

    blocks = build_console()
    assert isinstance(blocks, gr.Blocks)
    assert unserved == []
    assert blocks.is_running is False and blocks.local_url is None
    assert getattr(blocks, "server_app", None) is None and getattr(blocks, "server", None) is None
    service = blocks.console.service
    assert blocks.console.feed is not None  # no database: the simulated line feeds one
    assert service.store.latest(1) == []  # ... but nothing runs until a page ticks
    assert service.library.setting("bracket") is not None  # the shipped standards, seeded
    assert "Review queue" in config_text(blocks) and "复核队列" not in config_text(blocks)


def test_build_console_in_chinese_shows_chinese_labels(unserved):
    from inspection.console.app import build_console

    blocks = build_console(language="zh")
    text = config_text(blocks)
    assert unserved == [] and blocks.is_running is False
    zh = labels("zh")
    for key in TABS:
        assert zh[key] in text
    assert "复核队列" in text and "Review queue" not in text


def test_build_console_refuses_an_unknown_language(unserved):
    from inspection.console.app import build_console

    with pytest.raises(UserError, match="en, zh"):
        build_console(language="fr")


def test_every_label_exists_in_both_languages():
    en, zh = labels("en"), labels("zh")
    assert set(en) == set(zh) and len(en) > len(TABS)
    assert all(en.values()) and all(zh.values())
    for key in TABS:
        assert zh[key] != en[key], key
    untranslated = [key for key, words in zh.items() if not CJK.search(words)]
    assert untranslated == []  # nothing fell back to English


def test_verdicts_read_in_both_languages():
    for verdict in VERDICTS:
        assert CJK.search(verdict_label(verdict, "zh"))
        assert not CJK.search(verdict_label(verdict, "en"))
    assert verdict_label(None, "en") == "NOT INSPECTED"
    assert verdict_label(None, "zh") == "未检测"
    assert verdict_label("REJECT", "zh") == "不合格"
    assert LANGUAGES == ("en", "zh")


def test_the_simulated_line_records_inspected_parts(tmp_path, model_dir):
    from inspection.console.feed import SimulatorFeed
    from inspection.console.service import ModelSet
    from inspection.console.standards import StandardLibrary
    from inspection.io import read_image
    from inspection.records.store import RecordStore

    clock = lambda: NOW.timestamp()  # noqa: E731
    store = RecordStore(tmp_path / "records.db", clock=clock)
    library = StandardLibrary(store.engine, clock=clock)
    library.seed(STANDARDS_DIR)
    models = ModelSet(model_dir)
    feed = SimulatorFeed(store, library, models, station="line-7", clock=clock)

    first, second = feed.step(), feed.step()
    assert first != second and feed.recorded == 2
    assert models.mm_per_px is not None and models.mm_per_px > 0  # taken from the line
    active, _ = library.active_standard("bracket")
    for part_id in (first, second):
        record = store.get(part_id, "line-7")
        assert record is not None and record.product == "bracket"
        assert record.verdict in {"PASS", "REJECT", "REVIEW"}
        assert record.standard_id == active.standard_id
        assert record.captured_at == NOW and record.decided_at == NOW
        (sha,) = record.evidence
        image = read_image(store.evidence.find(sha))
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    assert [p.part_id for p in store.latest(5)] == [second, first]  # newest first


def test_the_consoles_models_fuse_a_normality_model(tmp_path, model_dir):
    from conftest import tiny_normality_model

    from inspection.console.feed import SimulatorFeed
    from inspection.console.service import ModelSet
    from inspection.console.standards import StandardLibrary
    from inspection.models import save_model
    from inspection.models.fusion import FusedDetector
    from inspection.records.store import RecordStore

    normality = tiny_normality_model({"image": 0.55, "pixel": 0.65})
    normality_dir = save_model(normality, tmp_path / "normality", extra=normality.metadata)
    models = ModelSet(model_dir, normality=normality_dir)
    detector, metadata = models.detector()
    assert isinstance(detector, FusedDetector) and metadata["thresholds"]["image"] == 0.5
    store = RecordStore(tmp_path / "records.db")
    library = StandardLibrary(store.engine)
    library.seed(STANDARDS_DIR)
    part_id = SimulatorFeed(store, library, models, station="line-7").step()
    assert store.get(part_id, "line-7").model_version.startswith("fused(")


def test_the_consoles_questions_and_feed_decide_with_the_stations_review_band(tmp_path, model_dir):
    from inspection.console.feed import SimulatorFeed
    from inspection.console.service import ModelSet
    from inspection.console.standards import StandardLibrary
    from inspection.errors import UserError
    from inspection.records.store import RecordStore

    models = ModelSet(model_dir, review_from=1e-6)  # no part can pass
    models.check_review_band()
    store = RecordStore(tmp_path / "records.db")
    library = StandardLibrary(store.engine)
    library.seed(STANDARDS_DIR)
    feed = SimulatorFeed(store, library, models, station="line-7")
    records = [store.get(feed.step(), "line-7") for _ in range(3)]
    assert all(r.verdict != "PASS" for r in records)
    assert all(r.calibration_version.endswith("; review from 1e-06") for r in records)
    with pytest.raises(UserError, match="review band start 2"):
        ModelSet(model_dir, review_from=2.0).check_review_band()  # before any model loads


def test_the_consoles_questions_and_feed_decide_with_the_stations_guard_band(tmp_path, model_dir):
    from inspection.console.feed import SimulatorFeed
    from inspection.console.service import ModelSet
    from inspection.console.standards import StandardLibrary
    from inspection.errors import UserError
    from inspection.records.store import RecordStore

    band = tmp_path / "guard_band.json"
    band.write_text('{"margins": {"scratch": {"length_mm": 0.3}}}')
    models = ModelSet(model_dir, guard_band=band)
    store = RecordStore(tmp_path / "records.db")
    library = StandardLibrary(store.engine)
    library.seed(STANDARDS_DIR)
    feed = SimulatorFeed(store, library, models, station="line-7")
    record = store.get(feed.step(), "line-7")
    assert "; guard band " in record.calibration_version
    with pytest.raises(UserError, match="no such guard-band file"):
        ModelSet(model_dir, guard_band=tmp_path / "absent.json")  # before any model loads
