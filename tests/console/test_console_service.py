"""ConsoleService without a server: review rules, the review queue, opening a part, role
checks, and the drawing helpers (:func:`draw_defects`, :func:`editor_mask`)."""

from __future__ import annotations

import json
from dataclasses import replace

import cv2
import numpy as np
import pytest
from console_helpers import STATION, console_service, synthetic_image
from records_helpers import result

from inspection.console.app import editor_mask
from inspection.console.auth import ENGINEER, OPERATOR, Forbidden, User
from inspection.console.service import MAX_REASON_CHARS, draw_defects
from inspection.datasets.reviews import MANIFEST, export_reviews, part_name
from inspection.errors import UserError
from inspection.types import BBox, Verdict

OPERATOR_USER = User("li.wei", OPERATOR)
ENGINEER_USER = User("ana", ENGINEER)
SIZE = 96  # console_helpers.synthetic_image's side


@pytest.fixture
def service(tmp_path):
    return console_service(tmp_path)


def reviews(service, part_id: str) -> tuple[dict, ...]:
    return service.store.history(part_id, STATION).reviews


# ---------------------------------------------------------------------- review rules


def test_confirming_the_machine_needs_no_reason(service):
    review_id = service.review(OPERATOR_USER, STATION, "P-REJECT-1", "reject")
    assert isinstance(review_id, int)
    (stored,) = reviews(service, "P-REJECT-1")
    assert stored["decision"] == "REJECT" and stored["reviewer"] == "li.wei"
    assert stored["reason"] is None and stored["mask"] is None


@pytest.mark.parametrize("reason", ["", "   \n\t"])
def test_an_override_needs_a_reason(service, reason):
    with pytest.raises(UserError, match="overriding REJECT with PASS needs a reason"):
        service.review(OPERATOR_USER, STATION, "P-REJECT-1", "PASS", reason)
    assert reviews(service, "P-REJECT-1") == ()


def test_an_override_with_a_reason_is_stored_trimmed(service):
    service.review(OPERATOR_USER, STATION, "P-REJECT-1", "PASS", "  dust, wiped off  ", "  ")
    (stored,) = reviews(service, "P-REJECT-1")
    assert stored["decision"] == "PASS" and stored["reason"] == "dust, wiped off"
    assert stored["defect_class"] is None  # blank class: none


def test_an_over_long_reason_is_refused(service):
    with pytest.raises(UserError, match=f"longer than {MAX_REASON_CHARS}"):
        service.review(OPERATOR_USER, STATION, "P-REJECT-1", "PASS", "x" * (MAX_REASON_CHARS + 1))
    assert reviews(service, "P-REJECT-1") == ()
    service.review(OPERATOR_USER, STATION, "P-REJECT-1", "PASS", "x" * MAX_REASON_CHARS)
    assert len(reviews(service, "P-REJECT-1")[0]["reason"]) == MAX_REASON_CHARS


def test_an_unknown_part_or_station_is_refused(service):
    with pytest.raises(UserError, match="no record of part 'P-NOPE'"):
        service.review(OPERATOR_USER, STATION, "P-NOPE", "PASS", "why not")
    with pytest.raises(UserError, match="at station 'elsewhere'"):
        service.review(OPERATOR_USER, "elsewhere", "P-PASS-1", "PASS")


def test_a_decision_other_than_pass_reject_review_is_refused(service):
    with pytest.raises(UserError, match="PASS, REJECT or REVIEW"):
        service.review(OPERATOR_USER, STATION, "P-REJECT-1", "maybe", "not sure")
    assert reviews(service, "P-REJECT-1") == ()


def test_a_bad_decision_is_named_as_such_even_without_a_reason(service):
    # The operator's mistake is the decision: asking for a reason first sends them the
    # wrong way (they add one and only then learn the decision is invalid).
    with pytest.raises(UserError, match="PASS, REJECT or REVIEW"):
        service.review(OPERATOR_USER, STATION, "P-REJECT-1", "maybe")


def test_no_user_may_not_review(service):
    with pytest.raises(Forbidden, match="not logged in"):
        service.review(None, STATION, "P-REJECT-1", "REJECT")
    assert reviews(service, "P-REJECT-1") == ()


def test_an_empty_drawing_is_no_mask(service):
    service.review(OPERATOR_USER, STATION, "P-REJECT-1", "REJECT", mask=np.zeros((SIZE, SIZE)))
    assert reviews(service, "P-REJECT-1")[0]["mask"] is None


