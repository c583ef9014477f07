"""ONNX export of the edge graph: parity with torch, dynamic batch, torch-free runner."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from edge_guard import run_without_torch

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")

from inspection.errors import ModelError, UserError  # noqa: E402
from inspection.export.onnx import check_parity, export_onnx  # noqa: E402
from inspection.export.runtime import OnnxDetector, hash_file, record_hash  # noqa: E402
from inspection.models import create_model, save_model  # noqa: E402
from inspection.models.card import sha256  # noqa: E402

FIELDS = ("maps", "image_logit", "class_logits", "audio_logit", "part_logit")
FIELDS += ("patch_tokens", "audio_tokens")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("tiny")
    save_model(model, tmp_path_factory.mktemp("ckpt"), extra={"image_threshold": 0.5})
    return model


@pytest.fixture(scope="module")
def onnx_path(tiny, tmp_path_factory):
    return export_onnx(tiny, tmp_path_factory.mktemp("onnx") / "tiny.onnx", with_audio=True)


def test_single_file_with_metadata(onnx_path, tiny):
    assert onnx_path.is_file() and not onnx_path.with_suffix(".onnx.data").exists()
    record = onnx_path.with_name("tiny.onnx.sha256")  # its SHA-256, and nothing else
    assert sorted(onnx_path.parent.iterdir()) == [onnx_path, record]
    assert record.read_text() == f"{sha256(onnx_path)}  tiny.onnx\n"  # sha256sum's format
    detector = OnnxDetector(onnx_path)
    assert detector.config == tiny.config and detector.version == tiny.model_version
    assert detector.metadata == {"image_threshold": 0.5} and detector.classes == tiny.config.classes
    assert detector.inputs == ["image", "mel"] and list(detector.outputs) == list(FIELDS)


@pytest.mark.parametrize(("batch", "spin"), [(1, True), (3, False)])
def test_onnx_matches_torch(onnx_path, tiny, batch, spin):
    image, mel = torch.randn(batch, 3, 64, 64), torch.randn(batch, 80, 100)
    with torch.no_grad():
        expected = tiny(image, mel)
    det = OnnxDetector(onnx_path, threads=2, spin=spin).run(image.numpy(), mel.numpy())
    for name in FIELDS:
        got, want = getattr(det, name), getattr(expected, name).numpy()
        assert got.shape == want.shape, name
        np.testing.assert_allclose(got, want, atol=1e-4, err_msg=name)
    assert det.grid == expected.grid


def test_check_parity_passes_the_exported_graph_and_catches_other_weights(onnx_path, tiny):
    report = check_parity(tiny, onnx_path, batch=3)
    assert report.ok and report.batch == 3
    assert set(report.max_abs_diff) == set(FIELDS) and report.worst < 1e-4
    torch.manual_seed(1)
    other = create_model("tiny")  # same architecture, other weights: not this graph
    report = check_parity(other, onnx_path)
    assert not report.ok and report.worst > report.tolerance


@pytest.mark.slow
def test_conv_tower_exports_with_parity(tmp_path):
    """The timm conv tower (pyramid read through forward_intermediates, context layers)
    exports with a dynamic batch and the same outputs."""
    torch.manual_seed(0)
    model = create_model("tiny-conv")
    path = export_onnx(model, tmp_path / "conv.onnx", with_audio=True)
    image, mel = torch.randn(3, 3, 64, 64), torch.randn(3, 80, 100)
    with torch.no_grad():
        expected = model(image, mel)
    det = OnnxDetector(path).run(image.numpy(), mel.numpy())
    for name in FIELDS:
        np.testing.assert_allclose(
            getattr(det, name), getattr(expected, name).numpy(), atol=1e-4, err_msg=name
        )


def test_runner_without_audio_scores_the_image_alone(onnx_path, tiny):
    image = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = tiny(image)
    det = OnnxDetector(onnx_path).run(image.numpy())
    assert det.audio_logit is None and det.audio_tokens is None
    np.testing.assert_allclose(det.part_logit, expected.part_logit.numpy(), atol=1e-4)


def test_image_only_graph(tiny, tmp_path):
    tiny.train()
    path = export_onnx(tiny, tmp_path / "image.onnx", with_audio=False)
    assert tiny.training  # the caller's model is left as it was
    tiny.eval()
    detector = OnnxDetector(path)
    assert detector.inputs == ["image"] and not detector.with_audio
    det = detector.run(np.zeros((2, 3, 64, 64), np.float32))
    np.testing.assert_array_equal(det.part_logit, det.image_logit)
    with pytest.raises(ValueError, match="without audio"):
        detector.run(np.zeros((1, 3, 64, 64), np.float32), np.zeros((1, 80, 100), np.float32))


def test_an_opset_the_exporter_cannot_honour_is_refused_and_nothing_written(tiny, tmp_path):
    import onnx

    # torch's exporter writes its own opset when it cannot convert to the asked one,
    # saying so only in a log: an edge runtime limited to the asked opset would refuse it
    with pytest.raises(UserError, match="--opset 3: the exporter cannot write this model"):
        export_onnx(tiny, tmp_path / "old.onnx", with_audio=False, opset=3)
    assert list(tmp_path.iterdir()) == []
    path = export_onnx(tiny, tmp_path / "asked.onnx", with_audio=False, opset=18)
    assert [o.version for o in onnx.load(str(path)).opset_import if o.domain == ""] == [18]


def test_runner_detects_on_a_full_image_without_torch(onnx_path, tmp_path):
    """The edge path (preprocess, log-mel, ONNX Runtime, stitch) in a torch-free process."""
    result = run_without_torch(
        f"""
        import sys
        import numpy as np
        from inspection.export.runtime import OnnxDetector
        from inspection.types import AudioClip

        detector = OnnxDetector({str(onnx_path)!r})
        image = np.random.default_rng(0).integers(0, 65535, (90, 150), dtype=np.uint16)
        clip = AudioClip(np.random.default_rng(1).standard_normal(12000).astype("float32") * 0.1)
        detector.batch_size = 2
        det = detector.detect(image, audio=clip)
        assert det.maps.shape == (1, 7, 90, 150), det.maps.shape
        assert det.part_score.shape == (1,) and det.audio_score is not None
        assert det.class_score_dict(0).keys() == set(detector.config.classes)
        assert "torch" not in sys.modules

        from pathlib import Path
        import shutil
        from inspection.errors import ModelError

        tampered = Path({str(tmp_path)!r}) / "tampered.onnx"
        shutil.copy({str(onnx_path)!r}, tampered)
        shutil.copy({str(onnx_path)!r} + ".sha256", str(tampered) + ".sha256")
        with open(tampered, "r+b") as f:
            f.seek(tampered.stat().st_size // 2)
            f.write(bytes(64))
        try:
            OnnxDetector(tampered)
            raise AssertionError("a tampered graph was loaded")
        except ModelError as exc:
            assert "tampered.onnx: SHA-256 differs" in str(exc), exc
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.fixture
def graph_copy(onnx_path, tmp_path):
    """The exported graph and its SHA-256 record, copied to be damaged."""
    shutil.copy(onnx_path, tmp_path / "edge.onnx")
    (tmp_path / "edge.onnx.sha256").write_text(f"{sha256(onnx_path)}  edge.onnx\n")
    return tmp_path / "edge.onnx"


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="no sha256sum here")
def test_the_record_is_checked_by_sha256sum(graph_copy):
    check = ["sha256sum", "-c", "edge.onnx.sha256"]
    assert subprocess.run(check, cwd=graph_copy.parent, capture_output=True).returncode == 0


