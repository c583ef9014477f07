"""The edge runtime decides as the torch Inspector does, and makes the part's payload.

The bundle is exported once per session (:func:`shared_bundle`, also used by
``test_install.py`` and ``test_server.py``); the edge side is then read without torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import STANDARDS_DIR
from edge_guard import run_without_torch
from edge_helpers import PART_SIZE, PRODUCT

from inspection.types import Frame, Observation, Verdict

_BUNDLES: dict[str, Path] = {}
OTHER_SEED = 11  # held-out parts the export's parity check did not see


def shared_bundle(tmp_path_factory, split: str = "fused") -> Path:
    """The tiny bundle of this session (exported once per split; needs torch)."""
    if split not in _BUNDLES:
        pytest.importorskip("torch", reason="exporting a bundle needs the models extra")
        from edge_helpers import tiny_bundle

        _BUNDLES[split] = tiny_bundle(tmp_path_factory.mktemp(f"bundle-{split}"), split=split)
    return _BUNDLES[split]


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    return shared_bundle(tmp_path_factory)


@pytest.fixture(scope="module")
def runtime(bundle_dir):
    from inspection.edge.bundle import load_bundle
    from inspection.edge.runtime import EdgeRuntime

    return EdgeRuntime(load_bundle(bundle_dir), threads=1)


@pytest.fixture(scope="module")
def parts():
    from inspection.export.bundle import holdout_parts

    return [obs for obs, _ in holdout_parts(PRODUCT, seed=OTHER_SEED, size=PART_SIZE)]


@pytest.fixture(scope="module")
def torch_side(bundle_dir):
    """The torch Inspector and decoder of the model the bundle was exported from."""
    pytest.importorskip("torch")
    from inspection.decoder.model import ReportDecoder
    from inspection.pipeline import Inspector, load_detector, thresholds_of
    from inspection.standards import load_standard

    model_dir = bundle_dir.parent / "model"
    detector, metadata = load_detector(model_dir)
    standard = load_standard(STANDARDS_DIR / f"{PRODUCT}.yaml")
    inspector = Inspector(detector, standard, thresholds_of(metadata))
    return inspector, ReportDecoder.load(model_dir / "decoder")


def test_edge_verdicts_equal_the_torch_inspectors(runtime, parts, torch_side):
    inspector, _ = torch_side
    verdicts = []
    for observation in parts:
        edge, payload = runtime.inspect(observation)
        lab = inspector.inspect(observation)
        assert edge.verdict == lab.verdict, (observation.part_id, edge.reasons, lab.reasons)
        assert edge.scores.keys() == lab.scores.keys()
        for key, value in lab.scores.items():
            assert edge.scores[key] == pytest.approx(value, abs=1e-3), (observation.part_id, key)
        assert [d.defect.defect_class for d in edge.decisions] == [
            d.defect.defect_class for d in lab.decisions
        ]
        assert payload is not None and payload.verdict == edge.verdict
        verdicts.append(edge.verdict)
    # Both outcomes occur: agreement on one verdict alone would prove little.
    assert Verdict.PASS in verdicts and set(verdicts) - {Verdict.PASS}


def test_evaluate_and_audit_load_a_bundle_and_decide_as_the_edge_does(bundle_dir, runtime, parts):
    from inspection.export.runtime import OnnxDetector
    from inspection.pipeline import Inspector, load_detector, thresholds_of

    detector, metadata = load_detector(bundle_dir)  # what evaluate and audit call
    assert isinstance(detector, OnnxDetector)
    assert thresholds_of(metadata) == runtime.thresholds  # the manifest's, as on the box
    inspector = Inspector(detector, runtime.standard_for(PRODUCT), thresholds_of(metadata))
    for observation in parts:
        edge, _ = runtime.inspect(observation)
        assert inspector.inspect(observation).verdict == edge.verdict, observation.part_id


def test_the_fused_payload_is_the_decoders_fusion_of_the_same_detection(runtime, parts, torch_side):
    from inspection.edge.payload import EdgePayload

    inspector, decoder = torch_side
    # A part with audio and measured defects: every field of the payload is exercised.
    decided = [(o, *runtime.inspect(o)) for o in parts]
    observation, result, payload = next(
        (o, r, p) for o, r, p in decided if o.audio is not None and r.decisions
    )
    detection = inspector.detector.detect(observation.frames[0].image, observation.audio)
    expected = decoder.fuse_detection(detection)[0].astype(np.float32)
    fused = payload.fused.to_array()
    assert (
        fused.shape == expected.shape == (decoder.config.fusion.queries, decoder.config.fusion.dim)
    )
    np.testing.assert_allclose(fused, expected, atol=2e-2, rtol=1e-2)  # float16 on the wire
    assert payload.split == "fused" and payload.patch_tokens is None
    assert payload.tensor_bytes() == fused.size * 2
    assert payload.part_id == result.part_id and payload.product == PRODUCT
    assert payload.bundle_version == runtime.bundle.version
    assert payload.model_version == result.model_version == runtime.bundle.model_version
    assert (payload.standard_id, payload.standard_version) == (
        result.standard_id,
        result.standard_version,
    )
    # Each defect as measured, in the zone the rules placed it (the cloud has no image).
    sent = [(d.defect_class, d.attributes, d.zone, d.score) for d in payload.to_defects()]
    decided = [(d.defect.defect_class, d.defect.attributes, d.zone) for d in result.decisions]
    assert [s[:3] for s in sent] == decided and all(s[3] > 0 for s in sent)
    assert list(payload.reasons) == list(result.reasons)
    assert EdgePayload.model_validate_json(payload.model_dump_json(by_alias=True)) == payload


def test_the_tokens_split_carries_the_raw_tensors(bundle_dir, parts):
    from inspection.edge.bundle import load_bundle
    from inspection.edge.runtime import EdgeRuntime

    runtime = EdgeRuntime(load_bundle(bundle_dir), split="tokens", threads=1)
    observation = parts[0]
    result, payload = runtime.inspect(observation)
    detection = runtime.detector.detect(observation.frames[0].image, observation.audio)
    assert payload.split == "tokens" and payload.fused is None
    assert payload.patch_tokens.shape == list(detection.patch_tokens.shape[1:])
    assert payload.maps.shape == [detection.maps.shape[1], PART_SIZE, PART_SIZE]
    np.testing.assert_allclose(payload.maps.to_array(), detection.maps[0], atol=2e-2, rtol=1e-3)
    assert (payload.audio_tokens is None) == (observation.audio is None)
    assert payload.verdict == result.verdict


@pytest.mark.parametrize(
    "frames",
    [(), (Frame(np.zeros(5, np.uint8)),)],
    ids=["no-frame", "not-an-image"],
)
def test_an_error_is_review_with_its_reason_and_still_a_payload(runtime, frames):
    observation = Observation(part_id="bad-1", station="s", frames=frames, product=PRODUCT)
    result, payload = runtime.inspect(observation)
    assert result.verdict is Verdict.REVIEW
    assert result.reasons and result.reasons[0].startswith("inspection failed:")
    assert result.model_version == runtime.bundle.model_version
    # The cloud still hears of the part (zero fused tokens), held to the REVIEW.
    assert payload is not None and payload.verdict is Verdict.REVIEW
    assert not payload.fused.to_array().any()


def test_a_payload_that_cannot_be_made_turns_a_pass_into_review(runtime, parts):
    # A part id the wire format refuses (spaces): the part is decided, the cloud cannot
    # be told, so it goes to review rather than pass unreported.
    observation = parts[0]
    bad = Observation(
        part_id="has spaces",
        station="s",
        frames=observation.frames,
        audio=observation.audio,
        product=PRODUCT,
    )
    result, payload = runtime.inspect(bad)
    assert payload is None
    assert result.verdict is not Verdict.PASS
    assert any(r.startswith("edge payload failed") for r in result.reasons)


def test_unknown_product_and_split_are_refused_naming_them(bundle_dir, runtime):
    from inspection.edge.bundle import load_bundle
    from inspection.edge.runtime import EdgeRuntime
    from inspection.errors import UserError

    with pytest.raises(UserError, match=r"'widget'.*bracket"):
        runtime.inspect(Observation(part_id="p", station="s", frames=(), product="widget"))
    with pytest.raises(UserError, match="split must be one of"):
        EdgeRuntime(load_bundle(bundle_dir), split="halfway")


def test_an_edge_station_with_a_profiler_can_search_its_height_maps(bundle_dir, runtime):
    from inspection.edge.bundle import load_bundle
    from inspection.edge.runtime import EdgeRuntime

    searching = EdgeRuntime(load_bundle(bundle_dir), threads=1, profiler_dents=True)
    assert searching.thresholds.profiler_dents and not runtime.thresholds.profiler_dents
    assert searching.thresholds.version == runtime.thresholds.version + "; profiler dents"


EDGE_RUN = """
import io
import numpy as np
from PIL import Image
from fastapi.testclient import TestClient

