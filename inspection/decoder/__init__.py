"""The report decoder: fusion resampler, LLaVA-style causal LM, schema-valid reports.

Stages, one module each: :mod:`schema` (the report and its per-standard JSON schema),
:mod:`prompt` (the text prompt), :mod:`corpus` (generated standards and training text),
:mod:`tokenizer` (byte-level BPE), :mod:`fusion` (the resampler), :mod:`model`
(projector + LM), :mod:`decoding` (grammar-constrained generation), :mod:`crosscheck`
(the report against the rule engine).

Importing this package needs only pydantic and the standards; the torch modules are
imported by name (``from inspection.decoder.model import ReportDecoder``).
"""

from inspection.decoder.crosscheck import CrossCheck, cross_check, final_verdict
from inspection.decoder.prompt import build_prompt
from inspection.decoder.schema import (
    ReportModel,
    max_report_bytes,
    parse_report,
    report_json_schema,
    report_model,
    report_text,
    target_report,
)

__all__ = [
    "CrossCheck",
    "ReportModel",
    "build_prompt",
    "cross_check",
    "final_verdict",
    "max_report_bytes",
    "parse_report",
    "report_json_schema",
    "report_model",
    "report_text",
    "target_report",
]