def test_a_tampered_graph_is_refused_naming_the_file(graph_copy):
    OnnxDetector(graph_copy)
    data = bytearray(graph_copy.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = bytes(b ^ 0xFF for b in data[middle : middle + 4096])
    graph_copy.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"edge\.onnx: SHA-256 differs from edge\.onnx\.sha256"):
        OnnxDetector(graph_copy)


def test_a_graph_without_its_record_is_refused_unless_unchecked(graph_copy):
    hash_file(graph_copy).unlink()
    with pytest.raises(ModelError, match=r"edge\.onnx: no recorded SHA-256.*inspection export"):
        OnnxDetector(graph_copy)
    assert OnnxDetector(graph_copy, verify=False).inputs == ["image", "mel"]
    hash_file(graph_copy).write_text("not a hash\n")
    with pytest.raises(ModelError, match=r"edge\.onnx\.sha256: not a SHA-256 record"):
        OnnxDetector(graph_copy)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_corrupt_graph_is_a_model_error(graph_copy, damage):
    data = graph_copy.read_bytes()
    damaged = {"truncated": data[: len(data) // 2], "garbage": b"\x07" * 256}.get(damage, b"")
    graph_copy.write_bytes(damaged)
    with pytest.raises(ModelError, match=r"edge\.onnx: SHA-256 differs"):
        OnnxDetector(graph_copy)
    with pytest.raises(ModelError, match=r"edge\.onnx: not a readable ONNX graph"):
        OnnxDetector(graph_copy, verify=False)
    record_hash(graph_copy)  # recorded as it is: ONNX Runtime's own refusal, as a message
    with pytest.raises(ModelError, match=r"edge\.onnx: not a readable ONNX graph"):
        OnnxDetector(graph_copy)


def test_a_missing_graph_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match=r"nowhere\.onnx: no such ONNX file"):
        OnnxDetector(tmp_path / "nowhere.onnx")
