"""Loading standards from YAML, with errors that name the file, line and field."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from inspection.standards.schema import Standard

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a standard file."""

    source: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class StandardError(ValueError):
    """A malformed standard. ``problems`` lists every problem found, each with its line."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def load_standard(path: str | Path) -> Standard:
    """Load and validate a standard from a YAML file.

    Raises
    ------
    StandardError
        Naming the file, line and field of each problem.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StandardError([Problem(str(path), None, "", f"cannot read: {exc}")]) from exc
    return parse_standard(text, source=str(path))


def parse_standard(text: str, source: str = "<string>") -> Standard:
    """Validate a standard given as YAML text; ``source`` names it in errors."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise StandardError([Problem(source, line, "", f"invalid YAML: {problem}")]) from exc
    if not isinstance(data, dict):
        raise StandardError([Problem(source, 1, "", "a standard is a YAML mapping")])
    try:
        standard = Standard.model_validate(data)
    except ValidationError as exc:
        problems = [
            Problem(source, _line_of(root, err["loc"]), _field(err["loc"]), _message(err))
            for err in exc.errors()
        ]
        raise StandardError(problems) from None
    problems = [
        Problem(source, _line_of(root, loc), _field(loc), msg)
        for loc, msg in _cross_reference_problems(standard)
    ]
    if problems:
        raise StandardError(problems)
    return standard


def _cross_reference_problems(std: Standard) -> Iterator[tuple[Loc, str]]:
    """What pydantic cannot see field by field: ids that must exist and be unique."""
    for name, items in (
        ("zones", std.zones),
        ("defect_classes", std.defect_classes),
        ("clauses", std.clauses),
    ):
        if not items:
            yield (name,), "must list at least one entry"
        seen: set[str] = set()
        for i, item in enumerate(items):
            if item.id in seen:
                yield (name, i, "id"), f"duplicate id {item.id!r}"
            seen.add(item.id)
    zone_ids, class_ids = {z.id for z in std.zones}, set(std.class_ids)
    for i, clause in enumerate(std.clauses):
        if clause.defect not in class_ids:
            yield (
                ("clauses", i, "defect"),
                (
                    f"unknown defect class {clause.defect!r} "
                    f"(defined: {', '.join(sorted(class_ids))})"
                ),
            )
        for j, zone in enumerate(clause.zones or ()):
            if zone not in zone_ids:
                yield (
                    ("clauses", i, "zones", j),
                    (f"unknown zone {zone!r} (defined: {', '.join(sorted(zone_ids))})"),
                )
        for j, cond in enumerate(clause.when):
            if cond.attribute not in std.known_attributes:
                yield (
                    ("clauses", i, "when", j),
                    (
                        f"unknown attribute {cond.attribute!r} "
                        f"(known: {', '.join(sorted(std.known_attributes))}; "
                        "declare custom ones under 'attributes')"
                    ),
                )


def _message(err: dict[str, Any]) -> str:
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        return "required field is missing"
    if err["type"] == "extra_forbidden":
        return "unknown field (check the spelling)"
    return msg


def _field(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_of(node: yaml.Node | None, loc: Loc) -> int | None:
    """1-based line of the deepest YAML node along ``loc`` that exists."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        child = _child(node, part)
        if child is None:
            break
        node = child
        line = node.start_mark.line + 1
    return line


def _child(node: yaml.Node | None, part: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == part:
                return value
    elif (
        isinstance(node, yaml.SequenceNode)
        and isinstance(part, int)
        and 0 <= part < len(node.value)
    ):
        return node.value[part]
    return None
