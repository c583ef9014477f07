"""INT8 and FP16 variants of the edge graph, and what each costs in accuracy.

:func:`quantize_int8` runs ONNX Runtime's static quantisation (QDQ format) on an
exported edge graph, calibrated on real parts run through the model's own
preprocessing (tiles, log-mel), never on random tensors: activation ranges set on noise
clip the responses a real defect produces. :func:`convert_fp16` stores the graph's
weights and arithmetic in float16 (inputs and outputs stay float32).
:func:`compare_precision` runs a reference and a candidate graph on the same labelled
parts through the line's one decision function (:class:`~inspection.pipeline.Inspector`)
and reports the AUROC change, verdict agreement and latency.

Both writers keep the graph's metadata (model config, patch grid, thresholds), so
:class:`~inspection.export.runtime.OnnxDetector` loads the result like any export, and
record its SHA-256 beside it (``FILE.onnx.sha256``).

>>> quantize_int8("edge.onnx", "edge-int8.onnx", "data/bracket")  # doctest: +SKIP
>>> report = compare_precision("edge.onnx", "edge-int8.onnx", parts, standard)  # doctest: +SKIP
>>> report.auroc_change, report.verdict_agreement  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Any

import numpy as np

from inspection.errors import UserError
from inspection.export.runtime import OnnxDetector, record_hash
from inspection.types import AudioClip, Observation

logger = logging.getLogger(__name__)

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
_FP16_BLOCKED = (
    "Softplus",
    "Log",
    "Exp",
    "TopK",
    "ReduceMax",
    "ReduceMean",
    "Resize",
    "Range",
    "LayerNormalization",
)
# Where the exporter records the torch module each node came from (dynamo export).
_SCOPES = "pkg.torch.onnx.name_scopes"


@dataclass(frozen=True)
class QuantizeOptions:
    """How to quantise (the defaults measured best on the shipped model: see
    ``benchmarks/README.md``, "Edge precision").

    Attributes
    ----------
    per_channel : bool
        One scale per output channel of each weight (conv filters differ in range).
    reduce_range : bool
        7-bit weights. On by default: with uint8 activations and full 8-bit weights, x86
        CPUs without VNNI (AVX2's ``VPMADDUBSW``) saturate their 16-bit sums, and the
        shipped model's image AUROC fell from 0.985 to 0.49 (measured).
    method : str
        Activation range calibration: ``"minmax"``, ``"entropy"`` or ``"percentile"``.
    percentile : float
        The percentile kept by ``method="percentile"``.
    activations : str
        ``"uint8"`` (asymmetric: U8S8, the fast integer path of x86 CPUs with AVX2 but
        no VNNI) or ``"int8"`` (S8S8, ONNX Runtime's default for QDQ).
    op_types : tuple[str, ...] | None
        Operator types to quantise; ``None``: every type ONNX Runtime can. The default,
        the convolutions and matrix products, holds the time; quantising the rest
        (attention's softmax inputs, norms, adds) adds Q/DQ pairs that cost more than
        they save, and error.
    exclude_modules : tuple[str, ...]
        Torch module paths (e.g. ``"model.seg_head"``) whose nodes stay float: the
        exporter records each node's module, so a sensitive part (the first conv, a
        head) can be kept float by name.
    exclude_nodes : tuple[str, ...]
        ONNX node names that stay float.
    max_parts : int
        Calibration parts read at most (good and defective interleaved when a folder
        is given).
    batch_size : int
        Tiles per calibration run.
    """

    per_channel: bool = True
    reduce_range: bool = True
    method: str = "minmax"
    percentile: float = 99.999
    activations: str = "uint8"
    op_types: tuple[str, ...] | None = ("Conv", "MatMul", "Gemm")
    exclude_modules: tuple[str, ...] = ()
    exclude_nodes: tuple[str, ...] = ()
    max_parts: int = 64
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise UserError(
                f"unknown calibration method {self.method!r}; use one of {CALIBRATION_METHODS}"
            )
        if self.activations not in ("uint8", "int8"):
            raise UserError(f"activations must be 'uint8' or 'int8', not {self.activations!r}")
        if self.max_parts < 1 or self.batch_size < 1:
            raise UserError("max_parts and batch_size must be positive")


CalibrationItem = np.ndarray | Observation | tuple[np.ndarray, AudioClip | None]
"""One calibration part: an image ``(H, W[, C])`` as read (``inspection.io.read_image``),
already preprocessed tiles ``(T, C, S, S)`` / ``(C, S, S)``, an
:class:`~inspection.types.Observation` (its frames and tap-test audio), or an
``(image, audio)`` pair."""


@dataclass(frozen=True)
class PrecisionReport:
    """How a candidate graph (INT8 / FP16) compares with its reference (FP32) on the
    same labelled parts, each decided by :class:`~inspection.pipeline.Inspector`.

    Attributes
    ----------
    reference, candidate : str
        What was compared (file names or detector names).
    parts, defective : int
        Parts run, and how many of them are defective.
    auroc_reference, auroc_candidate : float | None
        Image AUROC of the part score (``None`` when the parts hold one label only).
    auroc_change : float | None
        ``auroc_candidate - auroc_reference``.
    verdict_agreement : float
        Share of parts whose verdict (PASS / REJECT / REVIEW) is the same.
    max_score_diff : float
        Largest ``|candidate - reference|`` part score over the parts.
    p50_ms_reference, p50_ms_candidate : float
        Median time of one part's verdict (detect + measure + rules).
    p99_ms_reference, p99_ms_candidate : float
        The 99th percentile of the same.
    parts_per_s_reference, parts_per_s_candidate : float
        Throughput: parts decided one after another, per second.
    disagreements : tuple[str, ...]
        ``part_id: REF -> CAND`` for each part whose verdict changed.
    """

    reference: str
    candidate: str
    parts: int
    defective: int
    auroc_reference: float | None
    auroc_candidate: float | None
    auroc_change: float | None
    verdict_agreement: float
    max_score_diff: float
    p50_ms_reference: float
    p50_ms_candidate: float
    p99_ms_reference: float
    p99_ms_candidate: float
    parts_per_s_reference: float
    parts_per_s_candidate: float
    disagreements: tuple[str, ...] = field(default=())

    @property
    def speedup(self) -> float:
        """``p50_ms_reference / p50_ms_candidate`` (above 1: the candidate is faster)."""
        return self.p50_ms_reference / self.p50_ms_candidate


# --------------------------------------------------------------------------- INT8


def quantize_int8(
    graph: str | Path,
    out: str | Path,
    calibration: str | Path | Iterable[CalibrationItem],
    options: QuantizeOptions | None = None,
    *,
    verify: bool = True,
) -> Path:
    """Static INT8 (QDQ) quantisation of an exported edge graph, calibrated on real parts.

    Parameters
    ----------
    graph : str | Path
        The float32 ``.onnx`` written by :func:`~inspection.export.onnx.export_onnx`.
    out : str | Path
        Where to write the INT8 graph (parent folders are created); its SHA-256 goes to
        ``out.sha256`` beside it.
    calibration : str | Path | Iterable
        Real parts, good and defective: a dataset folder (MVTec, folder-per-class or
        manifest, as ``inspection datasets check`` reads it; every split is used), or an
        iterable of :data:`CalibrationItem` (images, preprocessed tiles, observations).
        Each goes through the model's own preprocessing (tiles) and log-mel front end.
    options : QuantizeOptions | None
        Calibration method, per-channel, excluded modules... (defaults when ``None``).
    verify : bool
        Check ``graph`` against its recorded SHA-256 first.

    Returns
    -------
    Path
        ``out``. Its metadata is the source's plus ``precision: int8`` and
        ``quantization`` (the options, calibration counts, the source's SHA-256).

    Raises
    ------
    UserError
        An empty calibration set, an unreadable calibration folder or item, a module
        to exclude that the graph does not have.
    ModelError
        ``graph`` is missing, modified or not an edge graph.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    options = options or QuantizeOptions()
    graph, out = Path(graph), Path(out)
    detector = OnnxDetector(graph, verify=verify)
    reader = _CalibrationReader(detector, _calibration_items(calibration, options.max_parts))
    reader.prepare(options.batch_size)  # reads every part now: an empty set fails here
    out.parent.mkdir(parents=True, exist_ok=True)
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    activations = QuantType.QUInt8 if options.activations == "uint8" else QuantType.QInt8
    with tempfile.TemporaryDirectory(prefix="quantize-") as tmp:
        source = _pre_process(graph, Path(tmp) / "pre.onnx")
        excluded = _present(source, set(options.exclude_nodes) | _module_nodes(graph, options))
        logger.info(
            "quantising %s: %d calibration parts (%d defective), %d batches, %s, %d float nodes",
            graph.name,
            reader.parts,
            reader.defective,
            len(reader.batches),
            options.method,
            len(excluded),
        )
        start = time.perf_counter()
        partial = Path(tmp) / "int8.onnx"
        with _quiet_rank_one_warnings():
            quantize_static(
                str(source),
                str(partial),
                reader,
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(options.op_types) if options.op_types else None,
                per_channel=options.per_channel,
                reduce_range=options.reduce_range,
                activation_type=activations,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=excluded or None,
                calibrate_method=methods[options.method],
                extra_options=_extra_options(options),
            )
        logger.info("quantised in %.1f s", time.perf_counter() - start)
        facts = {
            **asdict(options),
            "calibration_parts": reader.parts,
            "calibration_defective": reader.defective,
            "calibration_tiles": reader.tiles,
            "nodes_excluded": excluded,
            "source_sha256": _source_digest(graph),
        }
        _write_with_metadata(partial, out, graph, {"precision": "int8", "quantization": facts})
    return out


class _CalibrationReader:
    """ONNX Runtime's ``CalibrationDataReader`` over real parts (see :func:`quantize_int8`).

    Defined by duck typing (``get_next`` / ``rewind``) so that this module imports
    without ``onnxruntime.quantization`` until it quantises.
    """

    def __init__(self, detector: OnnxDetector, items: Iterable[CalibrationItem]):
        self.detector = detector
        self.items = items
        self.batches: list[dict[str, np.ndarray]] = []
        self.parts = self.defective = self.tiles = 0
        self._index = 0

    def prepare(self, batch_size: int) -> None:
        tiles, mels, frames = [], [], []
        for item in self.items:
            images, mel, defective, frame = self._inputs(item)
            self.parts += 1
            self.defective += int(bool(defective))
            tiles.append(images)
            mels.extend([mel] * len(images))
            frames.extend([frame] * len(images))
        if not self.parts:
            raise UserError(
                "calibration set is empty: give a folder of real parts (good and "
                "defective images) or a non-empty list of images / observations"
            )
        images = np.concatenate(tiles)
        self.tiles = len(images)
        for i in range(0, len(images), batch_size):
            feeds = {"image": np.ascontiguousarray(images[i : i + batch_size])}
            if "frame_shape" in self.detector.inputs:
                feeds["frame_shape"] = np.asarray(frames[i : i + batch_size], np.float32)
            if self.detector.with_audio:
                feeds["mel"] = np.stack(
                    [
                        self.detector._mel_batch(m, 1)[0]  # the runtime's own audio fitting
                        for m in mels[i : i + batch_size]
                    ]
                )
            self.batches.append(feeds)

    def _inputs(self, item: Any) -> tuple[np.ndarray, np.ndarray | None, bool | None, tuple]:
        """``(tiles (T, C, S, S), log-mel (n_mels, F) or None, defective or None, the
        frame's (height, width))``."""
        from inspection.models.audio import audio_windows
        from inspection.models.preprocess import frame_size, preprocess

        defective = None
        if isinstance(item, _Labelled):
            item, defective = item.item, item.defective
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], bool | np.bool_):
            item, defective = item  # (part, defective), as compare_precision takes them
        audio = None
        if isinstance(item, Observation):
            if not item.frames:
                raise UserError(f"calibration part {item.part_id!r} has no frames")
            image, audio = item.frames[0].image, item.audio
        elif isinstance(item, tuple) and len(item) == 2:
            image, audio = item
        else:
            image = item
        image = np.asarray(image)
        config = self.detector.config
        size = (config.in_chans, config.image_size, config.image_size)
        frame = (config.image_size, config.image_size)  # model inputs given: their own size
        if image.shape[-3:] == size and image.ndim in (3, 4):
            tiles = image.reshape(-1, *size).astype(np.float32)  # already model inputs
        else:
            options = self.detector.preprocess_options
            cut = preprocess(image, options)
            tiles, frame = cut.images, frame_size(cut.layout.image_shape, options)
        mel = None
        if audio is not None and self.detector.with_audio:
            mel = audio_windows(audio, config.n_mels, config.n_audio_frames)[0]
        return tiles, mel, defective, frame

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._index >= len(self.batches):
            return None
        self._index += 1
        return self.batches[self._index - 1]

    def rewind(self) -> None:
        self._index = 0

    def set_range(self, start_index: int, end_index: int) -> None:
        self.batches = self.batches[start_index:end_index]


@dataclass(frozen=True)
class _Labelled:
    item: Any
    defective: bool


def _calibration_items(
    calibration: str | Path | Iterable[CalibrationItem], max_parts: int
) -> Iterator[Any]:
    """Up to ``max_parts`` items; a folder's good and defective parts interleaved."""
    if isinstance(calibration, str | Path):
        items: Iterable[Any] = _folder_parts(Path(calibration))
    elif isinstance(calibration, np.ndarray):
        raise UserError(
            "calibration: give a list of images or observations (or a folder), not one array"
        )
    else:
        items = calibration
    for n, item in enumerate(items):
        if n >= max_parts:
            return
        yield item


def calibration_samples(folder: Path) -> list:
    """The samples of a calibration folder (a dataset), listed without reading an image:
    the export checks ``--calibration-data`` with it before minutes of work.

    Raises
    ------
    UserError
        When the folder is missing or is not a dataset.
    """
    from inspection.datasets import DatasetError, load_dataset

    if not folder.is_dir():
        raise UserError(f"{folder}: calibration folder not found")
    try:
        return load_dataset(folder).samples
    except DatasetError as exc:
        raise UserError(f"{folder}: not a dataset to calibrate on ({exc})") from exc


def _folder_parts(folder: Path) -> Iterator[_Labelled]:
    """A dataset folder's parts (images with their audio), good and defective taking
    turns so that a ``max_parts`` cut keeps both."""
    from inspection.io import read_audio, read_image

    samples = calibration_samples(folder)
    good = [s for s in samples if s.is_good]
    bad = [s for s in samples if not s.is_good]
    for pair in zip_longest(good, bad):
        for sample in pair:
            if sample is None:
                continue
            audio = read_audio(sample.audio) if sample.audio is not None else None
            yield _Labelled((read_image(sample.image), audio), not sample.is_good)


def _pre_process(graph: Path, out: Path) -> Path:
    """ONNX Runtime's recommended pre-processing (graph optimisation, ONNX shape
    inference), which helps the quantiser find fusable patterns; on failure the graph is
    quantised as exported.

    Symbolic shape inference is skipped: it fails on the exporter's dynamic-batch
    ``Concat`` of shapes (measured), and ONNX's own inference is enough here.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(graph), str(out), skip_symbolic_shape=True)
    except Exception as exc:  # an optimisation that fails is not worth failing the export
        logger.warning("quantisation pre-processing skipped (%s: %s)", type(exc).__name__, exc)
        return graph
    return out


def _module_nodes(graph: Path, options: QuantizeOptions) -> set[str]:
    """Names of the nodes that came from ``options.exclude_modules``."""
    if not options.exclude_modules:
        return set()
    import onnx

    proto = onnx.load(str(graph), load_external_data=False)
    found: dict[str, set[str]] = {m: set() for m in options.exclude_modules}
    for node in proto.graph.node:
        scopes = next((p.value for p in node.metadata_props if p.key == _SCOPES), "")
        for module in options.exclude_modules:
            # the scope list holds each enclosing module's full path, quoted
            if f"'{module}'" in scopes or f"'{module}." in scopes:
                found[module].add(node.name)
    missing = [m for m, nodes in found.items() if not nodes]
    if missing:
        raise UserError(
            f"{graph}: no nodes from module(s) {missing} (module paths look like "
            "'model.seg_head' or 'model.image_encoder.tower.conv1')"
        )
    return set().union(*found.values())


def _present(graph: Path, names: set[str]) -> list[str]:
    """The ``names`` the (pre-processed) graph has; a missing one (fused away by the
    optimiser) is logged: its node cannot be kept float by name."""
    if not names:
        return []
    import onnx

    have = {node.name for node in onnx.load(str(graph), load_external_data=False).graph.node}
    missing = sorted(names - have)
    if missing:
        logger.warning("nodes not in the optimised graph, not excluded: %s", missing)
    return sorted(names & have)


class _RankOneFilter(logging.Filter):
    """Drops ONNX Runtime's per-channel warning for rank-1 weights (LayerNorm scales,
    biases): one root-logger line per weight, and nothing to act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "is out-of-range for weight" not in record.getMessage()


