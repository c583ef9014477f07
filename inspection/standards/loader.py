"""Loading standards from YAML, with errors that name the file, line and field."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from inspection.errors import UserError
from inspection.standards.schema import Standard

Loc = tuple[str | int, ...]

MAX_STANDARD_BYTES = 256 * 1024
"""Largest standard read. The shipped ones take a few kB; PyYAML parses about 100 kB a
second here, so this bounds a load to seconds (a 10 MB standard took 147 s and 1.5 GB)."""

MAX_STANDARD_NODES = 100_000
"""Most YAML nodes a standard may expand to, aliases expanded (a billion-laughs bound)."""

MAX_STANDARD_DEPTH = 32
"""Deepest nesting of YAML collections (a standard nests 6 levels)."""

MAX_PROBLEMS = 50
"""Problems listed in one error; the rest are counted."""


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


class StandardError(UserError):
    """A malformed standard. ``problems`` lists every problem found, each with its line."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def load_standard(path: str | Path) -> Standard:
    """Load and validate a standard from a YAML file.

    Raises
    ------
    StandardError
        Naming the file, line and field of each problem; a file larger than
        :data:`MAX_STANDARD_BYTES` is refused before it is parsed.
    """
    path = Path(path)
    data = b""
    try:
        size = path.stat().st_size
        if size <= MAX_STANDARD_BYTES:
            with path.open("rb") as f:
                data = f.read(MAX_STANDARD_BYTES + 1)  # bounded: a file may grow or be a device
    except OSError as exc:
        raise StandardError([Problem(str(path), None, "", f"cannot read: {exc}")]) from exc
    if max(size, len(data)) > MAX_STANDARD_BYTES:
        raise StandardError([Problem(str(path), None, "", _too_large(max(size, len(data))))])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StandardError([Problem(str(path), None, "", f"cannot read: {exc}")]) from exc
    return parse_standard(text, source=str(path))


def parse_standard(text: str, source: str = "<string>") -> Standard:
    """Validate a standard given as YAML text; ``source`` names it in errors.

    Raises
    ------
    StandardError
        Naming ``source``, line and field of each problem (at most
        :data:`MAX_PROBLEMS`, then a count); text over :data:`MAX_STANDARD_BYTES`, or
        YAML nested deeper than :data:`MAX_STANDARD_DEPTH` or expanding to more than
        :data:`MAX_STANDARD_NODES` nodes, is refused before it is built.
    """
    # Counted as UTF-8 (a lone surrogate counted too: the YAML reader refuses it after).
    size = len(text) if len(text) > MAX_STANDARD_BYTES else len(_utf8(text))
    if size > MAX_STANDARD_BYTES:
        raise StandardError([Problem(source, None, "", _too_large(size))])
    root, data = _read_yaml(text, source)
    if not isinstance(data, dict):
        raise StandardError([Problem(source, 1, "", "a standard is a YAML mapping")])
    try:
        standard = Standard.model_validate(data)
    except ValidationError as exc:
        problems = [
            Problem(source, _line_of(root, err["loc"]), _field(err["loc"]), _message(err))
            for err in exc.errors()[:MAX_PROBLEMS]
        ]
        raise StandardError(_counted(problems, exc.error_count(), source)) from None
    found = list(_cross_reference_problems(standard))
    problems = [
        Problem(source, _line_of(root, loc), _field(loc), msg) for loc, msg in found[:MAX_PROBLEMS]
    ]
    if problems:
        raise StandardError(_counted(problems, len(found), source))
    return standard


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogatepass")


def _too_large(size: int) -> str:
    kib, rest = divmod(MAX_STANDARD_BYTES, 1024)
    cap = f"{kib} KiB" if kib and not rest else f"{MAX_STANDARD_BYTES:,} bytes"
    return f"{size:,} bytes, larger than the {cap} a standard may hold"


def _counted(problems: list[Problem], total: int, source: str) -> list[Problem]:
    if total > len(problems):
        problems.append(Problem(source, None, "", f"... and {total - len(problems)} more"))
    return problems


class _ShapeError(Exception):
    """A YAML document too deep or too large to build (raised while composing)."""

    def __init__(self, line: int | None, message: str):
        super().__init__(message)
        self.line, self.message = line, message


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing nesting deeper than :data:`MAX_STANDARD_DEPTH`
    while it composes (its composer recurses once per level)."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self._depth >= MAX_STANDARD_DEPTH:
            line = self.peek_event().start_mark.line + 1
            raise _ShapeError(line, f"nested deeper than {MAX_STANDARD_DEPTH} levels")
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _read_yaml(text: str, source: str) -> tuple[yaml.Node | None, Any]:
    """The composed node tree (for line numbers) and the data, parsed once."""
    loader = None
    try:
        loader = _BoundedLoader(text)  # reads the text: may refuse a character
        root = loader.get_single_node()
        if root is None:
            return None, None
        _check_expansion(root)
        return root, loader.construct_document(root)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise StandardError([Problem(source, line, "", f"invalid YAML: {problem}")]) from None
    except _ShapeError as exc:
        raise StandardError([Problem(source, exc.line, "", exc.message)]) from None
    except ValueError as exc:  # a scalar Python cannot hold: a 5000-digit int, month 13
        raise StandardError([Problem(source, None, "", f"invalid value: {exc}")]) from None
    finally:
        if loader is not None:
            loader.dispose()


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a document whose aliases make it recursive, or expand it beyond
    :data:`MAX_STANDARD_NODES` nodes or :data:`MAX_STANDARD_DEPTH` levels.

    Iterative, with each node measured once, so a billion-laughs document costs its
    text's length, not its expansion.
    """
    measured: dict[int, tuple[int, int]] = {}  # id(node) -> (nodes, depth), expanded
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        children = _children(node)
        if children_done:
            on_path.discard(id(node))
            nodes = 1 + sum(measured[id(c)][0] for c in children)
            depth = 1 + max((measured[id(c)][1] for c in children), default=0)
            if nodes > MAX_STANDARD_NODES:
                raise _ShapeError(
                    None,
                    f"expands to more than {MAX_STANDARD_NODES:,} YAML nodes "
                    "(aliases expanded); a standard needs a few hundred",
                )
            if depth > MAX_STANDARD_DEPTH:
                raise _ShapeError(
                    node.start_mark.line + 1,
                    f"nested deeper than {MAX_STANDARD_DEPTH} levels (aliases expanded)",
                )
            measured[id(node)] = (nodes, depth)
            continue
        if id(node) in measured:
            continue
        on_path.add(id(node))
        stack.append((node, True))
        for child in children:
            if id(child) in on_path:
                raise _ShapeError(
                    child.start_mark.line + 1, "an alias refers to a node that contains it"
                )
            if id(child) not in measured:
                stack.append((child, False))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


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
