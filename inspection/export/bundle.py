"""Write an edge bundle: everything an edge box needs, checked before it is written.

:func:`export_bundle` exports the edge graph (``edge.onnx``, checked against torch on
random inputs) and the report decoder's fusion resampler (``fusion.onnx``, checked on
real detections), copies the standard of each product the model serves, runs the torch
model and the ONNX graphs side by side over held-out parts (verdicts identical, scores
within tolerance), keeps a few of those parts as the bundle's self-test, and writes
``manifest.json`` (SHA-256 of every file, versions, classes, thresholds, split, payload
bytes per split), signed with an Ed25519 key when one is given. All of it is written
into a staging folder beside ``out`` and renamed into place only once every check
passed: a failed export leaves nothing behind, and an existing ``out`` survives it.

The reader is torch-free: :func:`inspection.edge.bundle.load_bundle`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from inspection.edge.bundle import (
    BUNDLE_FORMAT,
    EDGE_GRAPH,
    FUSION_GRAPH,
    MANIFEST,
    MANIFEST_HASH,
    NORMALITY_GRAPH,
    SELFTEST,
    SELFTEST_FORMAT,
    SIGNATURE,
    SPLITS,
    load_bundle,
)
from inspection.errors import ModelError, UserError
from inspection.export.onnx import PARITY_TOLERANCE, ParityReport, check_parity, export_onnx
from inspection.export.runtime import OnnxDetector, hash_file, record_hash
from inspection.models.card import sha256
from inspection.models.fusion import heads_part, read_second_look
from inspection.types import Frame, InspectionResult, Observation

HOLDOUT_SEED = 7  # the held-out seed of `make model` (see models/default/MODEL_CARD.md)
HOLDOUT_PARTS = 3  # per product: enough for PASS and REJECT, seconds on the small model
HOLDOUT_SIZE = 256  # `inspection synth`'s default image side
SELFTEST_PARTS = 4
# Largest |onnx - torch| accepted on a held-out part's scores (probabilities).
SCORE_TOLERANCE = PARITY_TOLERANCE


@dataclass(frozen=True)
class HoldoutPart:
    """One held-out part decided by torch and by the bundle's graph."""

    part_id: str
    product: str
    standard_id: str
    torch: InspectionResult
    onnx: InspectionResult

    @property
    def score_diff(self) -> float:
        keys = set(self.torch.scores) | set(self.onnx.scores)
        return max(
            (
                abs(self.torch.scores.get(k, np.inf) - self.onnx.scores.get(k, -np.inf))
                for k in keys
            ),
            default=0.0,
        )


@dataclass(frozen=True)
class HoldoutParity:
    """Torch and ONNX over the held-out parts: verdicts must agree, scores be close.

    Attributes
    ----------
    parts : list[HoldoutPart]
        Every part decided, under its product's standard.
    tolerance : float
        Largest score difference accepted.
    """

    parts: list[HoldoutPart]
    tolerance: float = SCORE_TOLERANCE

    @property
    def max_score_diff(self) -> float:
        return max((p.score_diff for p in self.parts), default=0.0)

    @property
    def drifted(self) -> list[HoldoutPart]:
        return [
            p
            for p in self.parts
            if p.torch.verdict != p.onnx.verdict or not p.score_diff <= self.tolerance
        ]

    @property
    def ok(self) -> bool:
        return not self.drifted

    def summary(self) -> dict[str, Any]:
        verdicts: dict[str, int] = {}
        for p in self.parts:
            verdicts[str(p.torch.verdict)] = verdicts.get(str(p.torch.verdict), 0) + 1
        return {
            "parts": len(self.parts),
            "verdicts_identical": sum(p.torch.verdict == p.onnx.verdict for p in self.parts),
            "verdicts": verdicts,
            "max_score_diff": self.max_score_diff,
            "tolerance": self.tolerance,
        }