@contextlib.contextmanager
def _quiet_rank_one_warnings() -> Iterator[None]:
    root = logging.getLogger()
    quiet = _RankOneFilter()
    root.addFilter(quiet)
    try:
        yield
    finally:
        root.removeFilter(quiet)


def _extra_options(options: QuantizeOptions) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if options.method == "percentile":
        extra["CalibPercentile"] = options.percentile
    return extra


# --------------------------------------------------------------------------- FP16


def convert_fp16(graph: str | Path, out: str | Path, *, verify: bool = True) -> Path:
    """An FP16 copy of the edge graph: weights and arithmetic in float16, inputs and
    outputs float32 (``keep_io_types``), so callers feed and read it as before.

    ONNX Runtime's CPU provider has few float16 kernels: it inserts casts around the
    rest and runs them in float32, so on a CPU the copy is usually slower, not faster
    (``benchmarks/edge_precision.py`` measures it); it is meant for GPUs (CUDA, TensorRT).

    Parameters
    ----------
    graph : str | Path
        The float32 ``.onnx`` edge graph.
    out : str | Path
        Where to write the FP16 graph; its SHA-256 goes beside it.
    verify : bool
        Check ``graph`` against its recorded SHA-256 first.

    Returns
    -------
    Path
        ``out``, with the source's metadata plus ``precision: fp16``.
    """
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    graph, out = Path(graph), Path(out)
    OnnxDetector(graph, verify=verify)  # refuses a missing, modified or foreign graph
    proto = onnx.load(str(graph))
    # Ops whose float16 result drifts (reductions, exp/log of logits, top-k of scores)
    # stay float32; so does LayerNormalization: with it in float16, ONNX Runtime 1.32's
    # CPU session crashed (segmentation fault) while optimising the graph (measured).
    blocked = [*_FP16_BLOCKED]
    half = convert_float_to_float16(proto, keep_io_types=True, op_block_list=blocked)
    with tempfile.TemporaryDirectory(prefix="fp16-") as tmp:
        partial = Path(tmp) / "fp16.onnx"
        onnx.save(half, str(partial))
        _write_with_metadata(partial, out, graph, {"precision": "fp16"})
    return out


