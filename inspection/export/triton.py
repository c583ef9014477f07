"""A Triton Inference Server model repository for the cloud report decoder.

The decoder writes a report by grammar-constrained generation (xgrammar masks every
token that would leave the report's JSON schema), which no ONNX graph expresses, so it
is served through Triton's **Python backend**: ``model.py`` loads the decoder and
answers each batch the way the FastAPI report service does (same standards lookup,
same rules held to the edge's verdict, :func:`inspection.decoder.decoding.decode`, same
cross-check), so either server gives one part the same answer. Triton adds what it is
for: dynamic batching across clients, instance groups, its metrics and model control.

Layout (``write_triton_repository(decoder_dir, out)``)::

    out/report_decoder/
        config.pbtxt            backend "python", inputs FUSED / REQUEST, output REPORT
        1/model.py              TritonPythonModel (calls ReportBackend below)
        1/decoder/              a copy of the decoder (weights' SHA-256 in config.pbtxt)
        1/standards/*.yaml      the standards the reports cite

Inputs per part: ``FUSED`` float16 ``[N, D]`` (the edge's fused tokens) and ``REQUEST``
(``TYPE_STRING``): the part's :class:`~inspection.edge.payload.EdgePayload` JSON without
its ``fused`` field (split ``"fused"``; a ``"tokens"`` payload goes to the FastAPI
service, which runs the fusion). Output: ``REPORT`` (``TYPE_STRING``), the service's
answer JSON (``POST /v1/reports``'s body, ``duplicate`` always false: Triton keeps no
store). Run it with ``tritonserver --model-repository out`` in an image that has
``pip install 'inspection[models,serve]'``.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inspection.errors import ModelError, UserError

logger = logging.getLogger(__name__)

DEFAULT_NAME = "report_decoder"
KINDS = ("KIND_CPU", "KIND_GPU")
FUSED, REQUEST, REPORT = "FUSED", "REQUEST", "REPORT"

MODEL_PY = '''\
"""Triton Python backend model for the inspection report decoder (written by
`inspection export --format triton`; the logic is inspection.export.triton.ReportBackend)."""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from inspection.export.triton import ReportBackend


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        here = Path(__file__).resolve().parent
        device = "cuda" if args.get("model_instance_kind") == "GPU" else "cpu"
        self.backend = ReportBackend(
            here / params["decoder_dir"],
            here / params["standards_dir"],
            device=device,
            decoder_sha256=params.get("decoder_sha256") or None,
        )

    def execute(self, requests):
        fused, texts, sizes = [], [], []
        for request in requests:
            rows = pb_utils.get_input_tensor_by_name(request, "FUSED").as_numpy()
            raw = pb_utils.get_input_tensor_by_name(request, "REQUEST").as_numpy().reshape(-1)
            if len(raw) != len(rows):  # answered below as this request's error
                sizes.append(f"{len(rows)} FUSED rows but {len(raw)} REQUEST rows")
                continue
            fused.extend(rows)
            texts.extend(raw.tolist())
            sizes.append(len(rows))
        answers = self.backend.answer(fused, texts)  # the whole dynamic batch at once
        responses, start = [], 0
        for size in sizes:
            if isinstance(size, str):
                error = pb_utils.TritonError(size)
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
                continue
            chunk = answers[start : start + size]
            start += size
            errors = [a["error"] for a in chunk if a.get("rejected")]
            if errors:  # a malformed part fails its own request, not the batch
                error = pb_utils.TritonError("; ".join(errors))
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
                continue
            out = np.array([[json.dumps(a).encode()] for a in chunk], dtype=np.object_)
            tensor = pb_utils.Tensor("REPORT", out)
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
        return responses

    def finalize(self):
        self.backend = None
'''


@dataclass(frozen=True)
class TritonRepository:
    """What :func:`write_triton_repository` wrote."""

    model_dir: Path
    config: Path
    model_py: Path
    fused_shape: tuple[int, int]


def write_triton_repository(
    decoder_dir: str | Path,
    out: str | Path,
    *,
    name: str = DEFAULT_NAME,
    max_batch: int = 8,
    preferred_batch: Sequence[int] | None = None,
    max_queue_delay_us: int = 5000,
    instances: int = 1,
    kind: str = "KIND_CPU",
    standards: Sequence[str | Path] | None = None,
) -> Path:
    """Write a Triton model repository serving the report decoder (Python backend).

    Parameters
    ----------
    decoder_dir : str | Path
        The decoder's folder (e.g. ``models/default/decoder``); copied into the
        repository, its weights' SHA-256 recorded in ``config.pbtxt`` and checked when
        Triton loads the model.
    out : str | Path
        The repository root (created; an existing ``out/<name>`` is replaced).
    name : str
        The model's name in Triton.
    max_batch : int
        ``max_batch_size``: parts decoded together at most.
    preferred_batch : Sequence[int] | None
        Dynamic batching's preferred sizes (default: ``max_batch`` and half of it).
    max_queue_delay_us : int
        How long the dynamic batcher waits to fill a batch.
    instances, kind : int, str
        The instance group (``KIND_CPU`` or ``KIND_GPU``).
    standards : Sequence[str | Path] | None
        Standard YAML files or folders the reports may cite (default: the shipped ones,
        ``datasets/standards``).

    Returns
    -------
    Path
        ``out/<name>``.

    Raises
    ------
    UserError
        Bad options, or no standard to serve.
    ModelError
        A decoder folder that does not load.
    """
    from inspection.decoder.model import CONFIG_FILE, WEIGHTS_FILE, _read_decoder_json
    from inspection.models.card import sha256

    if kind not in KINDS:
        raise UserError(f"kind must be one of {KINDS}, not {kind!r}")
    if max_batch < 1 or instances < 1 or max_queue_delay_us < 0:
        raise UserError("max_batch and instances must be positive, max_queue_delay_us >= 0")
    preferred = sorted({b for b in (preferred_batch or (max(1, max_batch // 2), max_batch))})
    if any(not 1 <= b <= max_batch for b in preferred):
        raise UserError(f"preferred batch sizes {preferred} must lie in 1..{max_batch}")
    if not name.replace("_", "").replace("-", "").isalnum():
        raise UserError(f"model name {name!r}: letters, digits, '_' and '-' only")
    decoder_dir = Path(decoder_dir)
    if not (decoder_dir / CONFIG_FILE).is_file() or not (decoder_dir / WEIGHTS_FILE).is_file():
        raise ModelError(f"{decoder_dir}: not a report decoder directory (no {CONFIG_FILE})")
    config = _read_decoder_json(decoder_dir / CONFIG_FILE)  # the decoder's own reader
    files = _standard_files(standards)
    model_dir = Path(out) / name
    if model_dir.exists():
        shutil.rmtree(model_dir)
    version = model_dir / "1"
    shutil.copytree(decoder_dir, version / "decoder", ignore=shutil.ignore_patterns("runs"))
    (version / "standards").mkdir()
    for file in files:
        shutil.copy2(file, version / "standards" / file.name)
    shape = (config.fusion.queries, config.fusion.dim)
    text = config_pbtxt(
        name,
        shape,
        max_batch=max_batch,
        preferred=preferred,
        max_queue_delay_us=max_queue_delay_us,
        instances=instances,
        kind=kind,
        parameters={
            "decoder_dir": "decoder",
            "standards_dir": "standards",
            "decoder_sha256": sha256(version / "decoder" / WEIGHTS_FILE),
        },
    )
    (model_dir / "config.pbtxt").write_text(text, encoding="utf-8")
    (version / "model.py").write_text(MODEL_PY, encoding="utf-8")
    logger.info("wrote Triton model %s (%d standards, fused %s)", model_dir, len(files), shape)
    return model_dir


def config_pbtxt(
    name: str,
    fused_shape: tuple[int, int],
    *,
    max_batch: int,
    preferred: Sequence[int],
    max_queue_delay_us: int,
    instances: int,
    kind: str,
    parameters: dict[str, str],
) -> str:
    """The model's ``config.pbtxt`` (protobuf text format of Triton's ``ModelConfig``)."""
    params = "\n".join(
        f'  {{ key: "{k}" value: {{ string_value: "{_escape(v)}" }} }},'
        for k, v in parameters.items()
    ).rstrip(",")
    n, d = fused_shape
    return f"""name: "{name}"
