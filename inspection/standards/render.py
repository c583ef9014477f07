"""Rendering a standard as prompt text, in English or Chinese.

The report decoder reads the standard from this text, so it states every clause with
its id, conditions, severity and action in one line, in a fixed order.
"""

from __future__ import annotations

from inspection.standards.schema import Clause, Standard, Zone, check_language

_WORDS = {
    "en": {
        "standard": "Defect standard",
        "rev": "rev",
        "version": "version",
        "product": "Product",
        "units": "Sizes in mm and mm²; colour difference as CIEDE2000 ΔE.",
        "zones": "Zones (fractions of the part image):",
        "classes": "Defect classes: ",
        "clauses": (
            "Clauses (the most severe applicable clause governs; "
            "a defect no clause covers is within tolerance):"
        ),
        "in_zone": "in zone",
        "any_zone": "in any zone",
        "when": "when",
        "always": "at any size",
        "and": " and ",
        "minor": "minor",
        "major": "major",
        "critical": "critical",
        "accept": "accept",
        "review": "review",
        "rework": "rework",
        "scrap": "scrap",
        "sep": ", ",
        "colon": ": ",
        "end": ". ",
    },
    "zh": {
        "standard": "缺陷标准",
        "rev": "修订",
        "version": "版本",
        "product": "产品",
        "units": "尺寸单位为毫米和平方毫米；色差为 CIEDE2000 ΔE。",
        "zones": "区域（零件图像的比例坐标）：",
        "classes": "缺陷类别：",
        "clauses": "条款（适用条款中最严重者优先；未被任何条款覆盖的缺陷视为在公差内）：",
        "in_zone": "位于区域",
        "any_zone": "位于任意区域",
        "when": "当",
        "always": "任意尺寸",
        "and": " 且 ",
        "minor": "轻微",
        "major": "严重",
        "critical": "致命",
        "accept": "接收",
        "review": "复检",
        "rework": "返工",
        "scrap": "报废",
        "sep": "，",
        "colon": "：",
        "end": "。",
    },
}


TERMS_ZH = {
    k: _WORDS["zh"][k]
    for k in ("minor", "major", "critical", "accept", "review", "rework", "scrap")
}
"""Chinese names of severities and actions: the one table reports and prompts use."""


def render_standard(standard: Standard, lang: str = "en") -> str:
    """The standard as prompt text in ``lang`` (``"en"`` or ``"zh"``)."""
    check_language(lang)
    w = _WORDS[lang]
    lines = [
        render_header(standard, lang),
        f"{w['product']}{w['colon']}{standard.product}{w['end']}{w['units']}",
        w["zones"],
        *(f"- {_zone_line(z, lang)}" for z in standard.zones),
        w["classes"]
        + w["sep"].join(f"{c.id} ({c.name.get(lang)})" for c in standard.defect_classes),
        w["clauses"],
        *(f"- {render_clause(c, lang)}" for c in standard.clauses),
    ]
    return "\n".join(lines)


def render_header(standard: Standard, lang: str = "en") -> str:
    """The standard's first line: id, revision, content version and title."""
    w = _WORDS[lang]
    return (
        f"{w['standard']} {standard.id} {w['rev']} {standard.revision} "
        f"({w['version']} {standard.version}){w['colon']}{standard.title.get(lang)}"
    )


def term(word: str, lang: str = "en") -> str:
    """A word of the rendered text (a severity, an action, ``"and"`` ...) in ``lang``."""
    return _WORDS[lang][word]


def render_clause(clause: Clause, lang: str = "en") -> str:
    """One clause as one line: ``[id] class in zone A when length_mm > 5 -> major, rework.``"""
    w = _WORDS[lang]
    where = f"{w['in_zone']} {'/'.join(clause.zones)}" if clause.zones else w["any_zone"]
    when = (
        f"{w['when']} {w['and'].join(str(c) for c in clause.when)}" if clause.when else w["always"]
    )
    return (
        f"[{clause.id}] {clause.defect} {where} {when} -> "
        f"{w[clause.severity.value]}{w['sep']}{w[clause.action.value]}{w['end']}"
        f"{clause.text.get(lang)}"
    )


def _zone_line(zone: Zone, lang: str) -> str:
    x0, y0, x1, y1 = (round(v * 100) for v in zone.region)
    return f"{zone.id} ({zone.name.get(lang)}): x {x0}-{x1} %, y {y0}-{y1} %"
