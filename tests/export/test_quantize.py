"""INT8 / FP16 edge graphs: calibrated on real (synthetic-line) parts, loaded by the
torch-free detector, decided by the line's Inspector, compared with the FP32 graph."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import onnx
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")

from inspection.errors import ModelError, UserError
from inspection.export.onnx import export_onnx
from inspection.export.quantize import (
    PrecisionReport,
    QuantizeOptions,
    compare_precision,
    convert_fp16,
    quantize_int8,
)
from inspection.export.runtime import OnnxDetector, hash_file
from inspection.io import read_image
from inspection.models import load_model
from inspection.models.card import sha256
from inspection.pipeline import Inspector, thresholds_of
from inspection.types import Frame, Observation, Verdict


@pytest.fixture(scope="module")
def fp32(model_dir, tmp_path_factory):
    """The tiny model of ``tests/conftest.py`` (thresholds set so both verdicts occur),
    exported with its audio branch."""
    folder = tmp_path_factory.mktemp("precision")
    return export_onnx(load_model(model_dir), folder / "fp32.onnx", with_audio=True)


@pytest.fixture(scope="module")
def labelled(parts):
    """The synthetic parts (class folders) as observations with their ground truth."""
    images = sorted(parts.rglob("*.png"))
    return [
        (
            Observation(
                part_id=p.stem, station="s1", frames=(Frame(image=read_image(p), mm_per_px=0.1),)
            ),
            p.parent.name != "good",
        )
        for p in images
    ]


@pytest.fixture(scope="module")
def int8(fp32, parts):
    """Calibrated on the dataset folder itself: good and defective parts."""
    return quantize_int8(fp32, fp32.with_name("int8.onnx"), parts)


def test_int8_graph_is_quantised_and_keeps_the_metadata(fp32, int8, parts):
    detector = OnnxDetector(int8)  # verifies the recorded SHA-256
    assert hash_file(int8).read_text().split()[0] == sha256(int8)
    source = OnnxDetector(fp32)
    assert detector.config == source.config and detector.grid == source.grid
    assert detector.metadata == source.metadata and detector.version == source.version
    assert detector.inputs == source.inputs and detector.outputs == source.outputs
    proto = onnx.load(str(int8))
    ops = {node.op_type for node in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["precision"] == "int8"
    facts = json.loads(meta["quantization"])
    n_good = len(list((parts / "good").glob("*.png")))
    n_all = len(list(parts.rglob("*.png")))
    assert facts["calibration_parts"] == n_all and facts["calibration_defective"] == n_all - n_good
    assert 0 < facts["calibration_defective"] < facts["calibration_parts"]
    assert facts["source_sha256"] == sha256(fp32) and facts["method"] == "minmax"
    assert int8.stat().st_size < fp32.stat().st_size  # int8 weights


def test_int8_verdicts_through_the_inspector(int8, labelled, bracket_standard):
    detector = OnnxDetector(int8)
    inspector = Inspector(detector, bracket_standard, thresholds_of(detector.metadata))
    results = [inspector.inspect(obs) for obs, _ in labelled[:6]]
    for result in results:
        assert result.verdict in (Verdict.PASS, Verdict.REJECT, Verdict.REVIEW)
        assert np.isfinite(result.scores["part"]) and result.model_version == detector.version
        assert not any("inspection failed" in reason for reason in result.reasons)


def test_compare_precision(fp32, int8, labelled, bracket_standard):
    report = compare_precision(fp32, int8, labelled, bracket_standard, threads=1)
    assert isinstance(report, PrecisionReport)
    assert report.parts == len(labelled) and 0 < report.defective < report.parts
    assert report.reference == "fp32.onnx" and report.candidate == "int8.onnx"
    assert 0.0 <= report.verdict_agreement <= 1.0
    changed = round((1.0 - report.verdict_agreement) * report.parts)
    assert len(report.disagreements) == changed
    assert 0.0 <= report.auroc_reference <= 1.0 and 0.0 <= report.auroc_candidate <= 1.0
    assert report.auroc_change == pytest.approx(report.auroc_candidate - report.auroc_reference)
    assert np.isfinite(report.max_score_diff) and report.max_score_diff >= 0.0
    assert 0.0 < report.p50_ms_reference <= report.p99_ms_reference
    assert 0.0 < report.p50_ms_candidate <= report.p99_ms_candidate
    assert report.parts_per_s_candidate > 0.0 and report.speedup > 0.0


def test_compare_with_itself_agrees_exactly(fp32, labelled):
    parts = [(replace(obs, product="bracket"), bad) for obs, bad in labelled[:6]]
    report = compare_precision(fp32, fp32, parts)  # the bracket's standard, from the parts
    assert report.verdict_agreement == 1.0 and report.disagreements == ()
    assert report.max_score_diff == 0.0
    with pytest.raises(UserError, match="give the standard"):
        compare_precision(fp32, fp32, labelled[:2])  # no product: which standard?
    with pytest.raises(UserError, match="at least one labelled part"):
        compare_precision(fp32, fp32, [])


def test_calibration_from_observations_and_exclusions(fp32, labelled, tmp_path):
    options = QuantizeOptions(
        method="percentile", exclude_modules=("model.seg_head",), max_parts=4, batch_size=2
    )
    out = quantize_int8(fp32, tmp_path / "q.onnx", labelled, options)
    facts = json.loads(
        OnnxDetector(out).session.get_modelmeta().custom_metadata_map["quantization"]
    )
    assert facts["calibration_parts"] == 4 and facts["method"] == "percentile"
    excluded = set(facts["nodes_excluded"])
    assert excluded
    proto = onnx.load(str(out))
    # the excluded head's nodes take no quantised input: they run in float
    producers = {o: n.op_type for n in proto.graph.node for o in n.output}
    for node in proto.graph.node:
        if node.name in excluded and node.op_type == "Conv":
            assert producers.get(node.input[1]) != "DequantizeLinear", node.name


def test_empty_calibration_is_a_clear_error(fp32, tmp_path):
    with pytest.raises(UserError, match="calibration set is empty"):
        quantize_int8(fp32, tmp_path / "q.onnx", [])
    assert not (tmp_path / "q.onnx").exists()
    with pytest.raises(UserError, match="calibration folder not found"):
        quantize_int8(fp32, tmp_path / "q.onnx", tmp_path / "missing")
    with pytest.raises(UserError, match="no nodes from module"):
        quantize_int8(
            fp32,
            tmp_path / "q.onnx",
            [np.zeros((64, 64, 3), np.uint8)],
            QuantizeOptions(exclude_modules=("model.no_such_head",)),
        )
    with pytest.raises(UserError, match="calibration method"):
        QuantizeOptions(method="random")


def test_modified_graph_is_refused(fp32, tmp_path, parts):
    copy = tmp_path / "edited.onnx"
    copy.write_bytes(fp32.read_bytes() + b"\0")
    hash_file(copy).write_text(hash_file(fp32).read_text().replace("fp32.onnx", "edited.onnx"))
    with pytest.raises(ModelError, match=r"edited\.onnx"):
        quantize_int8(copy, tmp_path / "q.onnx", parts)


def test_fp16_graph(fp32, labelled, tmp_path):
    half = convert_fp16(fp32, tmp_path / "fp16.onnx")
    detector, source = OnnxDetector(half), OnnxDetector(fp32)
    assert detector.metadata == source.metadata and detector.config == source.config
    proto = onnx.load(str(half))
    assert {p.key: p.value for p in proto.metadata_props}["precision"] == "fp16"
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer)
    image = labelled[0][0].frames[0].image
    got, want = detector.detect(image), source.detect(image)
    assert got.anomaly_map.dtype == np.float32  # float32 in and out
    np.testing.assert_allclose(got.part_score, want.part_score, atol=2e-2)
