"""The service's decoder side (torch): load the decoder, check a payload's tensors,
decode a batch of parts and cross-check each report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from inspection.decoder.crosscheck import cross_check
from inspection.decoder.decoding import DecodingOptions, ReportRequest, decode
from inspection.decoder.lora import base_only, load_decoder, use_adapter
from inspection.decoder.model import WEIGHTS_FILE, ReportDecoder
from inspection.decoder.schema import defects_of, to_json
from inspection.edge.payload import EdgePayload
from inspection.errors import ModelError
from inspection.models.card import sha256

if TYPE_CHECKING:
    from inspection.serve.app import Job
    from inspection.serve.settings import ServeSettings


def load_service_decoder(settings: ServeSettings) -> tuple[ReportDecoder, str, str | None]:
    """The decoder with its adapter in use; ``(decoder, version, adapter)``.

    The version is the first 12 hex digits of the weights' SHA-256; the adapter the
    name of the LoRA adapter in use (``None``: the base weights).

    Raises
    ------
    ModelError
        A decoder that does not load, or an adapter it does not have.
    """
    from inspection.decoder.lora import active_adapter, adapters

    directory = settings.decoder_dir
    decoder = load_decoder(directory, device=settings.device, verify=settings.verify)
    adapter = active_adapter(directory) if settings.adapter is None else settings.adapter
    if settings.adapter is not None:
        if settings.adapter == "none":
            base_only(decoder)
        elif settings.adapter not in _names(decoder, adapters):
            raise ModelError(f"{directory}: no adapter {settings.adapter!r}")
        else:
            use_adapter(decoder, settings.adapter)
    adapter = None if adapter in (None, "none") else adapter
    version = sha256(directory / WEIGHTS_FILE)[:12]
    return decoder.eval(), version, adapter


def _names(decoder: ReportDecoder, adapters: Any) -> list[str]:
    try:
        return list(adapters(decoder))
    except ValueError:  # no adapters at all
        return []


def check_tensors(decoder: ReportDecoder, payload: EdgePayload) -> None:
    """Raise ``ValueError`` naming the tensor whose width the decoder cannot read."""
    fusion = decoder.config.fusion
    if payload.split == "fused":
        expected = [fusion.queries, fusion.dim]
        if payload.fused is not None and payload.fused.shape != expected:
            raise ValueError(
                f"fused tokens of shape {payload.fused.shape}; this decoder reads {expected}"
            )
        return
    widths = [
        ("patch_tokens", payload.patch_tokens, -1, fusion.image_dim),
        ("maps", payload.maps, 0, fusion.map_channels),
        ("audio_tokens", payload.audio_tokens, -1, fusion.audio_dim),
    ]
    for name, tensor, axis, width in widths:
        if tensor is not None and tensor.shape[axis] != width:
            raise ValueError(
                f"{name} of shape {tensor.shape}: this decoder's fusion reads "
                f"{'channels' if axis == 0 else 'width'} {width}"
            )


def fused_tokens(decoder: ReportDecoder, payload: EdgePayload) -> np.ndarray:
    """The ``(N, D)`` fused tokens: the payload's, or the decoder's fusion run on its
    ``tokens`` split (one part at a time: parts have different numbers of patches)."""
    if payload.fused is not None:
        return payload.fused.to_array().astype(np.float16)
    param = next(decoder.fusion.parameters())

    def t(wire: Any) -> torch.Tensor | None:
        if wire is None:
            return None
        return torch.as_tensor(wire.to_array()[None], dtype=param.dtype, device=param.device)

    with torch.inference_mode():
        fused = decoder.fuse(t(payload.patch_tokens), t(payload.maps), t(payload.audio_tokens))
    return fused[0].to(torch.float16).cpu().numpy()


def decode_jobs(decoder: ReportDecoder, jobs: Sequence[Job]) -> list[dict[str, Any]]:
    """The answer of each job, in order: report, cross-check, versions.

    One ``decode`` call per language in the batch (a batch is normally all one).
    """
    requests = [
        ReportRequest(
            fused_tokens(decoder, j.payload),
            j.standard,
            defects_of(j.result),
            j.payload.part_id,
            result=j.result,
        )
        for j in jobs
    ]
    answers: list[dict[str, Any] | None] = [None] * len(jobs)
    for language in dict.fromkeys(j.payload.language for j in jobs):
        index = [i for i, j in enumerate(jobs) if j.payload.language == language]
        options = DecodingOptions(language=language, batch_size=len(index))
        decoded = decode(decoder, [requests[i] for i in index], options)
        for i, result in zip(index, decoded, strict=True):
            answers[i] = _answer(jobs[i], result.report, result.error)
    return [a for a in answers if a is not None]


def _answer(job: Job, report: Any, error: str | None) -> dict[str, Any]:
    check = cross_check(job.result, report)
    body = None
    if report is not None:
        body = {
            "part_id": report.part_id,
            "standard_id": report.standard_id,
            "standard_version": report.standard_version,
            **to_json(report),
        }
    payload = job.payload
    return {
        "part_id": payload.part_id,
        "report": body,
        "verdict": check.final_verdict.value,
        "agreed": check.agreed,
        "disagreements": list(check.disagreements),
        "rules_verdict": job.result.verdict.value,
        "edge_verdict": payload.verdict.value,
        "standard_id": job.standard.id,
        "standard_version": job.standard.version,
        "model_version": payload.model_version,
        "duplicate": False,
        "error": error,
    }