# --------------------------------------------------------------------------- shared


def _write_with_metadata(partial: Path, out: Path, source: Path, added: dict[str, Any]) -> None:
    """Write ``partial`` to ``out`` with ``source``'s metadata plus ``added`` (JSON
    values), then record its SHA-256."""
    import onnx

    proto = onnx.load(str(partial))
    meta = {p.key: p.value for p in onnx.load(str(source), load_external_data=False).metadata_props}
    meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in added.items()})
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(out))
    record_hash(out)
    logger.info("wrote %s (%.1f MB)", out, out.stat().st_size / 1e6)


def _source_digest(graph: Path) -> str:
    from inspection.models.card import sha256

    return sha256(graph)


# --------------------------------------------------------------------------- comparison


@dataclass(frozen=True)
class _Run:
    scores: list[float]
    verdicts: list[str]
    ms: list[float]


def compare_precision(
    reference: str | Path | Any,
    candidate: str | Path | Any,
    parts: Sequence[tuple[Observation, bool]],
    standard: Any | None = None,
    *,
    thresholds: Any | None = None,
    threads: int | None = None,
    warmup: int = 1,
) -> PrecisionReport:
    """Compare two detectors (e.g. the FP32 and INT8 graphs) on the same labelled parts.

    Each part is inspected by both, interleaved (so the machine's noise hits both
    alike), through :class:`~inspection.pipeline.Inspector` with the same thresholds and
    standard: the verdicts compared are the line's.

    Parameters
    ----------
    reference, candidate
        ``.onnx`` paths (loaded as :class:`OnnxDetector`) or detectors.
    parts : Sequence[tuple[Observation, bool]]
        Each part with whether it is defective (ground truth, for the AUROC).
    standard : Standard | None
        The product's defect standard; ``None``: the shipped standard of the parts'
        product (``Observation.product``).
    thresholds : Thresholds | None
        Those the line uses; ``None``: the reference's (``thresholds_of`` its metadata).
    threads : int | None
        Intra-op threads of detectors loaded from paths.
    warmup : int
        Parts run first on each, untimed and uncounted (first-run allocations).

    Returns
    -------
    PrecisionReport

    Raises
    ------
    UserError
        No parts.
    """
    reports = compare_detectors(
        reference,
        {_name(candidate): candidate},
        parts,
        standard,
        thresholds=thresholds,
        threads=threads,
        warmup=warmup,
    )
    return next(iter(reports.values()))


