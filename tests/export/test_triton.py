"""The Triton model repository of the report decoder: its layout, its config.pbtxt read
back by protobuf's text parser, and its model.py run in-process on a tiny decoder.

Triton itself is not installed here: ``triton_python_backend_utils`` (the server's API
to a Python-backend model) is stood in for below with the few calls model.py makes.
Everything behind it (decoder, standards, constrained decoding) is real.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("xgrammar")
pytest.importorskip("fastapi")  # model.py answers as the report service does

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, text_format

from inspection.edge.payload import EdgePayload, WireDefect, WireTensor
from inspection.errors import ModelError, UserError
from inspection.export.triton import DEFAULT_NAME, ReportBackend, write_triton_repository
from inspection.models.card import sha256
from inspection.standards import apply_standard, load_standard

REPO_ROOT = Path(__file__).resolve().parents[2]
STANDARDS_DIR = REPO_ROOT / "datasets" / "standards"


@pytest.fixture(scope="module")
def decoder_dir(tmp_path_factory):
    """A random-weight tiny decoder (fused tokens (8, 64)) with a small tokenizer."""
    from inspection.decoder.corpus import shipped_standards
    from inspection.decoder.model import ReportDecoder
    from inspection.decoder.tokenizer import tokenizer_corpus, train_tokenizer

    corpus = tokenizer_corpus(n_examples=30, n_standards=4, standards=shipped_standards())
    model = ReportDecoder.create("tiny", tokenizer=train_tokenizer(corpus, 512), seed=0)
    return model.save(tmp_path_factory.mktemp("triton-decoder") / "decoder")


@pytest.fixture(scope="module")
def repository(decoder_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("triton")
    return write_triton_repository(decoder_dir, out, max_batch=4, max_queue_delay_us=2000)


def test_repository_layout(repository, decoder_dir):
    assert repository.name == DEFAULT_NAME
    assert (repository / "config.pbtxt").is_file() and (repository / "1" / "model.py").is_file()
    copied = repository / "1" / "decoder"
    assert sorted(p.name for p in copied.iterdir()) == sorted(p.name for p in decoder_dir.iterdir())
    assert sha256(copied / "model.safetensors") == sha256(decoder_dir / "model.safetensors")
    standards = sorted(p.name for p in (repository / "1" / "standards").iterdir())
    assert standards == sorted(p.name for p in STANDARDS_DIR.glob("*.yaml"))
    compile((repository / "1" / "model.py").read_text(), "model.py", "exec")  # valid Python source


def test_config_parses_as_a_triton_model_config(repository, decoder_dir):
    config = _parse_config(repository / "config.pbtxt")
    assert config.name == DEFAULT_NAME and config.backend == "python"
    assert config.max_batch_size == 4
    inputs = {i.name: i for i in config.input}
    assert set(inputs) == {"FUSED", "REQUEST"} and [o.name for o in config.output] == ["REPORT"]
    assert _enum(inputs["FUSED"], "data_type") == "TYPE_FP16"
    assert list(inputs["FUSED"].dims) == [8, 64]  # the tiny decoder's fused tokens (N, D)
    assert _enum(inputs["REQUEST"], "data_type") == "TYPE_STRING"
    assert list(inputs["REQUEST"].dims) == [1]
    assert _enum(config.output[0], "data_type") == "TYPE_STRING"
    batching = config.dynamic_batching
    assert list(batching.preferred_batch_size) == [2, 4]
    assert batching.max_queue_delay_microseconds == 2000
    assert len(config.instance_group) == 1 and config.instance_group[0].count == 1
    assert _enum(config.instance_group[0], "kind") == "KIND_CPU"
    params = {k: v.string_value for k, v in config.parameters.items()}
    assert params == {
        "decoder_dir": "decoder",
        "standards_dir": "standards",
        "decoder_sha256": sha256(decoder_dir / "model.safetensors"),
    }


def test_bad_options_are_refused(decoder_dir, tmp_path):
    with pytest.raises(UserError, match="kind"):
        write_triton_repository(decoder_dir, tmp_path, kind="KIND_TPU")
    with pytest.raises(UserError, match="preferred batch"):
        write_triton_repository(decoder_dir, tmp_path, max_batch=4, preferred_batch=[8])
    with pytest.raises(ModelError, match="not a report decoder"):
        write_triton_repository(tmp_path, tmp_path / "out")
    with pytest.raises(UserError, match="no such standard"):
        write_triton_repository(decoder_dir, tmp_path, standards=[tmp_path / "missing.yaml"])
    assert not (tmp_path / DEFAULT_NAME).exists()


def test_model_py_answers_a_dynamic_batch(repository, monkeypatch):
    pb_utils = _stand_in_backend_utils()
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb_utils)
    model = _load_model_py(repository / "1" / "model.py").TritonPythonModel()
    config = json_format.MessageToDict(
        _parse_config(repository / "config.pbtxt"), preserving_proto_field_name=True
    )  # Triton hands initialize() the config as JSON, in this form
    model.initialize({"model_config": json.dumps(config), "model_instance_kind": "CPU"})

    standard = load_standard(STANDARDS_DIR / "bracket.yaml")
    long_scratch = [WireDefect(defect_class="scratch", attributes={"length_mm": 7.0}, zone="A")]
    parts = [("p-good", "PASS", []), ("p-scratch", "PASS", long_scratch)]
    rng = np.random.default_rng(0)
    fused = rng.standard_normal((2, 8, 64)).astype(np.float16)
    good = pb_utils.InferenceRequest(
        {
            "FUSED": fused,
            "REQUEST": np.array(
                [[_request(standard, pid, verdict, defects)] for pid, verdict, defects in parts],
                dtype=np.object_,
            ),
        }
    )
    unknown = json.loads(_request(standard, "p-unknown", "PASS", []))
    unknown["standard_version"] = "no-such-version"
    bad = pb_utils.InferenceRequest(
        {"FUSED": fused[:1], "REQUEST": np.array([[json.dumps(unknown).encode()]], np.object_)}
    )
    mismatched = pb_utils.InferenceRequest(
        {"FUSED": fused, "REQUEST": np.array([[b"{}"]], np.object_)}  # 2 rows of tokens, 1 request
    )
    responses = model.execute([good, bad, mismatched])
    assert len(responses) == 3
    assert "2 FUSED rows but 1 REQUEST rows" in responses[2].error.message()

    assert responses[0].error is None
    (report,) = responses[0].output_tensors
    assert report.name() == "REPORT" and report.as_numpy().shape == (2, 1)
    answers = [json.loads(row[0]) for row in report.as_numpy()]
    assert [a["part_id"] for a in answers] == ["p-good", "p-scratch"]
    for answer, (pid, _, defects) in zip(answers, parts, strict=True):
        rules = apply_standard(standard, tuple(d.to_defect() for d in defects), pid)
        assert answer["rules_verdict"] == rules.verdict.value  # the cloud re-applied the rules
        assert answer["standard_id"] == "QS-BRK-200" and answer["duplicate"] is False
        assert answer["decoder_version"] == sha256(repository / "1/decoder/model.safetensors")[:12]
        assert answer["report"] is not None and answer["error"] is None  # grammar: always JSON
        assert answer["report"]["part_id"] == pid
        assert answer["verdict"] in ("PASS", "REJECT", "REVIEW")
    assert answers[1]["rules_verdict"] == "REJECT"  # a 7 mm scratch on the visible face
    assert answers[1]["verdict"] != "PASS"  # a report never passes what the rules reject

    assert responses[1].output_tensors == [] and "unknown standard" in responses[1].error.message()
    model.finalize()


def test_backend_refuses_modified_weights(repository, tmp_path):
    import shutil

    copy = tmp_path / "decoder"
    shutil.copytree(repository / "1" / "decoder", copy)
    with (copy / "model.safetensors").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelError, match=r"model\.safetensors"):
        ReportBackend(copy, repository / "1" / "standards", decoder_sha256="0" * 64)


# --------------------------------------------------------------------------- helpers


def _request(standard, part_id: str, verdict: str, defects) -> bytes:
    """An edge payload's JSON without its fused tokens (they travel as FUSED)."""
    payload = EdgePayload(
        part_id=part_id,
        standard_id=standard.id,
        standard_version=standard.version,
        model_version="tiny-test",
        fused=WireTensor.from_array(np.zeros((8, 64))),
        defects=defects,
        verdict=verdict,
    ).to_json()
    del payload["fused"]
    return json.dumps(payload).encode()


