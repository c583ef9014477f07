"""The decoder's text prompt: the standard, the measured defects, the instruction.

The fused tokens come first (as embeddings); this text follows them. It carries the
measurements but never the rule engine's decisions, so that the report is the
decoder's own reading of the standard and the cross-check means something.
"""

from __future__ import annotations

from collections.abc import Sequence

from inspection.standards import Standard, render_standard
from inspection.types import Defect

_WORDS = {
    "en": {
        "measured": "Measured defects:",
        "none": "none",
        "zone": "zone",
        "no_zone": "zone unknown",
        "instruction": "Write the inspection report as JSON in English.",
    },
    "zh": {
        "measured": "实测缺陷：",
        "none": "无",
        "zone": "区域",
        "no_zone": "区域未知",
        "instruction": "请用中文以 JSON 格式写出检验报告。",
    },
}


def build_prompt(standard: Standard, defects: Sequence[Defect], language: str = "en") -> str:
    """The prompt text for one part.

    Parameters
    ----------
    standard
        The product's standard, rendered in ``language``.
    defects
        The measured defects, in the order the report must list them, each with its zone
        set (see :func:`inspection.decoder.schema.defects_of`).
    language
        ``"en"`` or ``"zh"``: of the standard's text, the instruction and the report.
    """
    w = _WORDS[language]
    lines = [render_standard(standard, language), w["measured"]]
    lines += [f"{i}. {describe_defect(d, language)}" for i, d in enumerate(defects, 1)]
    if not defects:
        lines.append(w["none"])
    lines.append(w["instruction"])
    return "\n".join(lines) + "\n"


def describe_defect(defect: Defect, language: str = "en") -> str:
    """``scratch, zone A: length_mm=6.20, width_mm=0.30`` (attributes in sorted order)."""
    w = _WORDS[language]
    where = f"{w['zone']} {defect.zone}" if defect.zone else w["no_zone"]
    values = ", ".join(f"{k}={float(v):.2f}" for k, v in sorted(defect.attributes.items()))
    return f"{defect.defect_class}, {where}: {values or '-'}"