def compare_detectors(
    reference: str | Path | Any,
    candidates: dict[str, str | Path | Any],
    parts: Sequence[tuple[Observation, bool]],
    standard: Any | None = None,
    *,
    thresholds: Any | None = None,
    threads: int | None = None,
    warmup: int = 1,
) -> dict[str, PrecisionReport]:
    """:func:`compare_precision` for several candidates at once, all interleaved part by
    part with the reference (what ``benchmarks/edge_precision.py`` runs).

    Returns
    -------
    dict[str, PrecisionReport]
        One report per candidate name, each against ``reference``.
    """
    from inspection.pipeline import Inspector, thresholds_of

    parts = list(parts)
    if not parts:
        raise UserError("compare_precision needs at least one labelled part")
    if not candidates:
        raise UserError("compare_precision needs at least one candidate")
    standard = standard or _product_standard(parts)
    detectors = [_detector(d, threads) for d in (reference, *candidates.values())]
    thresholds = thresholds or thresholds_of(detectors[0].metadata)
    inspectors = [Inspector(d, standard, thresholds) for d in detectors]
    for observation, _ in parts[:warmup]:
        for inspector in inspectors:
            inspector.inspect(observation)
    runs = [_Run([], [], []) for _ in inspectors]
    for observation, _ in parts:
        for inspector, run in zip(inspectors, runs, strict=True):
            start = time.perf_counter()
            result = inspector.inspect(observation)
            run.ms.append((time.perf_counter() - start) * 1000)
            run.scores.append(float(result.scores.get("part", float("nan"))))
            run.verdicts.append(result.verdict.value)
    labels = [bool(defective) for _, defective in parts]
    names = [_name(reference), *candidates]
    return {
        name: _report(names[0], name, parts, labels, runs[0], run)
        for name, run in zip(names[1:], runs[1:], strict=True)
    }


