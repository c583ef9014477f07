"""Reading measured defects from JSON (``inspection standards apply --defects``).

The file is a list of objects ``{"defect_class": str, "attributes": {name: number},
"zone": str | null}``. Anything that is not that shape is refused with the file, the
defect's index and the problem. A value that has the shape but not the sense of a
measurement (a NaN, an infinity, a negative size) is read as it is: the rule engine
sends such a defect to REVIEW with the reason, as it does for one from a camera.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from inspection.errors import UserError
from inspection.types import BBox, Defect

MAX_DEFECTS_BYTES = 16 * 1024 * 1024
"""Largest defects file read (a part's defects take a few kB)."""

KEYS = ("defect_class", "attributes", "zone")
"""The keys a defect is read from."""

IGNORED_KEYS = ("bbox", "score", "frame_index", "footprint_bbox")
"""Keys :meth:`inspection.types.Defect.to_json` writes that are accepted and not used:
without the frame's size a box cannot place a defect in a zone."""


class DefectsError(UserError):
    """A defects file that cannot be used; the message names the file and the problem."""


def read_defects(path: str | Path) -> list[Defect]:
    """Read a JSON list of defects.

    Parameters
    ----------
    path
        The JSON file.

    Returns
    -------
    list[Defect]
        In file order. A defect without ``zone`` (or with ``null``) has an unknown
        zone; one without ``attributes`` has none measured.

    Raises
    ------
    DefectsError
        The file cannot be read, is larger than :data:`MAX_DEFECTS_BYTES`, is not JSON,
        or a defect is malformed (a missing or non-string ``defect_class``, attributes
        that are not a mapping of names to numbers, a zone that is not a string or
        null, an unknown key).
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = f.read(MAX_DEFECTS_BYTES + 1)
    except OSError as exc:
        raise DefectsError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if len(data) > MAX_DEFECTS_BYTES:
        raise DefectsError(
            f"{path}: larger than the {MAX_DEFECTS_BYTES // (1024 * 1024)} MiB a defects "
            "file may hold"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DefectsError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    return parse_defects(text, source=str(path))


def parse_defects(text: str, source: str = "<string>") -> list[Defect]:
    """Defects from JSON text; ``source`` names it in errors (see :func:`read_defects`)."""
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DefectsError(f"{source}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    except RecursionError:
        raise DefectsError(f"{source}: invalid JSON: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise DefectsError(f"{source}: invalid JSON: {exc}") from None
    if not isinstance(items, list):
        raise DefectsError(f"{source}: expected a JSON list of defects, got {_kind(items)}")
    return [defect_from_json(item, f"{source}: defect [{i}]") for i, item in enumerate(items)]


def defect_from_json(item: Any, where: str, ignore_unknown: bool = False) -> Defect:
    """One defect from its decoded JSON object.

    Parameters
    ----------
    item
        The decoded object.
    where
        Names the defect in errors (``"d.json: defect [3]"``).
    ignore_unknown
        Accept keys other than :data:`KEYS` and :data:`IGNORED_KEYS` (a dataset
        manifest's defects carry more); by default they are refused, so that a
        misspelt ``zone`` is not read as an unknown zone.

    Raises
    ------
    DefectsError
        Naming ``where``, the field and the problem.
    """
    if not isinstance(item, dict):
        raise DefectsError(
            f"{where}: expected an object with defect_class, attributes and zone, got {_kind(item)}"
        )
    unknown = [k for k in item if k not in KEYS and k not in IGNORED_KEYS]
    if unknown and not ignore_unknown:
        raise DefectsError(
            f"{where}: unknown key {unknown[0]!r} (known: {', '.join(KEYS + IGNORED_KEYS)})"
        )
    if "defect_class" not in item:
        raise DefectsError(f"{where}: defect_class is missing")
    defect_class = item["defect_class"]
    if not isinstance(defect_class, str) or not defect_class:
        raise DefectsError(
            f"{where}: defect_class must be a non-empty string, got {_kind(defect_class)}"
        )
    zone = item.get("zone")
    if zone is not None and not isinstance(zone, str):
        raise DefectsError(f"{where}: zone must be a string or null, got {_kind(zone)}")
    return Defect(defect_class, _attributes(item.get("attributes", {}), where), zone=zone)


def manifest_defects(entries: Any, where: str) -> list[Defect] | None:
    """A dataset part's exact defects, from its manifest's ``defects`` field (the
    synthetic line's generator attributes), or ``None`` when the part has none.

    Each entry is read by :func:`defect_from_json` (other keys allowed); a ``bbox`` or a
    ``centroid`` (pixels) places it, so that the rule engine can find its zone.

    Raises
    ------
    DefectsError
        Naming ``where``, the entry and the problem.
    """
    if entries is None:
        return None
    if not isinstance(entries, list):
        raise DefectsError(f"{where}: defects must be a list, got {_kind(entries)}")
    defects = []
    for i, entry in enumerate(entries):
        at = f"{where}: defect [{i}]"
        defect = defect_from_json(entry, at, ignore_unknown=True)
        defects.append(replace(defect, bbox=_placement(entry, at)))
    return defects


def _placement(entry: dict, where: str) -> BBox | None:
    """The entry's ``bbox``, or a 1 px box at its ``centroid``; ``None`` without either."""
    box, centre = entry.get("bbox"), entry.get("centroid")
    try:
        if box:
            return BBox(*(int(v) for v in box))
        if centre:
            x, y = (int(v) for v in centre)
            return BBox(x, y, x + 1, y + 1)
    except (TypeError, ValueError, OverflowError):
        raise DefectsError(
            f"{where}: bbox must be 4 pixel numbers and centroid 2, got {box or centre!r}"
        ) from None
    return None


def _attributes(value: Any, where: str) -> dict[str, float]:
    if not isinstance(value, dict):
        raise DefectsError(
            f"{where}: attributes must be an object of names to numbers, got {_kind(value)}"
        )
    out = {}
    for name, number in value.items():
        # bool is an int to Python, not a measurement to anyone.
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise DefectsError(f"{where}: attributes.{name} must be a number, got {_kind(number)}")
        try:
            out[name] = float(number)
        except OverflowError:  # an integer beyond float: as large as a float gets
            out[name] = float("inf") if number > 0 else float("-inf")
    return out


def _kind(value: Any) -> str:
    """``a string 'abc'``, ``an object``: what a JSON value is, shortly, for errors."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"a number {value:g}" if isinstance(value, float) else f"a number {_short(value)}"
    if isinstance(value, str):
        return f"a string {_short(value)!r}" if value else "an empty string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _short(value: Any, limit: int = 40) -> str:
    text = str(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[:limit] + "..."