@dataclass(frozen=True)
class BundleExport:
    """What :func:`export_bundle` wrote and checked.

    Attributes
    ----------
    out : Path
        The bundle folder.
    manifest : dict
        Its ``manifest.json``.
    parity : ParityReport
        The edge graph against torch on random inputs (every output).
    fusion_parity : FusionParity | None
        ``fusion.onnx`` against the torch resampler on the held-out detections.
    holdout : HoldoutParity
        Verdicts and scores of torch and the bundle's graph on held-out parts.
    signed_by : str | None
        The signing key's fingerprint.
    seconds : float
    """

    out: Path
    manifest: dict[str, Any]
    parity: ParityReport
    fusion_parity: Any
    holdout: HoldoutParity
    signed_by: str | None
    seconds: float


@dataclass(frozen=True)
class _Part:
    observation: Observation
    product: str | None  # None: decide under every standard of the bundle


def holdout_parts(
    product: str, n: int = HOLDOUT_PARTS, seed: int = HOLDOUT_SEED, size: int = HOLDOUT_SIZE
) -> list[tuple[Observation, Any]]:
    """``n`` synthetic parts of ``product`` from the held-out seed, good and defective
    alternating, as observations with their ground truth (``SynthPart``)."""
    from inspection.capture.simulator import SimulatedLine

    line = SimulatedLine(product, n=n, seed=seed, defect_rate=0.5, size=size)
    return list(line.parts())