import inspection.edge
import inspection.edge.commands
from inspection.edge.bundle import load_bundle
from inspection.edge.install import run_selftest
from inspection.edge.runtime import EdgeRuntime
from inspection.edge.server import EdgeService, create_edge_app
from inspection.types import Frame, Observation

runtime = EdgeRuntime(load_bundle({bundle!r}), threads=1)
report = run_selftest(runtime)
assert report.passed, report.failures
image = np.full(({size}, {size}, 3), 128, np.uint8)
result, payload = runtime.inspect(
    Observation(part_id="p-1", station="s", frames=(Frame(image),), product="{product}")
)
assert payload.fused is not None and payload.verdict == result.verdict
buf = io.BytesIO()
Image.fromarray(image).save(buf, format="PNG")
with TestClient(create_edge_app(EdgeService(runtime, report))) as client:
    answer = client.post("/v1/inspect", files={{"image": ("p.png", buf.getvalue())}},
                         data={{"part_id": "p-2"}})
    assert answer.status_code == 200, answer.text
    assert answer.json()["verdict"] == result.verdict.value
print("verdict", result.verdict.value)
"""


def test_the_edge_runs_a_bundle_without_torch(bundle_dir):
    done = run_without_torch(
        EDGE_RUN.format(bundle=str(bundle_dir), size=PART_SIZE, product=PRODUCT)
    )
    assert done.returncode == 0, done.stderr
    assert "verdict" in done.stdout