def test_a_drawn_mask_is_kept_as_evidence_and_exported_as_drawn(service, tmp_path):
    drawn = np.zeros((SIZE, SIZE), bool)
    drawn[40:50, 20:60] = True
    service.review(
        OPERATOR_USER, STATION, "P-PASS-1", "REJECT", "dent under the label", " dent ", drawn
    )
    (stored,) = reviews(service, "P-PASS-1")
    assert stored["defect_class"] == "dent"
    kept = service.store.evidence.find(stored["mask"])
    assert kept is not None
    assert (cv2.imread(str(kept), cv2.IMREAD_UNCHANGED) == np.where(drawn, 255, 0)).all()

    out = tmp_path / "export"
    summary = export_reviews(service.store, out)
    name = part_name(STATION, "P-PASS-1")
    assert summary.counts == {"bracket/test/dent": 1} and summary.without_mask == 0
    exported = cv2.imread(
        str(out / "bracket" / "ground_truth" / "dent" / f"{name}_mask.png"), cv2.IMREAD_UNCHANGED
    )
    assert exported.shape == (SIZE, SIZE)
    assert (exported == np.where(drawn, 255, 0)).all()
    (line,) = map(json.loads, (out / MANIFEST).read_text(encoding="utf-8").splitlines())
    assert line["mask_source"] == "drawn" and line["reviewer"] == "li.wei"


# ---------------------------------------------------------------------- review queue


def ids(parts) -> list[str]:
    return [p.part_id for p in parts]


def test_the_queue_is_review_parts_then_a_sample(service):
    service.sample_every = 1_000_000  # no PASS or REJECT sampled (ids 1..5)
    assert ids(service.review_queue()) == ["P-REVIEW-1"]
    service.sample_every = 1  # every PASS and REJECT sampled, newest first after REVIEW
    assert ids(service.review_queue()) == [
        "P-REVIEW-1",
        "P-PASS-2",
        "P-REJECT-2",
        "P-PASS-1",
        "P-REJECT-1",
    ]
    assert ids(service.review_queue(limit=2)) == ["P-REVIEW-1", "P-PASS-2"]


def test_reviewed_parts_leave_the_queue(service):
    service.sample_every = 1
    service.review(OPERATOR_USER, STATION, "P-REVIEW-1", "PASS", "checked by hand")
    service.review(OPERATOR_USER, STATION, "P-PASS-2", "PASS")
    assert ids(service.review_queue()) == ["P-REJECT-2", "P-PASS-1", "P-REJECT-1"]


# ---------------------------------------------------------------------- opening a part


def test_an_opened_part_has_its_image_with_the_defects_drawn(service):
    view = service.part(STATION, "P-REJECT-1", OPERATOR_USER)
    image = synthetic_image(0)  # P-REJECT-1 was recorded with seed 0
    assert view.record.verdict == "REJECT" and view.missing_evidence is None
    assert view.overlay.shape == image.shape and view.overlay.dtype == np.uint8
    assert (view.overlay != image).any()  # its scratch is drawn


def test_a_part_without_defects_is_shown_as_recorded(service):
    view = service.part(STATION, "P-PASS-1", OPERATOR_USER)
    assert (view.overlay == synthetic_image(1)).all()


def test_a_missing_evidence_file_is_reported_not_raised(service):
    record = service.store.get("P-REJECT-2", STATION)
    service.store.evidence.find(record.evidence[0]).unlink()
    view = service.part(STATION, "P-REJECT-2", OPERATOR_USER)
    assert view.overlay is None and view.record.part_id == "P-REJECT-2"
    assert "missing" in view.missing_evidence and record.evidence[0][:12] in view.missing_evidence


def test_a_part_recorded_without_an_image_says_so(service):
    service.store.record("P-BARE", STATION, result("P-BARE", Verdict.PASS), images=[])
    view = service.part(STATION, "P-BARE", OPERATOR_USER)
    assert view.overlay is None and view.missing_evidence == "no image kept for this part"


def test_an_unreadable_evidence_file_is_reported_not_raised(service):
    # The operator must still see the record and its history, and review it.
    record = service.store.get("P-REJECT-2", STATION)
    service.store.evidence.find(record.evidence[0]).write_bytes(b"not a png")
    view = service.part(STATION, "P-REJECT-2", OPERATOR_USER)
    assert view.overlay is None and view.missing_evidence


def test_opening_a_part_needs_a_user_and_a_record(service):
    with pytest.raises(Forbidden):
        service.part(STATION, "P-PASS-1", None)
    with pytest.raises(UserError, match="no record of part 'P-NOPE'"):
        service.part(STATION, "P-NOPE", OPERATOR_USER)