def _report(
    reference: str,
    candidate: str,
    parts: list[tuple[Observation, bool]],
    labels: list[bool],
    ref: _Run,
    cand: _Run,
) -> PrecisionReport:
    auroc = [_auroc(labels, run.scores) for run in (ref, cand)]
    changed = tuple(
        f"{obs.part_id}: {a} -> {b}"
        for (obs, _), a, b in zip(parts, ref.verdicts, cand.verdicts, strict=True)
        if a != b
    )
    diff = np.abs(np.subtract(cand.scores, ref.scores))
    return PrecisionReport(
        reference=reference,
        candidate=candidate,
        parts=len(parts),
        defective=sum(labels),
        auroc_reference=auroc[0],
        auroc_candidate=auroc[1],
        auroc_change=None if None in auroc else auroc[1] - auroc[0],
        verdict_agreement=1.0 - len(changed) / len(parts),
        # a part one side could not score (NaN: REVIEW) counts as the largest difference
        max_score_diff=float(np.max(np.nan_to_num(diff, nan=np.inf))),
        p50_ms_reference=float(np.median(ref.ms)),
        p50_ms_candidate=float(np.median(cand.ms)),
        p99_ms_reference=float(np.percentile(ref.ms, 99)),
        p99_ms_candidate=float(np.percentile(cand.ms, 99)),
        parts_per_s_reference=1000.0 * len(ref.ms) / float(np.sum(ref.ms)),
        parts_per_s_candidate=1000.0 * len(cand.ms) / float(np.sum(cand.ms)),
        disagreements=changed,
    )