backend: "python"
max_batch_size: {max_batch}
input [
  {{
    name: "{FUSED}"
    data_type: TYPE_FP16
    dims: [ {n}, {d} ]
  }},
  {{
    name: "{REQUEST}"
    data_type: TYPE_STRING
    dims: [ 1 ]
  }}
]
output [
  {{
    name: "{REPORT}"
    data_type: TYPE_STRING
    dims: [ 1 ]
  }}
]
dynamic_batching {{
  preferred_batch_size: [ {", ".join(str(b) for b in preferred)} ]
  max_queue_delay_microseconds: {max_queue_delay_us}
}}
instance_group [
  {{
    count: {instances}
    kind: {kind}
  }}
]
parameters [
{params}
]
"""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _standard_files(standards: Sequence[str | Path] | None) -> list[Path]:
    from inspection.config import get_settings

    sources = [Path(s) for s in standards] if standards else [get_settings().standards_dir]
    files: list[Path] = []
    for source in sources:
        if source.is_dir():
            files += sorted(p for p in source.iterdir() if p.suffix in (".yaml", ".yml"))
        elif source.is_file():
            files.append(source)
        else:
            raise UserError(f"{source}: no such standard file or folder")
    if not files:
        raise UserError(f"no standard files (*.yaml) in {', '.join(map(str, sources))}")
    names = [f.name for f in files]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise UserError(f"two standard files share a name: {clash}")
    return files


class ReportBackend:
    """What ``model.py`` runs: the decoder and standards, answering batches of parts.

    Each answer is the report service's (:func:`inspection.serve.decoding.decode_jobs`
    on jobs prepared as ``POST /v1/reports`` prepares them), with the decoder's version
    and ``duplicate: false``. A part whose request cannot be used (not JSON, not a valid
    payload, an unknown standard, tensors of the wrong shape) gets
    ``{"part_id", "error", "rejected": true}`` and the others are still decoded.

    Parameters
    ----------
    decoder_dir : Path
        The decoder folder.
    standards_dir : Path
        Folder of standard YAML files.
    device : str
        Torch device.
    decoder_sha256 : str | None
        Expected SHA-256 of the decoder's weights (refused when it differs).
    """

    def __init__(
        self,
        decoder_dir: str | Path,
        standards_dir: str | Path,
        *,
        device: str = "cpu",
        decoder_sha256: str | None = None,
    ):
        from inspection.decoder.lora import active_adapter, load_decoder
        from inspection.decoder.model import WEIGHTS_FILE
        from inspection.models.card import check_files, sha256
        from inspection.serve.standards import StandardIndex

        decoder_dir = Path(decoder_dir)
        if decoder_sha256:
            check_files(
                decoder_dir,
                {WEIGHTS_FILE: decoder_sha256},
                "config.pbtxt",
                hint="write the repository again (inspection export --format triton)",
            )
        # The copy has no model manifest of its own: its weights were checked just above.
        self.decoder = load_decoder(decoder_dir, device=device, verify=False).eval()
        self.version = sha256(decoder_dir / WEIGHTS_FILE)[:12]
        adapter = active_adapter(decoder_dir)
        self.adapter = None if adapter in (None, "none") else adapter
        self.standards = StandardIndex([Path(standards_dir)])
        if not self.standards.scan():
            raise UserError(f"{standards_dir}: no standard loads")

    def answer(self, fused: Sequence[np.ndarray], requests: Sequence[str | bytes]) -> list[dict]:
        """One answer per part, in order (see the class docstring)."""
        from inspection.serve.decoding import decode_jobs

        jobs: list[Any] = []
        answers: list[dict | None] = []
        for tokens, text in zip(fused, requests, strict=True):
            try:
                jobs.append(self._job(tokens, text))
                answers.append(None)
            except (UserError, ValueError) as exc:  # pydantic's ValidationError included
                answers.append({"part_id": _part_id(text), "error": str(exc), "rejected": True})
        decoded = iter(decode_jobs(self.decoder, jobs) if jobs else [])
        out = []
        for answer in answers:
            if answer is None:
                answer = {**next(decoded), "decoder_version": self.version}
                answer["adapter"] = self.adapter
            out.append(answer)
        return out

    def _job(self, tokens: np.ndarray, text: str | bytes) -> Any:
        from inspection.edge.payload import EdgePayload, WireTensor
        from inspection.serve.app import Job, held_to_edge
        from inspection.serve.decoding import check_tensors
        from inspection.standards import apply_standard

        data = json.loads(text)
        if not isinstance(data, dict):
            raise UserError("REQUEST must be a JSON object (an edge payload without 'fused')")
        if "fused" in data:
            raise UserError("REQUEST carries 'fused': send the fused tokens as FUSED only")
        data["fused"] = WireTensor.from_array(np.asarray(tokens), "float16").model_dump()
        payload = EdgePayload.model_validate(data)
        check_tensors(self.decoder, payload)
        standard = self.standards.get(payload.standard_id, payload.standard_version)
        if standard is None:
            raise UserError(
                f"unknown standard {payload.standard_id!r} version "
                f"{payload.standard_version!r}; this model has: {self.standards.describe()}"
            )
        result = apply_standard(standard, payload.to_defects(), payload.part_id)
        return Job(payload, standard, held_to_edge(result, payload.verdict, payload.reasons))


def _part_id(text: str | bytes) -> str | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data.get("part_id") if isinstance(data, dict) else None