def export_bundle(
    model_dir: str | Path,
    out: str | Path,
    *,
    decoder_dir: str | Path | None = None,
    standards: Sequence[str | Path] | None = None,
    split: str = "fused",
    sign_key: str | Path | None = None,
    holdout: str | Path | None = None,
    int8: bool = False,
    calibration_data: str | Path | None = None,
    holdout_size: int = HOLDOUT_SIZE,
    verify: bool = True,
    with_audio: bool = True,
    normality_dir: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> BundleExport:
    """Export the model in ``model_dir`` as an edge bundle in ``out``.

    Parameters
    ----------
    model_dir : str | Path
        Detection model directory.
    out : str | Path
        The bundle folder; replaced only once the new bundle passed every check.
    decoder_dir : str | Path | None
        The report decoder whose fusion resampler goes into ``fusion.onnx``; default
        ``model_dir/decoder`` when present. Without one, only split ``tokens`` works.
    standards : Sequence[str | Path] | None
        Standard files or product names (``datasets/standards/<product>.yaml``). Default:
        the shipped standards of the products the model serves (its metadata's
        ``products``, else the ``product`` of its training data, else every shipped one).
    split : str
        The default split point: ``"fused"`` (fused tokens, a few KB a part) or
        ``"tokens"`` (raw patch tokens and maps).
    sign_key : str | Path | None
        Ed25519 private key (PEM) to sign ``manifest.json`` with (``manifest.sig``).
    holdout : str | Path | None
        A folder of part images to check parity on, decided under each standard;
        default :data:`HOLDOUT_PARTS` synthetic parts of each product (seed 7).
    int8 : bool
        Ship the static INT8 graph (``inspection.export.quantize.quantize_int8``,
        calibrated on ``calibration_data``); torch is compared with the FP32 graph, and
        the self-test records what the INT8 graph decides.
    calibration_data : str | Path | None
        Real parts (a dataset folder) for INT8 calibration.
    holdout_size : int
        Image side of the default synthetic held-out parts.
    verify : bool
        Check the model's (and decoder's) files against their recorded SHA-256 first.
    with_audio : bool
        Include the audio branch in the edge graph (when the model has one).
    normality_dir : str | Path | None
        A feature normality model of the product (``inspection train --normal-only``),
        exported to ``normality.onnx`` (parity checked) and fused with the edge graph on
        the box (:class:`~inspection.models.fusion.FusedDetector`): the held-out parity
        and the self-test are then the fused detector's. A second-look level kept beside
        it for this model (:func:`~inspection.models.fusion.read_second_look`) goes into
        the manifest and the box uses it.
    log : Callable[[str], None] | None
        Called with a line per step (progress).

    Returns
    -------
    BundleExport

    Raises
    ------
    UserError
        Bad options: an unknown split or standard, a missing key or holdout folder,
        split ``fused`` without a decoder, INT8 without calibration data.
    ModelError
        A check that failed (edge graph or fusion parity, a held-out part whose verdict
        or scores drifted, named); nothing is written then.
    """
    from inspection.models import load_model

    start = time.perf_counter()
    say = log or (lambda _line: None)
    model_dir, out = Path(model_dir), Path(out)
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    if sign_key is not None:
        from inspection.edge.keys import _load_private

        _load_private(Path(sign_key))  # a bad key fails now, not after minutes of export
    if int8 and calibration_data is None:
        raise UserError("--int8 needs --calibration-data DIR (real good and defective parts)")
    if holdout is not None and not Path(holdout).is_dir():
        raise UserError(f"{holdout}: no such held-out folder")
    model = load_model(model_dir, verify=verify)
    normality = _load_normality(model, normality_dir, verify)
    decoder = _load_decoder(model_dir, decoder_dir, split, verify)
    chosen = _resolve_standards(model.metadata, standards)
    if normality is not None:
        _check_one_product(normality, chosen)
    hears = with_audio and not model.config.is_normality
    parts = _held_out(holdout, chosen, holdout_size, hears)
    staging = out.with_name(f".{out.name}.partial")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        say(f"exporting the edge graph of {model_dir}")
        edge = staging / EDGE_GRAPH
        export_onnx(model, edge, with_audio=hears)
        parity = check_parity(model, edge)
        if not parity.ok:
            worst = max(parity.max_abs_diff, key=parity.max_abs_diff.get)
            raise ModelError(
                f"{EDGE_GRAPH}: exported graph differs from the model: |{worst}| off by "
                f"{parity.worst:.2e} (tolerance {parity.tolerance:.0e}); {out} not written"
            )
        normality_parity = None
        if normality is not None:
            say(f"exporting the normality graph of {normality_dir}")
            normality_parity = _export_normality(normality, staging / NORMALITY_GRAPH, out)
        fused = None
        if normality is not None:
            # the level set for these heads on the product (demo: product_second_look)
            second_look = read_second_look(Path(normality_dir), model.model_version or "")
            fused = (normality, staging / NORMALITY_GRAPH, second_look)
        standard_files = _copy_standards(chosen, staging)
        say(f"deciding {len(parts)} held-out parts with torch and ONNX Runtime")
        holdout_result, detections = _holdout_parity(model, edge, parts, chosen, fused)
        if not holdout_result.ok:
            raise ModelError(_drift_message(holdout_result, out))
        shipped = holdout_result
        precision = "fp32"
        if int8:
            say(f"quantising the edge graph to INT8 on {calibration_data}")
            shipped = _quantize(model, edge, calibration_data, parts, chosen, fused)
            precision = "int8"
        fusion_parity = None
        if decoder is not None:
            say("exporting the fusion resampler")
            fusion_parity = _export_fusion(decoder, staging / FUSION_GRAPH, detections)
        _write_selftest(staging, shipped, parts, hears)
        manifest = _manifest(
            model,
            decoder,
            staging,
            split,
            chosen,
            standard_files,
            parity,
            fusion_parity,
            holdout_result,
            shipped if int8 else None,
            precision,
            detections,
            fused,
            normality_parity,
        )
        signed_by = _write_manifest(staging, manifest, sign_key)
        load_bundle(staging)  # the torch-free reader accepts what was written
        _move_into_place(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    say(f"bundle written to {out}")
    return BundleExport(
        out=out,
        manifest=manifest,
        parity=parity,
        fusion_parity=fusion_parity,
        holdout=holdout_result,
        signed_by=signed_by,
        seconds=time.perf_counter() - start,
    )


# -- inputs -------------------------------------------------------------------------


def _load_decoder(model_dir: Path, decoder_dir: str | Path | None, split: str, verify: bool):
    if decoder_dir is None and (model_dir / "decoder").is_dir():
        decoder_dir = model_dir / "decoder"
    if decoder_dir is None:
        if split == "fused":
            raise UserError(
                f"{model_dir}: no report decoder (no decoder/ folder) to export the fusion "
                "resampler from: give --decoder DIR, or --split tokens"
            )
        return None
    from inspection.decoder.model import ReportDecoder

    return ReportDecoder.load(decoder_dir, verify=verify)


def _load_normality(model: Any, normality_dir: str | Path | None, verify: bool) -> Any:
    """The normality model to fuse with ``model`` on the box, or ``None``."""
    if normality_dir is None:
        return None
    from inspection.models import load_model

    if model.config.is_normality:
        raise UserError("--normality fuses a normality model with trained heads; MODEL is one")
    normality = load_model(normality_dir, verify=verify)
    if not normality.config.is_normality:
        raise UserError(
            f"{normality_dir}: not a feature normality model (inspection train --normal-only)"
        )
    return normality


def _check_one_product(normality: Any, chosen: dict[str, Any]) -> None:
    """A normality model knows one product's good parts: the bundle serves that one."""
    fitted = _served_products(normality.metadata)
    if len(chosen) != 1 or (fitted and set(chosen) != set(fitted)):
        on = f" (it was fitted on {', '.join(fitted)} parts)" if fitted else ""
        raise UserError(
            f"a normality model describes one product's good parts{on}: ship that "
            f"product's standard alone (--standard PRODUCT), not {', '.join(sorted(chosen))}"
        )


def _export_normality(normality: Any, path: Path, out: Path) -> ParityReport:
    export_onnx(normality, path, with_audio=False)
    parity = check_parity(normality, path)
    if not parity.ok:
        raise ModelError(
            f"{NORMALITY_GRAPH}: exported graph differs from the normality model by "
            f"{parity.worst:.2e} (tolerance {parity.tolerance:.0e}); {out} not written"
        )
    return parity


def _resolve_standards(metadata: dict[str, Any], given: Sequence[str | Path] | None):
    """The standards to ship, each as ``(Standard, file)``, one per product."""
    from inspection.config import get_settings, standard_path
    from inspection.standards import StandardError, load_standard

    if given:
        files = [standard_path(s) for s in given]
    else:
        products = _served_products(metadata)
        shipped = get_settings().standards_dir
        files = [standard_path(p) for p in products] if products else sorted(shipped.glob("*.yaml"))
    chosen: dict[str, tuple[Any, Path]] = {}
    for file in files:
        if not Path(file).is_file():
            raise UserError(f"{file}: no such standard (a YAML file or a shipped product name)")
        try:
            standard = load_standard(file)
        except StandardError as exc:
            raise UserError(str(exc)) from exc
        if standard.product in chosen:
            other = chosen[standard.product][1]
            raise UserError(f"{file}: a second standard for product {standard.product!r} ({other})")
        chosen[standard.product] = (standard, Path(file))
    if not chosen:
        raise UserError("no standard to ship: give --standard FILE|PRODUCT")
    return chosen


def _served_products(metadata: dict[str, Any]) -> list[str]:
    """The products a model serves: its metadata's, else its training data's."""
    products = metadata.get("products") or metadata.get("product")
    if isinstance(products, str):
        return [products]
    if products:
        return [str(p) for p in products]
    data = (metadata.get("train") or {}).get("data")
    if data and (Path(data) / "dataset.yaml").is_file():
        import yaml

        product = (yaml.safe_load((Path(data) / "dataset.yaml").read_text()) or {}).get("product")
        if product:
            return [str(product)]
    return []


def _held_out(
    holdout: str | Path | None, chosen: dict[str, Any], size: int, hears: bool
) -> list[_Part]:
    if holdout is None:
        parts = [
            _Part(obs, product)
            for product in chosen
            for obs, _ in holdout_parts(product, size=size)
        ]
    else:
        from inspection.io import IMAGE_SUFFIXES, read_image

        files = sorted(p for p in Path(holdout).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UserError(f"{holdout}: no part images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        parts = []
        for file in files:
            part_id = re.sub(r"[^A-Za-z0-9._-]+", "_", file.relative_to(holdout).as_posix())
            frame = Frame(image=read_image(file), camera="holdout")
            parts.append(
                _Part(Observation(part_id=part_id, station="export", frames=(frame,)), None)
            )
    if not hears:  # a graph without the audio branch hears nothing: neither does torch
        parts = [replace(p, observation=replace(p.observation, audio=None)) for p in parts]
    return parts


# -- checks ---------------------------------------------------------------------------


class _Recorder:
    """A detector that keeps its detections (the fusion is checked on them)."""

    def __init__(self, detector: Any):
        self.detector = detector
        self.classes = detector.classes
        self.version = detector.version
        self.detections: list[Any] = []

    def detect(self, image: np.ndarray, audio: Any = None) -> Any:
        detection = self.detector.detect(image, audio)
        self.detections.append(detection)
        return detection


def _decide_all(detector: Any, parts: list[_Part], chosen: dict[str, Any], thresholds) -> list:
    from inspection.pipeline import Inspector

    results = []
    for part in parts:
        products = [part.product] if part.product is not None else list(chosen)
        for product in products:
            standard = chosen[product][0]
            inspector = Inspector(detector, standard, thresholds)
            results.append((part, product, standard, inspector.inspect(part.observation)))
    return results


def _holdout_parity(
    model: Any,
    edge: Path,
    parts: list[_Part],
    chosen: dict[str, Any],
    normality: tuple[Any, Path] | None = None,
) -> tuple[HoldoutParity, list[Any]]:
    """Torch against ONNX Runtime on the held-out parts; with ``normality`` (the model,
    its graph and the heads' second-look level on it) each side is the fused detector."""
    from inspection.models.detector import TorchDetector
    from inspection.pipeline import thresholds_of

    in_torch, on_edge = TorchDetector(model), OnnxDetector(edge)
    if normality is not None:
        from inspection.models.fusion import FusedDetector

        model_n, graph_n, second_look = normality
        in_torch = FusedDetector(in_torch, TorchDetector(model_n), second_look=second_look)
        on_edge = FusedDetector(on_edge, OnnxDetector(graph_n), second_look=second_look)
    thresholds = thresholds_of(in_torch.metadata)
    recorder = _Recorder(on_edge)
    want = _decide_all(in_torch, parts, chosen, thresholds)
    got = _decide_all(recorder, parts, chosen, thresholds)
    decided = [
        HoldoutPart(p.observation.part_id, product, standard.id, torch_result, onnx_result)
        for (p, product, standard, torch_result), (*_, onnx_result) in zip(want, got, strict=True)
    ]
    return HoldoutParity(decided), recorder.detections


def _drift_message(parity: HoldoutParity, out: Path) -> str:
    lines = []
    for p in parity.drifted[:5]:
        lines.append(
            f"part {p.part_id} under {p.standard_id}: torch {p.torch.verdict} "
            f"{_fmt_scores(p.torch.scores)}, ONNX {p.onnx.verdict} {_fmt_scores(p.onnx.scores)}"
        )
    more = len(parity.drifted) - len(lines)
    return (
        f"held-out parity failed on {len(parity.drifted)} of {len(parity.parts)} parts "
        f"(verdicts must be identical, scores within {parity.tolerance:.0e}): "
        + "; ".join(lines)
        + (f"; and {more} more" if more > 0 else "")
        + f"; {out} not written"
    )


def _fmt_scores(scores: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k} {v:.6f}" for k, v in sorted(scores.items())) + "}"


def _quantize(model, edge: Path, calibration_data, parts, chosen, normality=None) -> HoldoutParity:
    """Replace ``edge`` by its INT8 graph; what it decides on the held-out parts (the
    self-test's expectation), compared with torch (reported, not required to match)."""
    try:
        from inspection.export.quantize import quantize_int8
    except ImportError as exc:
        raise UserError(f"INT8 export is not available here ({exc})") from exc
    quantized = edge.with_name("edge.int8.onnx")
    quantize_int8(edge, quantized, Path(calibration_data))
    quantized.replace(edge)
    hash_file(quantized).unlink(missing_ok=True)
    record_hash(edge)
    parity, _ = _holdout_parity(model, edge, parts, chosen, normality)
    return HoldoutParity(parity.parts, tolerance=float("inf"))


def _export_fusion(decoder: Any, path: Path, detections: list[Any]):
    from inspection.export.fusion import check_fusion_parity, export_fusion

    fusion = decoder.fusion
    detections = [heads_part(d) for d in detections]  # the decoder reads the heads' channels
    first = detections[0]
    config = fusion.config
    widths = {
        "image_dim": (config.image_dim, first.patch_tokens.shape[-1]),
        "map_channels": (config.map_channels, first.maps.shape[1]),
    }
    if first.audio_tokens is not None:
        widths["audio_dim"] = (config.audio_dim, first.audio_tokens.shape[-1])
    wrong = {k: v for k, v in widths.items() if v[0] != v[1]}
    if wrong:
        said = ", ".join(f"{k} {a} (the detector gives {b})" for k, (a, b) in wrong.items())
        raise UserError(f"the report decoder does not fit this detection model: {said}")
    export_fusion(fusion, path)
    # With the tap test and without (no audio keys at all): the edge meets both.
    silent = [d.without_audio() for d in detections if d.audio_tokens is not None]
    parity = check_fusion_parity(fusion, path, [*detections, *silent])
    if not parity.ok:
        raise ModelError(
            f"{FUSION_GRAPH}: the exported resampler differs from the decoder's by "
            f"{parity.max_abs_diff:.2e} (tolerance {parity.tolerance:.0e}); not written"
        )
    return parity


# -- writing --------------------------------------------------------------------------


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "part"


def _copy_standards(chosen: dict[str, Any], staging: Path) -> dict[str, str]:
    files = {}
    for standard, source in chosen.values():
        name = f"standards/{_safe_name(standard.id)}.yaml"
        (staging / "standards").mkdir(exist_ok=True)
        shutil.copyfile(source, staging / name)
        files[standard.id] = name
    return files


def _write_selftest(staging: Path, parity: HoldoutParity, parts: list[_Part], hears: bool) -> None:
    """A few held-out parts (both verdicts where there are) and what the shipped graph
    decided on them."""
    import soundfile as sf

    from inspection.io import write_image

    by_id = {p.observation.part_id: p for p in parts}
    chosen: list[HoldoutPart] = []
    for part in sorted(parity.parts, key=lambda p: p.part_id):  # one of each verdict first
        if part.onnx.verdict not in {c.onnx.verdict for c in chosen}:
            chosen.append(part)
    for part in parity.parts:
        if len(chosen) >= SELFTEST_PARTS:
            break
        if part not in chosen:
            chosen.append(part)
    cases = []
    for i, held in enumerate(chosen[:SELFTEST_PARTS]):
        obs = by_id[held.part_id].observation
        stem = f"selftest/{i:02d}-{_safe_name(held.part_id)}"
        write_image(staging / f"{stem}.png", obs.frames[0].image)
        audio = None
        if hears and obs.audio is not None:
            audio = f"{stem}.wav"
            # 32-bit float WAV: the samples the expectation was computed on, exactly
            # (16-bit PCM moves the tap-test score by ~1e-3).
            sf.write(staging / audio, obs.audio.samples, obs.audio.sample_rate, subtype="FLOAT")
        cases.append(
            {
                "part_id": held.part_id,
                "image": f"{stem}.png",
                "audio": audio,
                "mm_per_px": obs.frames[0].mm_per_px,
                "reference_rgb": obs.metadata.get("reference_rgb"),
                "product": held.product,
                "standard_id": held.standard_id,
                "verdict": str(held.onnx.verdict),
                "scores": dict(held.onnx.scores),
                "torch": {"verdict": str(held.torch.verdict), "scores": dict(held.torch.scores)},
            }
        )
    data = {"format": SELFTEST_FORMAT, "tolerance": SCORE_TOLERANCE, "parts": cases}
    (staging / SELFTEST).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _payload_bytes(decoder: Any, detections: list[Any]) -> dict[str, int]:
    """Tensor bytes a part costs on the wire at each split point (float16), measured on
    the first held-out part."""
    det = heads_part(detections[0])  # what the edge sends: the heads' channels
    tokens = det.patch_tokens[0].size + det.maps[0].size
    if det.audio_tokens is not None:
        tokens += det.audio_tokens[0].size
    sizes = {"tokens": int(tokens) * 2}
    if decoder is not None:
        from inspection.decoder.fusion import payload_bytes

        sizes["fused"] = payload_bytes(decoder.fusion.config)
    return sizes


def _manifest(
    model,
    decoder,
    staging,
    split,
    chosen,
    standard_files,
    parity,
    fusion_parity,
    holdout,
    int8_holdout,
    precision,
    detections,
    normality=None,  # (normality model, its graph, the second-look level) or None
    normality_parity=None,
) -> dict[str, Any]:
    import inspection
    from inspection.pipeline import thresholds_of

    thresholds = thresholds_of(model.metadata)
    files = {
        p.relative_to(staging).as_posix(): {"sha256": sha256(p), "bytes": p.stat().st_size}
        for p in sorted(staging.rglob("*"))
        if p.is_file() and p.name not in (MANIFEST, MANIFEST_HASH, SIGNATURE)
    }
    standards = {
        standard.id: {
            "file": standard_files[standard.id],
            "product": product,
            "version": standard.version,
            "revision": standard.revision,
        }
        for product, (standard, _) in chosen.items()
    }
    checks: dict[str, Any] = {
        "edge_graph": {"max_abs_diff": parity.max_abs_diff, "inputs": parity.batch},
        "holdout": holdout.summary(),
    }
    if normality_parity is not None:
        checks["normality_graph"] = {
            "max_abs_diff": normality_parity.max_abs_diff,
            "inputs": normality_parity.batch,
        }
    if fusion_parity is not None:
        checks["fusion_graph"] = {
            "max_abs_diff": fusion_parity.max_abs_diff,
            "max_abs_diff_float16": fusion_parity.max_abs_diff_float16,
            "detections": fusion_parity.cases,
        }
    if int8_holdout is not None:
        agreed = sum(p.torch.verdict == p.onnx.verdict for p in int8_holdout.parts)
        checks["int8_holdout"] = {
            **int8_holdout.summary(),
            "verdict_agreement": agreed / max(1, len(int8_holdout.parts)),
        }
        checks["int8_holdout"]["tolerance"] = None
    decoder_version = None
    if decoder is not None:
        decoder_version = sha256(Path(staging / FUSION_GRAPH))[:16]
    return {
        "format": BUNDLE_FORMAT,
        "exporter": {"name": "inspection", "version": inspection.__version__},
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model_version": model.model_version or "unsaved",
        "calibration_version": thresholds.version,
        "fusion_version": decoder_version,
        "classes": list(model.config.classes),
        "thresholds": dict(model.metadata.get("thresholds") or {}),
        "with_audio": "mel" in OnnxDetector(staging / EDGE_GRAPH).inputs,
        "precision": precision,
        "split": split,
        "payload_bytes": _payload_bytes(decoder, detections),
        "graphs": {
            "edge": EDGE_GRAPH,
            "fusion": FUSION_GRAPH if decoder is not None else None,
            "normality": NORMALITY_GRAPH if normality is not None else None,
        },
        "normality": None
        if normality is None
        else {
            "model_version": normality[0].model_version or "unsaved",
            "thresholds": dict(normality[0].metadata.get("thresholds") or {}),
            "config": normality[0].config.name,
            "second_look": normality[2],
            # its graph holds the pretrained weights: their licence and source travel with it
            "backbone": normality[0].metadata.get("backbone"),
        },
        "fusion": decoder.fusion.config.to_dict() if decoder is not None else None,
        "standards": standards,
        "products": {product: standard.id for product, (standard, _) in chosen.items()},
        "selftest": SELFTEST,
        "checks": checks,
        "files": files,
    }


def _write_manifest(staging: Path, manifest: dict[str, Any], sign_key) -> str | None:
    path = staging / MANIFEST
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    record_hash(path)  # manifest.json.sha256: a corrupt manifest is refused, signed or not
    if sign_key is None:
        return None
    from inspection.edge.keys import _fingerprint_of, _load_private, sign_file, verify_file

    key = _load_private(Path(sign_key))
    sign_file(path, Path(sign_key))
    public = staging / ".signing.pub"  # verified with the key's own public half, then gone
    try:
        from cryptography.hazmat.primitives import serialization

        public.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        fingerprint = verify_file(path, staging / SIGNATURE, public)
    finally:
        public.unlink(missing_ok=True)
    assert fingerprint == _fingerprint_of(key.public_key())
    return fingerprint


def _move_into_place(staging: Path, out: Path) -> None:
    """Rename the checked bundle to ``out``; an existing ``out`` is swapped out first and
    removed only once the new one is in place."""
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        if not out.is_dir():
            raise UserError(f"{out}: exists and is not a folder; not replaced")
        out.rename(old)
    try:
        staging.rename(out)
    except OSError:
        if old.exists():
            old.rename(out)
        raise
    if old.exists():
        shutil.rmtree(old)
