"""Generated training text: random valid standards, random parts, their target reports.

The decoder must read a standard from its prompt rather than memorise the shipped
ones, so training mixes the project's standards with generated ones that use other
zones, limits, clause-id styles and languages. Everything is drawn from a numpy
``Generator``: the same seed gives the same corpus.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from inspection.config import get_settings
from inspection.decoder.prompt import build_prompt, clause_mark, measured_values
from inspection.decoder.schema import (
    LANGUAGES,
    MAX_DEFECTS,
    QUESTION_KINDS,
    answer,
    answer_text,
    report_text,
    target_report,
)
from inspection.standards import (
    Standard,
    apply_standard,
    candidate_clauses,
    load_standard,
    parse_standard,
)
from inspection.standards.render import TERMS_ZH
from inspection.types import Defect, InspectionResult

# (id, en, zh): a vocabulary of surface defects beyond the synthetic line's six.
_CLASSES = (
    ("scratch", "scratch", "划痕"),
    ("dent", "dent", "凹坑"),
    ("crack", "crack", "裂纹"),
    ("color_deviation", "colour deviation", "色差"),
    ("contamination", "contamination spot", "污染斑点"),
    ("missing_feature", "missing feature", "特征缺失"),
    ("burr", "burr", "毛刺"),
    ("pit", "pit", "麻点"),
    ("bubble", "paint bubble", "气泡"),
    ("chip", "edge chip", "崩边"),
    ("stain", "stain", "污渍"),
    ("porosity", "porosity", "气孔"),
    ("wrinkle", "wrinkle", "褶皱"),
    ("deformation", "deformation", "变形"),
)
_ZONE_NAMES = (
    ("visible face", "外观面"),
    ("sealing surface", "密封面"),
    ("edge band", "边缘带"),
    ("mounting area", "安装区"),
    ("rear face", "背面"),
)
_PRODUCTS = ("housing", "cover", "flange", "panel", "bracket", "tile", "lid", "shaft")
# attribute: (typical limit range, unit shown in clause text)
_LIMITS = {
    "length_mm": (0.5, 20.0),
    "width_mm": (0.1, 3.0),
    "area_mm2": (0.2, 10.0),
    "depth_mm": (0.05, 1.0),
    "delta_e": (1.0, 6.0),
    "count": (2.0, 5.0),
}
_ACTIONS = {"minor": ("accept", "rework"), "major": ("rework", "review"), "critical": ("scrap",)}
_ZH = TERMS_ZH
_MEASURED = ("length_mm", "width_mm", "area_mm2", "delta_e")
# Left unmeasured this often: depth needs a 3D sensor; ΔE is measured for colour only.
_UNMEASURED = {"depth_mm": 0.5, "delta_e": 0.3}
# Question phrasings per kind ({i}: a defect number); the answer comes from the rules.
QUESTIONS = {
    "en": {
        "verdict": ("Is this part acceptable?", "Does the part pass?", "What is the verdict?"),
        "count": ("How many defects were found?", "How many defects does the part have?"),
        "clause": (
            "Which clause applies to defect {i}?",
            "What does the standard say about defect {i}?",
        ),
        "largest": ("What is the largest defect?", "Which defect is the biggest?"),
    },
    "zh": {
        "verdict": ("这个零件合格吗？", "检验结论是什么？", "零件能放行吗？"),
        "count": ("发现了几处缺陷？", "零件有几处缺陷？"),
        "clause": ("缺陷 {i} 适用哪条条款？", "标准对缺陷 {i} 怎么规定？"),
        "largest": ("最大的缺陷是哪个？", "哪处缺陷最大？"),
    },
}


@dataclass(frozen=True)
class Example:
    """One training example: the prompt text and the target report JSON."""

    prompt: str
    target: str
    standard: Standard
    defects: tuple[Defect, ...]
    result: InspectionResult
    language: str
    question: str | None = None


def generate_standard(
    rng: np.random.Generator,
    n_zones: int | None = None,
    n_classes: int | None = None,
    max_clauses_per_class: int = 3,
) -> Standard:
    """A random, valid standard: zones, classes, clause ids and limits all drawn.

    Parameters
    ----------
    rng
        The source of randomness.
    n_zones, n_classes
        Counts; drawn (1-3 zones, 2-6 classes) when ``None``.
    max_clauses_per_class
        Each class gets 1 to this many clauses.
    """
    n_zones = n_zones or int(rng.integers(1, 4))
    n_classes = n_classes or int(rng.integers(2, 7))
    zone_ids = _zone_ids(rng, n_zones)
    classes = [_CLASSES[i] for i in rng.choice(len(_CLASSES), n_classes, replace=False)]
    clause_id = _clause_id_style(rng)
    clauses = []
    for c, (cls, en, zh) in enumerate(classes, 1):
        for k in range(1, int(rng.integers(1, max_clauses_per_class + 1)) + 1):
            clauses.append(_clause(rng, clause_id(c, k), cls, en, zh, zone_ids))
    product = str(rng.choice(_PRODUCTS))
    data = {
        "id": f"QS-{product[:3].upper()}-{int(rng.integers(100, 1000))}",
        "title": {"en": f"{product} surface defect standard", "zh": f"{product} 表面缺陷标准"},
        "product": product,
        "revision": str(rng.choice(list("ABCDEFG"))),
        "zones": _zones(rng, zone_ids),
        "defect_classes": [{"id": c, "name": {"en": en, "zh": zh}} for c, en, zh in classes],
        "clauses": clauses,
    }
    # Through the loader: a generated standard passes every check a YAML file does.
    return parse_standard(yaml.safe_dump(data, allow_unicode=True), source="<generated>")


def _zone_ids(rng: np.random.Generator, n: int) -> list[str]:
    style = int(rng.integers(0, 3))
    if style == 0:
        return list("ABCDE"[:n])
    if style == 1:
        return [f"Z{i}" for i in range(1, n + 1)]
    return list("PQRST"[:n])


def _zones(rng: np.random.Generator, ids: list[str]) -> list[dict]:
    # Nested boxes, the last the whole part: the first zone containing a point wins.
    zones = []
    for i, zone_id in enumerate(ids):
        margin = round(0.1 * (len(ids) - 1 - i) + float(rng.uniform(0.0, 0.05)), 2)
        region = [margin, margin, round(1 - margin, 2), round(1 - margin, 2)]
        en, zh = _ZONE_NAMES[int(rng.integers(len(_ZONE_NAMES)))]
        zones.append({"id": zone_id, "name": {"en": en, "zh": zh}, "region": region})
    return zones


def _clause_id_style(rng: np.random.Generator):
    section, prefix = int(rng.integers(2, 10)), str(rng.choice(["P", "C", "S", "T", "Q"]))
    styles = (
        lambda c, k: f"{section}.{c}.{k}",
        lambda c, k: f"{prefix}-{c}.{k}",
        lambda c, k: f"{prefix}{c}{k:02d}",
    )
    return styles[int(rng.integers(len(styles)))]


def _clause(
    rng: np.random.Generator, clause_id: str, cls: str, en: str, zh: str, zone_ids: list[str]
) -> dict:
    severity = str(rng.choice(list(_ACTIONS)))
    action = str(rng.choice(_ACTIONS[severity]))
    clause: dict = {"id": clause_id, "defect": cls, "severity": severity, "action": action}
    zones = None
    if len(zone_ids) > 1 and rng.random() < 0.5:
        zones = sorted(rng.choice(zone_ids, int(rng.integers(1, len(zone_ids))), replace=False))
        clause["zones"] = [str(z) for z in zones]
    when = []
    if rng.random() < 0.85:
        attribute = str(rng.choice(list(_LIMITS)))
        lo, hi = _LIMITS[attribute]
        limit = float(rng.integers(int(lo), int(hi) + 1)) if attribute == "count" else None
        limit = limit or round(float(rng.uniform(lo, hi)), 1)
        op = ">=" if attribute == "count" else ">"
        when = [f"{attribute} {op} {limit:g}"]
        clause["when"] = when
    where_en = f" in zone {'/'.join(zones)}" if zones else ""
    where_zh = f"区域 {'/'.join(zones)} 内" if zones else ""
    cond = f" with {when[0]}" if when else ""
    cond_zh = f"（{when[0]}）" if when else ""
    clause["text"] = {
        "en": f"{en.capitalize()}{where_en}{cond}: {severity}, {action}.",
        "zh": f"{where_zh}{zh}{cond_zh}：{_ZH[severity]}，{_ZH[action]}。",
    }
    return clause


def random_defects(
    rng: np.random.Generator, standard: Standard, max_defects: int = 4
) -> tuple[Defect, ...]:
    """Measured defects of one random part: classes, zones and sizes near the limits.

    Sizes are drawn around the standard's own thresholds so that parts land on both
    sides of every limit; ``depth_mm`` is sometimes left unmeasured (as on a 2D camera),
    which makes the rule engine ask for review unless a clause that holds already rejects.
    """
    n = int(rng.integers(0, min(max_defects, MAX_DEFECTS) + 1))
    defects = []
    for _ in range(n):
        cls = str(rng.choice(list(standard.class_ids)))
        zone = str(rng.choice([z.id for z in standard.zones]))
        attributes = {
            a: _draw(rng, standard, cls, a)
            for a in (*_MEASURED, "depth_mm")
            if rng.random() >= _UNMEASURED.get(a, 0.0)
        }
        defects.append(Defect(cls, attributes, zone=zone))
    return tuple(defects)


def _draw(rng: np.random.Generator, standard: Standard, cls: str, attribute: str) -> float:
    limits = [
        c.value
        for clause in standard.clauses
        if clause.defect == cls
        for c in clause.when
        if c.attribute == attribute
    ]
    if limits:
        centre = float(rng.choice(limits))
    else:
        lo, hi = _LIMITS.get(attribute, (0.1, 5.0))
        centre = (lo + hi) / 2
    return round(max(centre * float(rng.uniform(0.3, 1.7)), 0.01), 2)


def make_example(
    standard: Standard, defects: Sequence[Defect], language: str = "en", part_id: str = ""
) -> Example:
    """Prompt and target report for one part: the rule engine writes the truth."""
    result = apply_standard(standard, defects, part_id)
    report = target_report(result, standard, language)
    return Example(
        prompt=build_prompt(standard, defects, language),
        target=report_text(report),
        standard=standard,
        defects=tuple(defects),
        result=result,
        language=language,
    )


def make_question_example(
    rng: np.random.Generator,
    standard: Standard,
    defects: Sequence[Defect],
    language: str = "en",
    part_id: str = "",
) -> Example:
    """A random question about the part, and the answer the rule engine's result gives."""
    result = apply_standard(standard, defects, part_id)
    kinds = QUESTION_KINDS if defects else ("verdict", "count")
    kind = str(rng.choice(kinds))
    i = int(rng.integers(1, len(defects) + 1)) if defects else 1
    question = str(rng.choice(QUESTIONS[language][kind])).format(i=i)
    return Example(
        prompt=build_prompt(standard, defects, language, question=question),
        target=answer_text(answer(kind, result, standard, language, i), language),
        standard=standard,
        defects=tuple(defects),
        result=result,
        language=language,
        question=question,
    )