def _product_standard(parts: list[tuple[Observation, bool]]) -> Any:
    from inspection.config import standard_path
    from inspection.standards import load_standard

    products = {obs.product for obs, _ in parts}
    if len(products) != 1 or None in products:
        raise UserError(
            f"give the standard: the parts' products are {sorted(map(str, products))}, "
            "not one known product"
        )
    return load_standard(standard_path(products.pop()))


def _detector(detector: str | Path | Any, threads: int | None) -> Any:
    if isinstance(detector, str | Path):
        return OnnxDetector(detector, threads=threads)
    return detector


def _name(detector: str | Path | Any) -> str:
    if isinstance(detector, str | Path):
        return Path(detector).name
    path = getattr(detector, "path", None)
    return Path(path).name if path is not None else type(detector).__name__


def _auroc(labels: list[bool], scores: list[float]) -> float | None:
    """Image AUROC; a part that could not be scored (NaN, sent to REVIEW) ranks as the
    most anomalous, as the line treats it."""
    from inspection.metrics import image_auroc

    values = np.asarray(scores, dtype=np.float64)
    finite = values[np.isfinite(values)]
    worst = (finite.max() + 1.0) if finite.size else 1.0
    value = image_auroc(labels, np.where(np.isfinite(values), values, worst).tolist())
    return None if value is None else float(value)
