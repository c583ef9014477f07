"""The console's standards library: versions, diffs, activation per product, adapters."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

pytest.importorskip("sqlalchemy", reason="records need the line extra (sqlalchemy, alembic)")
pytest.importorskip("alembic", reason="records need the line extra (sqlalchemy, alembic)")

from conftest import STANDARDS_DIR
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from inspection.console import standards as standards_module
from inspection.console.standards import ACTIVATE, SAVE, SET_ADAPTER, StandardLibrary
from inspection.errors import UserError
from inspection.records.db import open_records
from inspection.records.models import ActivityEvent, StandardVersion
from inspection.standards import StandardError

TILE_ID, PANEL_ID = "QS-TIL-120", "QS-PNL-310"
T0 = 1_780_000_000.0


class Clock:
    """A wall clock that moves only when told."""

    def __init__(self, now: float = T0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def library(tmp_path, clock) -> StandardLibrary:
    return StandardLibrary(open_records(f"sqlite:///{tmp_path / 'records.db'}"), clock=clock)


@pytest.fixture
def seeded(library) -> StandardLibrary:
    assert library.seed(STANDARDS_DIR) == 3
    return library


def tile_text() -> str:
    return (STANDARDS_DIR / "tile.yaml").read_text(encoding="utf-8")


def _rows(library: StandardLibrary, model) -> int:
    with Session(library.engine) as session:
        return session.scalar(select(func.count()).select_from(model))


def _line_of(text: str, fragment: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if fragment in line)


def test_seed_stores_and_activates_the_shipped_standards(seeded, clock):
    assert TILE_ID in seeded.standards() and PANEL_ID in seeded.standards()
    assert len(seeded.standards()) == 3
    tile = seeded.setting("tile")
    assert (tile.standard_id, tile.standard_version, tile.adapter) == (TILE_ID, 1, None)
    assert tile.updated_by == "system"
    assert tile.updated_at == datetime.fromtimestamp(T0, UTC)
    assert [s.product for s in seeded.product_settings()] == ["bracket", "panel", "tile"]
    first = seeded.get(TILE_ID, 1)
    assert first.text == tile_text() and first.declared_version == "B2"
    assert first.author == "system" and first.created_at.tzinfo is not None

    # Seeding again stores nothing and leaves an engineer's activation alone.
    seeded.save(tile_text().replace("length_mm > 8", "length_mm > 6"), "ana")
    seeded.activate("tile", TILE_ID, 2, actor="ana")
    assert seeded.seed(STANDARDS_DIR) == 0
    assert seeded.setting("tile").standard_version == 2
    assert _rows(seeded, StandardVersion) == 4


def test_seed_skips_a_broken_file_and_refuses_a_missing_folder(library, tmp_path):
    folder = tmp_path / "standards"
    folder.mkdir()
    (folder / "tile.yaml").write_text(tile_text(), encoding="utf-8")
    (folder / "broken.yaml").write_text("id: [unclosed\n", encoding="utf-8")
    assert library.seed(folder) == 1
    assert library.standards() == [TILE_ID] and library.setting("broken") is None
    with pytest.raises(UserError, match="does not exist"):
        library.seed(tmp_path / "nowhere")


def test_edit_makes_version_two_and_diff_shows_the_change(seeded, clock):
    clock.now = T0 + 60
    edited = tile_text().replace('when: ["length_mm > 8"]', 'when: ["length_mm > 6"]')
    assert edited != tile_text()
    v2 = seeded.save(edited, "ana", note="tighter scratch limit")
    assert (v2.standard_id, v2.version, v2.author) == (TILE_ID, 2, "ana")
    assert v2.note == "tighter scratch limit" and v2.label == f"{TILE_ID} v2"
    assert v2.created_at == datetime.fromtimestamp(T0 + 60, UTC)
    assert [v.version for v in seeded.versions(TILE_ID)] == [2, 1]
    assert seeded.text(TILE_ID, 2) == edited and seeded.text(TILE_ID) == edited

    diff = seeded.diff(TILE_ID, 1, 2).splitlines()
    assert diff[0] == f"--- {TILE_ID} v1" and diff[1] == f"+++ {TILE_ID} v2"
    changed = [line for line in diff[2:] if line[:1] in "-+"]
    assert changed == ['-    when: ["length_mm > 8"]', '+    when: ["length_mm > 6"]']
    assert seeded.diff(TILE_ID, 2, 2) == ""


def test_identical_resave_stores_nothing(seeded):
    before = _rows(seeded, StandardVersion), _rows(seeded, ActivityEvent)
    again = seeded.save(tile_text(), "ana")
    assert (again.version, again.author) == (1, "system")
    assert (_rows(seeded, StandardVersion), _rows(seeded, ActivityEvent)) == before
    # A revert to an older text is a change: it gets a version of its own.
    seeded.save(tile_text().replace("B2", "B3"), "ana")
    assert seeded.save(tile_text(), "ana").version == 3


def test_broken_yaml_reports_its_line_and_stores_nothing(seeded):
    broken = tile_text().replace("  - id: F\n", "  - id: F\n   bad: indent\n", 1)
    problems = seeded.check(broken)
    assert len(problems) == 1 and "invalid YAML" in problems[0].message
    assert problems[0].line == _line_of(broken, "bad: indent")
    assert problems[0].source == "upload"
    with pytest.raises(StandardError) as raised:
        seeded.save(broken, "ana")
    assert raised.value.problems == tuple(problems)
    assert [v.version for v in seeded.versions(TILE_ID)] == [1]


def test_schema_errors_report_their_lines_and_store_nothing(seeded):
    text = tile_text()
    bad = text.replace(
        "    severity: minor\n    action: review", "    severity: huge\n    action: review"
    )
    bad = bad.replace("    defect: missing_feature", "    defect: missing_hole")
    assert bad.count("huge") == 1 and bad.count("missing_hole") == 1
    severity_problems = seeded.check(bad)
    # Pydantic reports the field error first; the cross-reference check runs on a valid schema.
    assert [(p.line, p.field) for p in severity_problems] == [
        (_line_of(bad, "severity: huge"), "clauses[7].severity")
    ]
    fixed_severity = bad.replace("severity: huge", "severity: minor")
    reference_problems = seeded.check(fixed_severity)
    assert [(p.line, p.field) for p in reference_problems] == [
        (_line_of(fixed_severity, "defect: missing_hole"), "clauses[8].defect")
    ]
    assert "unknown defect class 'missing_hole'" in reference_problems[0].message
    for text_ in (bad, fixed_severity):
        with pytest.raises(StandardError):
            seeded.save(text_, "ana")
    assert _rows(seeded, StandardVersion) == 3


def test_check_never_raises_for_bad_text(library):
    assert library.check(tile_text()) == []
    assert library.check("just a string")[0].message == "a standard is a YAML mapping"
    huge = library.check("x" * (300 * 1024))
    assert len(huge) == 1 and "larger than" in huge[0].message
    assert library.check(None)[0].message == "a standard is YAML text"  # type: ignore[arg-type]
    long_id = tile_text().replace(f"id: {TILE_ID}", "id: " + "X" * 200)
    problems = library.check(long_id)
    assert [(p.line, p.field) for p in problems] == [(_line_of(long_id, "id: XXX"), "id")]


def test_activate_per_product_with_different_versions(seeded, clock):
    seeded.save(tile_text().replace("length_mm > 8", "length_mm > 6"), "ana")
    clock.now = T0 + 5
    tile = seeded.activate("tile", TILE_ID, 2, actor="ana")
    tile_b = seeded.activate("tile-b", TILE_ID, 1, actor="li.wei")
    assert (tile.standard_version, tile.updated_by) == (2, "ana")
    assert tile.updated_at == datetime.fromtimestamp(T0 + 5, UTC)
    assert (tile_b.standard_id, tile_b.standard_version) == (TILE_ID, 1)
    assert seeded.setting("tile").standard_version == 2
    assert seeded.setting("tile-b").standard_version == 1
    assert seeded.setting("nothing") is None

    info, standard = seeded.active_standard("tile")
    assert (info.version, standard.id, standard.product) == (2, TILE_ID, "tile")
    assert str(standard.clause("T20").when[0]) == "length_mm > 6"
    _, older = seeded.active_standard("tile-b")
    assert str(older.clause("T20").when[0]) == "length_mm > 8"


def test_unknown_versions_and_products_are_refused(seeded):
    before = seeded.setting("tile")
    with pytest.raises(UserError, match=r"has no version 9 \(versions: 1\)"):
        seeded.activate("tile", TILE_ID, 9, actor="ana")
    with pytest.raises(UserError, match="no standard 'QS-NOPE' is stored"):
        seeded.activate("tile", "QS-NOPE", 1, actor="ana")
    with pytest.raises(UserError, match="product must be a non-empty name"):
        seeded.activate("  ", TILE_ID, 1, actor="ana")
    with pytest.raises(UserError, match="author"):
        seeded.save(tile_text(), "")
    assert seeded.setting("tile") == before
    with pytest.raises(UserError, match="no standard is active for product 'gear'"):
        seeded.active_standard("gear")
    with pytest.raises(UserError, match="has no version 3"):
        seeded.diff(TILE_ID, 1, 3)
    with pytest.raises(UserError, match="positive"):
        seeded.activity(0)


def test_set_adapter_known_unknown_and_base(seeded):
    known = ["tile-lora-v1", "panel-lora-v2"]
    tile = seeded.set_adapter("tile", "tile-lora-v1", actor="ana", known=known)
    assert (tile.adapter, tile.standard_id, tile.standard_version) == ("tile-lora-v1", TILE_ID, 1)
    with pytest.raises(UserError, match=r"unknown adapter 'other' \(known: panel-lora-v2, tile"):
        seeded.set_adapter("tile", "other", actor="ana", known=known)
    assert seeded.setting("tile").adapter == "tile-lora-v1"
    assert seeded.set_adapter("tile", None, actor="ana", known=known).adapter is None
    assert seeded.setting("tile").adapter is None
    # An adapter for a product with no standard yet: the setting exists, with no standard.
    gear = seeded.set_adapter("gear", "panel-lora-v2", actor="ana", known=known)
    assert (gear.standard_id, gear.adapter) == (None, "panel-lora-v2")
    with pytest.raises(UserError, match="no standard is active"):
        seeded.active_standard("gear")


def test_activity_records_every_change_with_its_actor(seeded, clock):
    seeded_events = seeded.activity()
    # Seeding: one save and one activation per shipped standard.
    assert sorted(e.action for e in seeded_events) == [ACTIVATE] * 3 + [SAVE] * 3
    assert {e.actor for e in seeded_events} == {"system"}

    clock.now = T0 + 10
    seeded.save(tile_text().replace("length_mm > 8", "length_mm > 6"), "ana", note="why")
    clock.now = T0 + 20
    seeded.activate("tile", TILE_ID, 2, actor="li.wei")
    clock.now = T0 + 30
    seeded.set_adapter("tile", "tile-lora-v1", actor="ana", known=["tile-lora-v1"])

    latest = seeded.activity(limit=3)
    assert [(e.actor, e.action, e.target) for e in latest] == [
        ("ana", SET_ADAPTER, "tile"),
        ("li.wei", ACTIVATE, "tile"),
        ("ana", SAVE, f"{TILE_ID} v2"),
    ]
    assert latest[0].created_at == datetime.fromtimestamp(T0 + 30, UTC)
    assert latest[0].detail == {"adapter": "tile-lora-v1", "previous": {"adapter": None}}
    assert latest[1].detail["standard_version"] == 2
    assert latest[1].detail["previous"] == {"standard_id": TILE_ID, "standard_version": 1}
    assert latest[2].detail["version"] == 2 and latest[2].detail["note"] == "why"
    assert len(seeded.activity()) == 9


def test_a_lost_version_race_numbers_again(seeded, monkeypatch):
    """Two writers that read the same newest version (possible on PostgreSQL): the one
    that loses the unique constraint numbers its version again instead of failing."""
    real = standards_module._next_version
    calls = []

    def stale(session, standard_id):
        calls.append(standard_id)
        return 1 if len(calls) == 1 else real(session, standard_id)

    monkeypatch.setattr(standards_module, "_next_version", stale)
    v2 = seeded.save(tile_text().replace("B2", "B3"), "ana")
    assert len(calls) == 2 and v2.version == 2
    assert [v.version for v in seeded.versions(TILE_ID)] == [2, 1]


def test_concurrent_saves_get_distinct_versions(seeded):
    errors: list[BaseException] = []

    def save(i: int) -> None:
        try:
            seeded.save(tile_text().replace("B2", f"C{i}"), f"engineer-{i}")
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=save, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    versions = seeded.versions(TILE_ID)
    assert sorted(v.version for v in versions) == list(range(1, 8))
    assert len({v.sha256 for v in versions}) == 7


def test_library_runs_without_torch_or_gradio(tmp_path):
    from edge_guard import run_without_torch

    done = run_without_torch(
        f"""
        from inspection.console.standards import StandardLibrary
        from inspection.records.db import open_records

        library = StandardLibrary(open_records({f"sqlite:///{tmp_path / 'r.db'}"!r}))
        assert library.seed({str(STANDARDS_DIR)!r}) == 3
        assert not [m for m in sys.modules if m.split(".")[0] == "gradio"]
        """
    )
    assert done.returncode == 0, done.stderr
