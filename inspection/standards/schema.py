"""The defect-standard format: a product's zones, defect classes and clauses.

A clause says: a defect of this class, in these zones, whose measured attributes meet
all of these conditions, has this severity and calls for this action. Conditions are
written as a quality engineer reads them (``"length_mm > 5"``) and parsed here, so a
typo in an attribute or an operator is an error at load time, not a silent mismatch.
"""

from __future__ import annotations

import hashlib
import json
import operator
import re
from collections.abc import Callable
from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from inspection.errors import UserError
from inspection.types import Action, Severity

LANGUAGES = ("en", "zh")
"""Languages of standards, reports, answers and the console's words."""


def check_language(language: str, what: str = "language") -> None:
    """Refuse a language (``what``: the option that gave it) that is not one of
    :data:`LANGUAGES`, with a :class:`~inspection.errors.UserError` naming them."""
    if language not in LANGUAGES:
        raise UserError(f"unknown {what} {language!r}; use one of {', '.join(LANGUAGES)}")


MEASURED_ATTRIBUTES: dict[str, str] = {
    "length_mm": "length in mm",
    "width_mm": "width in mm",
    "area_mm2": "area in mm²",
    "depth_mm": "depth in mm",
    "delta_e": "colour difference ΔE (CIEDE2000)",
    "count": "number of defects of the class in the same zone",
    "total_count": "number of defects of the class on the part",
}
"""Attributes a condition may name; a standard can declare more in ``attributes``."""

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
}

_CONDITION = re.compile(
    r"^\s*(?P<attr>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op><=|>=|==|!=|<|>)\s*"
    r"(?P<value>[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?)\s*$"
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Text(_Strict):
    """The same text in English and Chinese."""

    en: str = Field(min_length=1)
    zh: str = Field(min_length=1)

    def get(self, lang: str) -> str:
        return self.zh if lang == "zh" else self.en


def true_range(measured: float, above: float, below: float) -> tuple[float, float]:
    """The true values a reading's uncertainty holds: ``below`` under ``measured`` (none
    under 0: every attribute is a size, count or ΔE) to ``above`` over it."""
    return max(0.0, measured - below), measured + above


class Condition(_Strict):
    """``attribute operator value``, e.g. ``length_mm > 5``."""

    attribute: str
    op: str
    value: float

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, data: Any) -> Any:
        if isinstance(data, str):
            match = _CONDITION.match(data)
            if not match:
                raise ValueError(
                    f"cannot parse condition {data!r}: expected 'attribute op number' "
                    f"with op one of {', '.join(OPERATORS)}"
                )
            return {"attribute": match["attr"], "op": match["op"], "value": match["value"]}
        return data

    @field_validator("op")
    @classmethod
    def _known_op(cls, op: str) -> str:
        if op not in OPERATORS:
            raise ValueError(f"unknown operator {op!r}; use one of {', '.join(OPERATORS)}")
        return op

    def holds(self, measured: float) -> bool:
        return OPERATORS[self.op](measured, self.value)

    def holds_within(self, measured: float, above: float, below: float | None = None) -> bool:
        """Whether the condition holds for some true value from ``below`` under the
        ``measured`` one (none under 0; ``None``: ``above``) to ``above`` over it: what a
        reading with that uncertainty cannot rule out (see
        :mod:`inspection.standards.guard`)."""
        below = above if below is None else below
        low, high = true_range(measured, above, below)
        margin = max(above, below)
        if self.op in (">", ">="):
            return self.holds(high)
        if self.op in ("<", "<="):
            return self.holds(low)
        if self.op == "==":
            return low <= self.value <= high
        return margin > 0 or self.holds(measured)  # "!=": any band holds a value besides

    def __str__(self) -> str:
        return f"{self.attribute} {self.op} {self.value:g}"


class Zone(_Strict):
    """A region of the part, as fractions ``[x0, y0, x1, y1]`` of the part image."""

    id: str = Field(min_length=1)
    name: Text
    region: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)

    @field_validator("region")
    @classmethod
    def _valid_region(cls, r: tuple[float, float, float, float]) -> tuple[float, ...]:
        x0, y0, x1, y1 = r
        if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
            raise ValueError(f"region {list(r)} must satisfy 0 <= x0 < x1 <= 1, 0 <= y0 < y1 <= 1")
        return r

    def contains(self, x: float, y: float) -> bool:
        x0, y0, x1, y1 = self.region
        return x0 <= x <= x1 and y0 <= y <= y1


class DefectClass(_Strict):
    id: str = Field(min_length=1, pattern=r"^[a-z][a-z0-9_]*$")
    name: Text


class Clause(_Strict):
    """One rule of the standard. No ``zones`` means every zone; no ``when``, always."""

    id: str = Field(min_length=1)
    defect: str
    zones: tuple[str, ...] | None = None
    when: tuple[Condition, ...] = ()
    severity: Severity
    action: Action
    text: Text

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        # YAML reads an unquoted clause id like 4.2 as a float; keep it as written.
        return str(value) if isinstance(value, int | float) else value


class Standard(_Strict):
    """A product's defect standard, as loaded from YAML and validated."""

    id: str = Field(min_length=1)
    title: Text
    product: str = Field(min_length=1)
    revision: str
    effective: date | None = None
    attributes: tuple[str, ...] = ()
    # Non-empty, checked after validation (pydantic would also flag a list whose
    # items failed as empty, burying the real error).
    zones: tuple[Zone, ...]
    defect_classes: tuple[DefectClass, ...]
    clauses: tuple[Clause, ...]

    @field_validator("revision", mode="before")
    @classmethod
    def _revision_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value

    @property
    def version(self) -> str:
        """Content hash of the validated standard: edits to comments or layout keep it."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @property
    def known_attributes(self) -> frozenset[str]:
        return frozenset(MEASURED_ATTRIBUTES) | frozenset(self.attributes)

    @property
    def class_ids(self) -> tuple[str, ...]:
        return tuple(c.id for c in self.defect_classes)

    @property
    def clause_ids(self) -> tuple[str, ...]:
        return tuple(c.id for c in self.clauses)

    def zone(self, zone_id: str) -> Zone:
        return next(z for z in self.zones if z.id == zone_id)

    def zone_at(self, x: float, y: float) -> str | None:
        """The first zone (in file order) containing the point, in part fractions."""
        return next((z.id for z in self.zones if z.contains(x, y)), None)

    def clause(self, clause_id: str) -> Clause:
        return next(c for c in self.clauses if c.id == clause_id)

    def limiting(self, defect: str, attribute: str) -> tuple[str, ...]:
        """The ids of the clauses whose conditions read ``attribute`` of ``defect`` (a
        dent's ``depth_mm``: what a photograph alone leaves unread)."""
        return tuple(
            c.id
            for c in self.clauses
            if c.defect == defect and any(w.attribute == attribute for w in c.when)
        )
