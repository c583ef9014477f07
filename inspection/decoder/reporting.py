"""One part end to end: the edge's verdict, the decoder's report, the cross-check.

The edge (:class:`~inspection.pipeline.Inspector`) decides from the detection model
and the rule engine; the decoder reads the same detection's fused tokens and the
measured defects and writes the report; :func:`~inspection.decoder.crosscheck.cross_check`
compares the two. ``inspection demo``, ``inspection ask`` and ``inspection evaluate
--decoder`` all go through here.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from inspection.decoder.decoding import Answer, ReportRequest, ask
from inspection.decoder.model import ReportDecoder
from inspection.decoder.schema import check_question, defects_of
from inspection.models.outputs import Detection
from inspection.pipeline import Inspector, RecordingDetector
from inspection.standards import Standard
from inspection.types import InspectionResult, Observation


def report_request(
    inspector: Inspector,
    decoder: ReportDecoder,
    observation: Observation,
    detection: Detection | None = None,
) -> tuple[InspectionResult, ReportRequest]:
    """Inspect one part and build the decoder's request from the same detection.

    ``detection``, when given, is the part's detection already made (one frame). A part
    whose detection failed gets a zero payload: its result is REVIEW already, and the
    report can only agree or send it to review. The request carries the result, so that
    its report is held to the inspector's verdict (``request.rules()``), not to the
    rules on the measurements alone, which would pass a part sent to review for a score
    with no region to measure.
    """
    recording = RecordingDetector(inspector.detector, detection)
    result = replace(inspector, detector=recording).inspect(observation)
    request = decided_request(decoder, inspector.standard, result, recording.last)
    return result, request


def decided_request(
    decoder: ReportDecoder,
    standard: Standard,
    result: InspectionResult,
    detection: Detection | None,
) -> ReportRequest:
    """The decoder's request for a part already decided (``result``) from ``detection``
    (one frame; ``None`` where it failed: a zero payload, and the result is REVIEW)."""
    if detection is not None:
        fused = decoder.fuse_detection(detection)[0]  # (N, D) float16
    else:
        fusion = decoder.config.fusion
        fused = np.zeros((fusion.queries, fusion.dim), np.float16)
    return ReportRequest(fused, standard, defects_of(result), result.part_id, result=result)


def ask_part(
    inspector: Inspector, decoder: ReportDecoder, observation: Observation, question: str
) -> tuple[InspectionResult, Answer]:
    """Inspect one part and answer ``question`` about it in the question's language.

    The answer is held to the inspector's result (which can be REVIEW where the rules
    on the measurements alone would pass: a failed detection, a score with no region):
    where it contradicts it, the answer says what the rules say (see :func:`ask`).

    Raises
    ------
    UserError
        If the question is empty or too long (checked before the part is inspected).
    """
    check_question(question)
    result, request = report_request(inspector, decoder, observation)
    return result, ask(decoder, request, question)
