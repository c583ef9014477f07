"""TensorRT engine builder: the clear error where TensorRT is missing (every machine),
and a real build on a GPU box that has it."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from inspection.errors import UserError
from inspection.export import tensorrt as trt_export

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def test_missing_tensorrt_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` raises ImportError
    graph = tmp_path / "edge.onnx"
    graph.write_bytes(b"not read: the import fails first")
    with pytest.raises(UserError) as info:
        trt_export.build_engine(graph, tmp_path / "cache", "fp16")
    message = str(info.value)
    assert "TensorRT is not installed" in message
    assert "pip install 'inspection[trt]'" in message and "NVIDIA" in message and "GPU" in message
    assert not (tmp_path / "cache").exists()  # nothing written


def test_bad_options_are_refused_before_anything_else(tmp_path):
    with pytest.raises(UserError, match="precision must be one of"):
        trt_export.build_engine(tmp_path / "edge.onnx", tmp_path, "int4")
    with pytest.raises(UserError, match="opt_batch"):
        trt_export.build_engine(tmp_path / "edge.onnx", tmp_path, "fp16", max_batch=2, opt_batch=4)


def test_engine_key_changes_with_what_the_engine_depends_on():
    base = dict(gpu="H100", tensorrt="10.3", model_sha256="a" * 64, precision="fp16")
    base |= dict(min_batch=1, opt_batch=8, max_batch=8)
    key = trt_export.EngineKey(**base)
    assert key.digest == trt_export.EngineKey(**base).digest and len(key.digest) == 16
    for field, other in [("gpu", "L4"), ("tensorrt", "10.4"), ("model_sha256", "b" * 64)]:
        assert trt_export.EngineKey(**{**base, field: other}).digest != key.digest


@pytest.mark.skipif(not HAS_TRT, reason="TensorRT is not installed")
def test_build_and_run_an_engine_on_the_gpu(tmp_path):  # pragma: no cover - GPU boxes only
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    import tensorrt as trt

    from inspection.export.onnx import export_onnx
    from inspection.export.runtime import OnnxDetector
    from inspection.models import create_model

    torch.manual_seed(0)
    graph = export_onnx(create_model("tiny"), tmp_path / "tiny.onnx", with_audio=False)
    cache = tmp_path / "cache"
    engine = trt_export.build_engine(graph, cache, "fp32", max_batch=4)
    assert engine.is_file() and (cache / trt_export.TIMING_CACHE).is_file()
    assert engine.with_suffix(".json").is_file()
    mtime = engine.stat().st_mtime_ns
    assert trt_export.build_engine(graph, cache, "fp32", max_batch=4) == engine  # cached
    assert engine.stat().st_mtime_ns == mtime

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    cuda_engine = runtime.deserialize_cuda_engine(engine.read_bytes())
    context = cuda_engine.create_execution_context()
    images = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    context.set_input_shape("image", images.shape)
    tensors = {"image": torch.from_numpy(images).cuda()}
    for i in range(cuda_engine.num_io_tensors):
        name = cuda_engine.get_tensor_name(i)
        if name != "image":
            tensors[name] = torch.empty(tuple(context.get_tensor_shape(name)), device="cuda")
        context.set_tensor_address(name, tensors[name].data_ptr())
    stream = torch.cuda.current_stream()
    assert context.execute_async_v3(stream.cuda_stream)
    stream.synchronize()
    want = OnnxDetector(graph).run(images)
    np.testing.assert_allclose(tensors["part_logit"].cpu().numpy(), want.part_logit, atol=1e-3)

    half = trt_export.build_engine(graph, cache, "fp16", max_batch=4)
    assert half != engine and half.is_file()
    with pytest.raises(UserError, match="no Q/DQ nodes"):
        trt_export.build_engine(graph, cache, "int8")