# ---------------------------------------------------------------------- roles


def _library_state(service) -> tuple:
    library = service.library
    return (
        [(v.standard_id, v.version) for s in library.standards() for v in library.versions(s)],
        library.product_settings(),
        len(library.activity(1000)),
    )


@pytest.mark.parametrize("user", [OPERATOR_USER, None], ids=["operator", "nobody"])
def test_only_an_engineer_changes_standards_and_models(service, user):
    standard_id = service.library.setting("bracket").standard_id
    text = service.library.text(standard_id)
    before = _library_state(service)
    with pytest.raises(Forbidden):
        service.save_standard(user, text.replace("\n", "\n# edited\n", 1), "edited")
    with pytest.raises(Forbidden):
        service.activate_standard(user, "bracket", standard_id, 1)
    with pytest.raises(Forbidden):
        service.switch_adapter(user, "bracket", None)
    assert _library_state(service) == before


def test_an_engineer_may_activate_and_switch(service):
    standard_id = service.library.setting("bracket").standard_id
    before = len(service.library.activity(1000))
    activated = service.activate_standard(ENGINEER_USER, "bracket", standard_id, 1)
    switched = service.switch_adapter(ENGINEER_USER, "bracket", None)
    assert activated.updated_by == "ana" and switched.adapter is None
    assert len(service.library.activity(1000)) == before + 2


# ---------------------------------------------------------------------- drawing


BOX = (10, 12, 20, 18)  # x0, y0, x1, y1 as recorded: x1, y1 exclusive (see BBox)


def _defect(bbox, defect_class="", clause_id=None, action="rework") -> dict:
    return {"bbox": bbox, "defect_class": defect_class, "clause_id": clause_id, "action": action}


def test_draw_defects_tints_the_box_and_nothing_far_from_it():
    image = np.full((40, 40, 3), 128, np.uint8)
    drawn = draw_defects(image, [_defect(list(BOX))])  # no label: the outline only
    x0, y0, x1, y1 = BOX
    assert drawn.shape == image.shape
    inside = drawn[y0 + 1 : y1 - 1, x0 + 1 : x1 - 1].astype(int)
    assert (inside[..., 0] > 128).all() and (inside[..., 1] < 128).all()  # towards red
    changed = (drawn != image).any(axis=2)
    near = np.zeros_like(changed)
    near[y0 - 2 : y1 + 2, x0 - 2 : x1 + 2] = True  # the anti-aliased outline may spill a pixel
    assert not changed[~near].any()


def test_draw_defects_regions_are_the_recorded_boxes_exactly(monkeypatch):
    import inspection.viz

    seen = []

    def capture(image, regions, *args, **kwargs):
        seen.extend(regions)
        return image

    monkeypatch.setattr(inspection.viz, "overlay", capture)
    image = np.zeros((40, 40, 3), np.uint8)
    draw_defects(image, [_defect(list(BOX), "scratch", "4.1.0"), _defect(None, "stain")])
    ((mask, label, colour),) = seen  # the defect without a box is not drawn
    x0, y0, x1, y1 = BOX
    expected = np.zeros((40, 40), np.uint8)
    expected[y0:y1, x0:x1] = 1
    assert label == "scratch 4.1.0" and colour == (230, 40, 40)
    assert (mask == expected).all(), "x1, y1 are exclusive: the box is rows y0..y1-1"


def test_draw_defects_dashes_the_box_a_profiler_sized_the_defect_on():
    image = np.full((40, 40, 3), 128, np.uint8)
    plain = draw_defects(image, [_defect(list(BOX))])
    sized = draw_defects(image, [{**_defect(list(BOX)), "footprint_bbox": [4, 4, 30, 34]}])
    changed = (sized != plain).any(axis=2)
    assert changed[4, 4:30].any() and changed[33, 4:30].any()  # the footprint's box, dashed
    assert not changed[4, 4:30].all()  # dashed, not a full line
    assert not changed[8:30, 8:26].any()  # nothing within it is tinted by it
    assert (draw_defects(image, [{**_defect(list(BOX)), "footprint_bbox": None}]) == plain).all()