def needs_unmeasured(standard: Standard, defects: Sequence[Defect]) -> bool:
    """Whether a clause covering one of the defects needs a value that was not measured
    (a ``?`` in the prompt): the parts where the decoder must weigh a possible clause."""
    return any(
        clause_mark(clause, measured) == "?"
        for defect, measured in zip(defects, measured_values(defects), strict=True)
        for clause in candidate_clauses(standard, defect.defect_class, defect.zone)
    )


# Redraws allowed when looking for a part with an unmeasured clause (most standards give
# one within a few draws; a standard without unmeasurable clauses keeps its last draw).
_MAX_REDRAWS = 20


def generate_examples(
    rng: np.random.Generator,
    n: int,
    standards: Sequence[Standard] = (),
    generated_fraction: float = 0.5,
    max_defects: int = 4,
    question_fraction: float = 0.0,
    unmeasured_fraction: float = 0.0,
) -> Iterator[Example]:
    """``n`` random examples over the given standards and freshly generated ones; a
    ``question_fraction`` of them ask a question instead of asking for the report.

    An ``unmeasured_fraction`` of the parts are redrawn until a clause covering one of
    their defects needs an unmeasured value (:func:`needs_unmeasured`). Drawn at random,
    only about one defect in eight has one, and they were most of the shipped decoder's
    errors (whether that clause's action is stricter than accept decides review or
    accept), so training can show them more often; evaluation keeps the natural mix.
    """
    for i in range(n):
        if not standards or rng.random() < generated_fraction:
            standard = generate_standard(rng)
        else:
            standard = standards[int(rng.integers(len(standards)))]
        language = str(rng.choice(LANGUAGES))
        defects = random_defects(rng, standard, max_defects)
        # Drawn only when asked for: the corpus of a given seed (the held-out parts of
        # ``decoder evaluate`` among them) stays what it was before this option existed.
        if unmeasured_fraction > 0 and rng.random() < unmeasured_fraction:
            for _ in range(_MAX_REDRAWS):
                if needs_unmeasured(standard, defects):
                    break
                defects = random_defects(rng, standard, max_defects)
        part_id = f"part-{i:06d}"
        if rng.random() < question_fraction:
            yield make_question_example(rng, standard, defects, language, part_id)
        else:
            yield make_example(standard, defects, language, part_id)


def shipped_standards(directory: str | Path | None = None) -> list[Standard]:
    """The project's standards (``datasets/standards/*.yaml`` by default)."""
    directory = Path(directory) if directory else get_settings().standards_dir
    return [load_standard(p) for p in sorted(directory.glob("*.yaml"))]


def corpus_texts(examples: Sequence[Example]) -> Iterator[str]:
    """The texts a tokenizer is trained on: prompts (standards in zh/en) and reports."""
    for example in examples:
        yield example.prompt
        yield example.target
