"""TensorRT engines for the edge graph, on a box with an NVIDIA GPU.

``pip install 'inspection[trt]'`` (TensorRT 10 or later, from NVIDIA's package index,
and a GPU with its driver). ``tensorrt`` is imported only inside :func:`build_engine`, so
this module imports anywhere; ONNX Runtime stays the edge path that runs everywhere.

Precision comes from the ONNX graph, not from builder flags: TensorRT 10 builds
*strongly typed* networks, where every tensor's type follows the graph (the FP16 / INT8
builder flags are deprecated). So ``precision="fp16"`` builds from an FP16 copy of the
graph (:func:`~inspection.export.quantize.convert_fp16`, made here when the graph given
is FP32), and ``precision="int8"`` needs a graph quantised with Q/DQ nodes
(:func:`~inspection.export.quantize.quantize_int8`, calibrated on real parts).

An engine only runs on the GPU model and TensorRT version that built it, and a build
takes minutes, so engines are cached in ``cache_dir`` under a key of the GPU's name,
TensorRT's version, the graph's SHA-256, the precision and the batch range; a timing
cache (``cache_dir/timing.cache``) shortens rebuilds. The build logs its progress.

>>> engine = build_engine("edge.onnx", "/var/cache/inspection/trt", "fp16")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspection.errors import ModelError, UserError

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
TIMING_CACHE = "timing.cache"
NOT_INSTALLED = (
    "TensorRT is not installed: `pip install 'inspection[trt]'` needs NVIDIA's package "
    "index (https://pypi.nvidia.com) and an NVIDIA GPU with its driver; without them, run "
    "the edge graph with ONNX Runtime (`inspection export`, OnnxDetector)"
)


@dataclass(frozen=True)
class EngineKey:
    """What an engine is valid for; its :attr:`digest` names the cached file."""

    gpu: str
    tensorrt: str
    model_sha256: str
    precision: str
    min_batch: int
    opt_batch: int
    max_batch: int

    @property
    def digest(self) -> str:
        text = json.dumps(self.__dict__, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_engine(
    onnx_path: str | Path,
    cache_dir: str | Path,
    precision: str = "fp16",
    *,
    max_batch: int = 8,
    opt_batch: int | None = None,
    workspace_mb: int = 2048,
    rebuild: bool = False,
) -> Path:
    """Build (or reuse from ``cache_dir``) a serialised TensorRT engine for an edge graph.

    Parameters
    ----------
    onnx_path : str | Path
        The edge graph (``inspection export``); its precision must match ``precision``
        (an FP32 graph is converted to FP16 here for ``"fp16"``).
    cache_dir : str | Path
        Where engines, their descriptions (``.json``) and the timing cache live.
    precision : str
        ``"fp32"``, ``"fp16"`` or ``"int8"``.
    max_batch, opt_batch : int
        The optimisation profile of the dynamic batch: ``1 <= opt <= max`` tiles a run
        (``opt`` defaults to ``max_batch``, the detector's tile batch).
    workspace_mb : int
        Builder workspace memory pool limit.
    rebuild : bool
        Ignore a cached engine.

    Returns
    -------
    Path
        ``cache_dir/<stem>-<precision>-<key>.engine``.

    Raises
    ------
    UserError
        TensorRT is not installed, an unknown precision, an ``"int8"`` graph without Q/DQ
        nodes, a graph TensorRT cannot parse (its errors listed).
    ModelError
        A missing graph.
    """
    if precision not in PRECISIONS:
        raise UserError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    opt_batch = opt_batch or max_batch
    if not 1 <= opt_batch <= max_batch:
        raise UserError(f"need 1 <= opt_batch <= max_batch, got {opt_batch} and {max_batch}")
    trt = _import_tensorrt()
    onnx_path, cache_dir = Path(onnx_path), Path(cache_dir)
    if not onnx_path.is_file():
        raise ModelError(f"{onnx_path}: no such ONNX file")
    cache_dir.mkdir(parents=True, exist_ok=True)
    graph = _graph_for(onnx_path, precision, cache_dir)
    key = EngineKey(
        gpu=gpu_name(),
        tensorrt=trt.__version__,
        model_sha256=_digest(graph),
        precision=precision,
        min_batch=1,
        opt_batch=opt_batch,
        max_batch=max_batch,
    )
    engine = cache_dir / f"{onnx_path.stem}-{precision}-{key.digest}.engine"
    if engine.is_file() and not rebuild:
        logger.info("TensorRT engine from the cache: %s", engine)
        return engine
    plan = _build(trt, graph, key, cache_dir, workspace_mb)
    partial = engine.with_name(f".{engine.name}.partial")
    partial.write_bytes(plan)
    partial.replace(engine)  # a reader never sees half an engine
    engine.with_suffix(".json").write_text(
        json.dumps({**key.__dict__, "onnx": str(onnx_path)}, indent=2) + "\n", encoding="utf-8"
    )
    return engine


def _import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise UserError(NOT_INSTALLED) from exc
    return trt


def _graph_for(onnx_path: Path, precision: str, cache_dir: Path) -> Path:
    """The ONNX graph whose types say ``precision`` (strongly typed networks)."""
    import onnx

    proto = onnx.load(str(onnx_path), load_external_data=False)
    ops = {node.op_type for node in proto.graph.node}
    meta = {p.key: p.value for p in proto.metadata_props}
    quantised = "QuantizeLinear" in ops
    if precision == "int8":
        if not quantised:
            raise UserError(
                f"{onnx_path}: no Q/DQ nodes; TensorRT 10 takes INT8 from the graph: quantise "
                "it first (inspection.export.quantize.quantize_int8, calibrated on real parts)"
            )
        return onnx_path
    if quantised:
        raise UserError(f"{onnx_path}: an INT8 (Q/DQ) graph; build it with precision='int8'")
    if precision == "fp16" and meta.get("precision") != "fp16":
        from inspection.export.quantize import convert_fp16

        half = cache_dir / f"{onnx_path.stem}-fp16-{_digest(onnx_path)[:16]}.onnx"
        if not half.is_file():
            logger.info("converting %s to FP16 for TensorRT", onnx_path.name)
            convert_fp16(onnx_path, half, verify=False)
        return half
    if precision == "fp32" and meta.get("precision") == "fp16":
        raise UserError(f"{onnx_path}: an FP16 graph; build it with precision='fp16'")
    return onnx_path


def _build(trt: Any, graph: Path, key: EngineKey, cache_dir: Path, workspace_mb: int) -> bytes:
    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    # Explicit batch is the only mode in TensorRT 10; strongly typed: types from the graph.
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(str(graph)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UserError(f"{graph}: TensorRT cannot parse the graph ({errors})")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        rest = tuple(tensor.shape)[1:]  # (C, S, S) or (n_mels, F): fixed by the export
        profile.set_shape(
            tensor.name,
            (key.min_batch, *rest),
            (key.opt_batch, *rest),
            (key.max_batch, *rest),
        )
    config.add_optimization_profile(profile)
    timing_file = cache_dir / TIMING_CACHE
    timing = config.create_timing_cache(timing_file.read_bytes() if timing_file.is_file() else b"")
    config.set_timing_cache(timing, True)  # another GPU's cache: start afresh
    monitor = _progress_monitor(trt)
    if monitor is not None:
        config.progress_monitor = monitor
    logger.info(
        "building a TensorRT %s engine for %s on %s (TensorRT %s, batch %d-%d): this takes minutes",
        key.precision,
        graph.name,
        key.gpu,
        key.tensorrt,
        key.min_batch,
        key.max_batch,
    )
    start = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise UserError(f"{graph}: TensorRT could not build an engine (see its log above)")
    logger.info("TensorRT engine built in %.0f s", time.perf_counter() - start)
    timing_file.write_bytes(bytes(config.get_timing_cache().serialize()))
    return bytes(plan)


def _progress_monitor(trt: Any) -> Any:
    """An ``IProgressMonitor`` that logs each phase, or ``None`` on a TensorRT without it
    (added in 10.0)."""
    base = getattr(trt, "IProgressMonitor", None)
    if base is None:
        return None

    class _LogProgress(base):
        def __init__(self) -> None:
            base.__init__(self)
            self.steps: dict[str, int] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            self.steps[phase_name] = num_steps
            logger.info("TensorRT: %s (%d steps)", phase_name, num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            total = self.steps.get(phase_name, 0)
            if total >= 10 and (step + 1) % max(1, total // 10) == 0:
                logger.info("TensorRT: %s %d/%d", phase_name, step + 1, total)
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            logger.debug("TensorRT: %s done", phase_name)

    return _LogProgress()


def gpu_name() -> str:
    """The first GPU's name (``nvidia-smi``, else torch), part of the engine cache key."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run(
                [smi, "--query-gpu=name", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out:
            return out.splitlines()[0].strip()
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return "unknown-gpu"


def _digest(path: Path) -> str:
    """The graph's recorded SHA-256 where it has one (checked), else its own."""
    from inspection.export.runtime import recorded_hash, verify_graph
    from inspection.models.card import sha256

    if recorded_hash(path) is not None:
        verify_graph(path)
        return recorded_hash(path) or sha256(path)
    return sha256(path)