@pytest.mark.parametrize(
    ("action", "colour"),
    [
        ("scrap", (230, 40, 40)),  # as recorded: the verdict the action implies
        ("rework", (230, 40, 40)),
        ("review", (240, 170, 0)),
        ("accept", (40, 170, 60)),
        ("melt", (40, 120, 230)),  # unknown: drawn, in blue
        (None, (40, 120, 230)),
    ],
)
def test_a_defects_box_is_coloured_by_the_verdict_its_action_implies(action, colour):
    from inspection.console.service import defect_boxes

    ((_, _, drawn),) = defect_boxes((40, 40), [_defect(list(BOX), action=action)])
    assert drawn == colour


def test_draw_defects_clips_a_box_past_the_image():
    image = np.full((40, 40, 3), 128, np.uint8)
    drawn = draw_defects(image, [_defect([-5, 30, 60, 80], action="review")])
    assert drawn.shape == image.shape
    assert (drawn[:25] == image[:25]).all()  # above the box, far from its outline


# ---------------------------------------------------------------------- the editor's mask


def _layer(painted: tuple[slice, slice] | None, size=(30, 40)) -> np.ndarray:
    layer = np.zeros((*size, 4), np.uint8)
    if painted is not None:
        layer[painted] = (255, 0, 0, 255)
    return layer


def test_editor_mask_is_the_painted_pixels_of_every_layer():
    value = {
        "background": np.zeros((30, 40, 3), np.uint8),
        "layers": [_layer((slice(0, 5), slice(0, 5))), _layer((slice(20, 30), slice(30, 40)))],
        "composite": np.zeros((30, 40, 4), np.uint8),
    }
    mask = editor_mask(value)
    assert mask.dtype == bool and mask.shape == (30, 40)
    assert mask[0:5, 0:5].all() and mask[20:30, 30:40].all()
    assert mask.sum() == 25 + 100


@pytest.mark.parametrize(
    "value",
    [
        None,
        "not a dict",
        {},
        {"layers": None},
        {"layers": []},
        {"layers": [_layer(None)]},  # a transparent layer: nothing drawn
        {"layers": [np.full((30, 40, 3), 255, np.uint8)]},  # no alpha: not a drawing
    ],
    ids=["none", "str", "empty", "layers-none", "no-layers", "transparent", "rgb"],
)
def test_editor_mask_of_nothing_drawn_is_none(value):
    assert editor_mask(value) is None


def test_an_opened_part_with_a_height_map_has_it_beside_its_image(service, tmp_path):
    """A station with a 3D profiler keeps each part's height map after its image: the
    part opens with the relief in false colour beside the photograph, the defects' boxes
    on both; a height map gone or unreadable leaves the photograph alone."""
    from inspection.records.evidence import encode_height_map

    image = synthetic_image(5)
    height = np.random.default_rng(0).normal(0, 0.005, image.shape[:2]).astype(np.float32)
    height[20:30, 20:30] = -0.2
    recorded = result("P-RELIEF", Verdict.REJECT, defects=1)
    (decision,) = recorded.decisions  # sized on the pit's footprint, as with_profile does
    sized = replace(decision, defect=replace(decision.defect, footprint_bbox=BBox(20, 20, 30, 30)))
    recorded = replace(recorded, decisions=(sized,))
    evidence = [image, encode_height_map(height)]
    service.store.record("P-RELIEF", STATION, recorded, images=evidence, product="bracket")
    view = service.part(STATION, "P-RELIEF", OPERATOR_USER)
    h, w = image.shape[:2]
    assert view.overlay.shape == (h, 2 * w, 3) and view.missing_evidence is None
    assert (view.overlay[:, :w] == draw_defects(image, view.record.defects)).all()
    assert view.record.defects[0]["footprint_bbox"] == [20, 20, 30, 30]  # kept, dashed
    # reviewed, the part is exported with its height map, and loads as such
    service.review(OPERATOR_USER, STATION, "P-RELIEF", "REJECT", "pit", "dent")
    export_reviews(service.store, tmp_path / "export")
    (line,) = map(json.loads, (tmp_path / "export" / MANIFEST).read_text().splitlines())
    assert line["height"] == f"bracket/height/dent/{part_name(STATION, 'P-RELIEF')}.tiff"
    from inspection.datasets import load_dataset
    from inspection.io import read_height_map

    (sample,) = load_dataset(tmp_path / "export" / MANIFEST).samples
    assert np.array_equal(read_height_map(sample.height_map), height)

    record = service.store.get("P-RELIEF", STATION)
    service.store.evidence.find(record.evidence[1]).write_bytes(b"II*\x00 broken")
    assert service.part(STATION, "P-RELIEF", OPERATOR_USER).overlay.shape == (h, w, 3)