def _load_model_py(path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("triton_report_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stand_in_backend_utils() -> types.ModuleType:
    """The calls model.py makes of Triton's ``triton_python_backend_utils``."""
    pb = types.ModuleType("triton_python_backend_utils")

    class Tensor:
        def __init__(self, name: str, array: np.ndarray):
            self._name, self._array = name, array

        def name(self) -> str:
            return self._name

        def as_numpy(self) -> np.ndarray:
            return self._array

    class InferenceRequest:
        def __init__(self, inputs: dict[str, np.ndarray]):
            self.inputs = {name: Tensor(name, array) for name, array in inputs.items()}

    class TritonError:
        def __init__(self, message: str):
            self._message = message

        def message(self) -> str:
            return self._message

    class InferenceResponse:
        def __init__(self, output_tensors, error=None):
            self.output_tensors, self.error = output_tensors, error

    pb.Tensor, pb.InferenceRequest = Tensor, InferenceRequest
    pb.TritonError, pb.InferenceResponse = TritonError, InferenceResponse
    pb.get_input_tensor_by_name = lambda request, name: request.inputs.get(name)
    return pb


def _parse_config(path: Path):
    """``config.pbtxt`` parsed by protobuf's text-format parser into Triton's
    ``ModelConfig`` (tritonclient's, when installed), else into a message declaring the
    same fields, names and nesting (the subset this repository uses)."""
    message = _triton_model_config() or _model_config_subset()
    return text_format.Parse(path.read_text(encoding="utf-8"), message())


def _enum(message, field: str) -> str:
    descriptor = message.DESCRIPTOR.fields_by_name[field].enum_type
    return descriptor.values_by_number[getattr(message, field)].name


def _triton_model_config():
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or not spec.submodule_search_locations:
        return None
    file = Path(next(iter(spec.submodule_search_locations))) / "grpc" / "model_config_pb2.py"
    if not file.is_file():
        return None
    # loaded by path: tritonclient.grpc's __init__ needs grpcio, the proto does not
    module_spec = importlib.util.spec_from_file_location("_triton_model_config_pb2", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.ModelConfig


def _model_config_subset():
    f = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="model_config_subset.proto", package="subset")
    data_type = file.enum_type.add(name="DataType")
    for number, name in enumerate(["TYPE_INVALID", "TYPE_FP16", "TYPE_FP32", "TYPE_STRING"]):
        data_type.value.add(name=name, number=number)

    def message(name, fields, parent=None):
        m = (parent.nested_type if parent else file.message_type).add(name=name)
        for number, (field, kind, label, type_name) in enumerate(fields, 1):
            m.field.add(name=field, number=number, type=kind, label=label, type_name=type_name)
        return m

    one, many = f.LABEL_OPTIONAL, f.LABEL_REPEATED
    tensor = [
        ("name", f.TYPE_STRING, one, None),
        ("data_type", f.TYPE_ENUM, one, ".subset.DataType"),
        ("dims", f.TYPE_INT64, many, None),
    ]
    message("ModelInput", tensor)
    message("ModelOutput", tensor)
    message(
        "ModelDynamicBatching",
        [
            ("preferred_batch_size", f.TYPE_INT32, many, None),
            ("max_queue_delay_microseconds", f.TYPE_UINT64, one, None),
        ],
    )
    group = message("ModelInstanceGroup", [("count", f.TYPE_INT32, one, None)])
    kind = group.enum_type.add(name="Kind")
    for number, name in enumerate(["KIND_AUTO", "KIND_GPU", "KIND_CPU"]):
        kind.value.add(name=name, number=number)
    group.field.add(
        name="kind", number=2, type=f.TYPE_ENUM, label=one,
        type_name=".subset.ModelInstanceGroup.Kind",
    )  # fmt: skip
    message("ModelParameter", [("string_value", f.TYPE_STRING, one, None)])
    config = message(
        "ModelConfig",
        [
            ("name", f.TYPE_STRING, one, None),
            ("backend", f.TYPE_STRING, one, None),
            ("max_batch_size", f.TYPE_INT32, one, None),
            ("input", f.TYPE_MESSAGE, many, ".subset.ModelInput"),
            ("output", f.TYPE_MESSAGE, many, ".subset.ModelOutput"),
            ("dynamic_batching", f.TYPE_MESSAGE, one, ".subset.ModelDynamicBatching"),
            ("instance_group", f.TYPE_MESSAGE, many, ".subset.ModelInstanceGroup"),
            ("parameters", f.TYPE_MESSAGE, many, ".subset.ModelConfig.ParametersEntry"),
        ],
    )
    entry = message(
        "ParametersEntry",
        [
            ("key", f.TYPE_STRING, one, None),
            ("value", f.TYPE_MESSAGE, one, ".subset.ModelParameter"),
        ],
        parent=config,
    )
    entry.options.map_entry = True
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(pool.FindMessageTypeByName("subset.ModelConfig"))
