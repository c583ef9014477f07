"""Fuzz the readers of user input: images, standards and --defects JSON.

python benchmarks/fuzz.py                          # 10,000 inputs per target
python benchmarks/fuzz.py --n 2000 --max-seconds 60 --targets defects

Three targets, each fed mutated real inputs and random ones, each bounded by ``--n``
inputs and ``--max-seconds``:

- ``image``: :func:`inspection.io.read_image` on PNG (8-bit RGB, RGBA, 16-bit grey),
  JPEG and TIFF (8 and 16-bit) files encoded with OpenCV, then bit-flipped, overwritten,
  truncated, spliced, or replaced by random bytes. An image read must be an
  ``(H, W)`` or ``(H, W, 3)`` uint8/uint16 array.
- ``standard``: :func:`inspection.standards.parse_standard` on the shipped standards with
  cuts, insertions and shuffled lines, random text, alias bombs and deep nesting. A
  standard that loads must still refuse to pass a NaN, infinite or negative measurement.
- ``defects``: :func:`inspection.standards.parse_defects` then ``apply_standard`` on
  random JSON documents, most of them lists of near-defects, some corrupted as text.
  The reader must accept exactly the well-formed documents, and a defect the standard
  cannot decide (unknown class, undeclared zone, a measurement that is NaN, infinite or
  negative) must never give PASS.

Counted per target: inputs, UserErrors (a refusal with a message: expected), accepted,
PASS on malformed input (must be 0) and other exceptions (must be 0: each is a bug,
printed with the input's kind). Exit status 1 when either is not 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import resource
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from inspection.errors import UserError
from inspection.io import read_image
from inspection.standards import apply_standard, load_standard, parse_defects, parse_standard
from inspection.standards.defects import IGNORED_KEYS, KEYS
from inspection.types import Defect, Verdict

REPO = Path(__file__).resolve().parents[1]
STANDARDS = sorted((REPO / "datasets" / "standards").glob("*.yaml"))
TARGETS = ("image", "standard", "defects")


@dataclass
class Tally:
    """What one target's inputs did."""

    inputs: int = 0
    user_errors: int = 0
    accepted: int = 0
    pass_on_malformed: int = 0
    other: int = 0
    seconds: float = 0.0
    slowest_s: float = 0.0
    slowest_kind: str = ""
    kinds: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


# An input: (its kind, for reports; a function that runs it and returns True when it
# was accepted; raises UserError when refused; raises _Malformed when a rule broke).
Case = tuple[str, Callable[[], bool]]


class _Malformed(Exception):
    """A malformed input passed (or a reader's contract broke)."""


# --- images ---


def _seed_images(rng: np.random.Generator) -> list[tuple[str, str, bytes]]:
    """(kind, suffix, encoded bytes) of small real images in every format read."""
    seeds = []
    for h, w in ((16, 24), (40, 33), (64, 64)):
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        gray16 = rng.integers(0, 65536, (h, w), dtype=np.uint16)
        rgba = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
        for kind, suffix, image in (
            ("png8", ".png", rgb),
            ("png_rgba", ".png", rgba),
            ("png16", ".png", gray16),
            ("jpeg", ".jpg", rgb),
            ("tiff8", ".tif", rgb),
            ("tiff16", ".tif", gray16),
        ):
            ok, data = cv2.imencode(suffix, image)
            assert ok, kind
            seeds.append((kind, suffix, data.tobytes()))
    return seeds


def _mutate_bytes(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    buf = bytearray(data)
    how = rng.choice(["bitflip", "overwrite", "truncate", "insert", "splice", "header", "random"])
    if how == "bitflip":
        for _ in range(rng.randint(1, 16)):
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
    elif how == "overwrite":  # header fields live in the first bytes: hit them often
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(min(len(buf), 64) if rng.random() < 0.5 else len(buf))
            buf[i] = rng.choice([0, 0xFF, 0x7F, 0x80, rng.randrange(256)])
    elif how == "truncate":
        buf = buf[: rng.randrange(len(buf))]
    elif how == "insert":
        i = rng.randrange(len(buf) + 1)
        buf[i:i] = rng.randbytes(rng.randint(1, 64))
    elif how == "splice":  # repeat a stretch: duplicated chunks and markers
        i = rng.randrange(len(buf))
        j = min(len(buf), i + rng.randint(1, 256))
        buf[i:i] = buf[i:j] * rng.randint(1, 4)
    elif how == "header":
        buf = buf[: rng.randint(1, 64)]
    else:
        buf = bytearray(rng.randbytes(rng.randint(0, 2048)))
    return how, bytes(buf)


def image_cases(rng: random.Random, folder: Path) -> Iterator[Case]:
    seeds = _seed_images(np.random.default_rng(rng.randrange(2**32)))
    while True:
        kind, suffix, data = rng.choice(seeds)
        how, mutated = _mutate_bytes(rng, data)
        if rng.random() < 0.1:
            suffix = rng.choice([".png", ".jpg", ".tif", ".bmp", ".bin"])
        path = folder / f"input{suffix}"
        path.write_bytes(mutated)

        def run(path: Path = path) -> bool:
            image = read_image(path)
            if not (
                isinstance(image, np.ndarray)
                and image.dtype in (np.uint8, np.uint16)
                and (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3))
            ):
                raise RuntimeError(
                    f"read_image returned {type(image)} {getattr(image, 'shape', '')}"
                )
            return True

        yield f"{kind}/{how}", run


# --- standards ---

YAML_PIECES = [
    ":", " ", "\n", "- ", "[", "]", "{", "}", "&a ", "*a", "'", '"', "#", "  ", "\t", "!!",
    "<<: ", "length_mm > ", "nan", ".inf", "-1", "1e999", "zones: [A]", "id: ", "null",
    "severity: critical", "action: accept", "when: []", "\x00", "\ufeff", "9" * 30,
    "!!python/object:os.system", "zones: []", "region: [0, 0, 1, 1]",
]  # fmt: skip

POISONED = [
    Defect("scratch", {"length_mm": math.nan}, zone="A"),
    Defect("crack", {"depth_mm": -1.0}),
    Defect("dent", {"length_mm": math.inf}, zone="B"),
    Defect("scratch", {"length_mm": 1.0}, zone="no such zone"),
]


def _piece(rng: random.Random) -> str:
    if rng.random() < 0.7:
        return rng.choice(YAML_PIECES)
    return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0x110000)]))
                   for _ in range(rng.randint(1, 8)))  # fmt: skip


def _mutate_text(rng: random.Random, text: str) -> str:
    for _ in range(rng.randint(1, 4)):
        how = rng.choice(["cut", "insert", "replace", "dup_line", "swap_lines"])
        i = rng.randrange(len(text) + 1)
        j = min(len(text), i + rng.randint(0, 40))
        if how == "cut":
            text = text[:i] + text[j:]
        elif how == "insert":
            text = text[:i] + _piece(rng) + text[i:]
        elif how == "replace":
            text = text[:i] + _piece(rng) + text[j:]
        else:
            lines = text.split("\n")
            a, b = rng.randrange(len(lines)), rng.randrange(len(lines))
            if how == "dup_line":
                lines.insert(b, lines[a])
            else:
                lines[a], lines[b] = lines[b], lines[a]
            text = "\n".join(lines)
    return text


def _special_standard(rng: random.Random, base: str) -> str:
    kind = rng.choice(["laughs", "nest", "recursive", "wide"])
    if kind == "laughs":
        levels = rng.randint(3, 40)
        lines = ["a0: &a0 lol"] + [
            f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels + 1)
        ]
        return "\n".join(lines) + "\n" + base.replace("zones:", f"zones: *a{levels}\nz:", 1)
    if kind == "nest":
        depth = rng.choice([10, 31, 33, 200, 2000])
        return base + "attributes: " + "[" * depth + "]" * depth + "\n"
    if kind == "recursive":
        return base + "attributes: &r [x, [y, *r]]\n"
    return base + "attributes: [" + ", ".join(["[x]"] * rng.randint(1, 2000)) + "]\n"


def standard_cases(rng: random.Random) -> Iterator[Case]:
    texts = [p.read_text(encoding="utf-8") for p in STANDARDS]
    while True:
        roll = rng.random()
        if roll < 0.8:
            kind, text = "mutated", _mutate_text(rng, rng.choice(texts))
        elif roll < 0.85:  # costly to parse (100-700 ms): a few
            kind, text = "special", _special_standard(rng, rng.choice(texts))
        elif roll < 0.95:
            kind, text = "pieces", "".join(_piece(rng) for _ in range(rng.randint(0, 80)))
        else:
            kind = "random"
            text = rng.randbytes(rng.randint(0, 512)).decode("utf-8", errors="replace")

        def run(text: str = text) -> bool:
            standard = parse_standard(text, source="fuzz.yaml")
            for defect in POISONED:
                if apply_standard(standard, [defect]).verdict is Verdict.PASS:
                    raise _Malformed(f"a loaded standard passed {defect}")
            return True

        yield kind, run


# --- defects JSON ---

BRACKET = load_standard(REPO / "datasets" / "standards" / "bracket.yaml")
ATTRIBUTES = ["length_mm", "width_mm", "area_mm2", "depth_mm", "delta_e", "count"]


def _number(rng: random.Random) -> float | int:
    return rng.choice(
        [
            lambda: rng.uniform(0, 20),
            lambda: rng.uniform(-5, 5),
            lambda: rng.choice([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e308, 5e-324]),
            lambda: rng.randint(-(10**30), 10**30),
            lambda: rng.randint(0, 10),
        ]
    )()


def _json_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.5:
        return rng.choice(
            [None, True, False, _number(rng), "", "A", "scratch", "8", rng.randbytes(3).hex()]
        )
    if roll < 0.75:
        return [_json_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(["defect_class", "zone", "x", ""]): _json_value(rng, depth + 1)
            for _ in range(rng.randint(0, 4))}  # fmt: skip


def _defect_like(rng: random.Random) -> Any:
    def mostly(good: Callable[[], Any]) -> Any:
        return good() if rng.random() < 0.9 else _json_value(rng)

    item: dict[str, Any] = {}
    if rng.random() < 0.95:
        item["defect_class"] = mostly(lambda: rng.choice([*BRACKET.class_ids, "burr"]))
    if rng.random() < 0.7:
        item["attributes"] = mostly(
            lambda: {rng.choice(ATTRIBUTES): _number(rng) for _ in range(rng.randint(0, 4))}
        )
    if rng.random() < 0.6:
        item["zone"] = mostly(lambda: rng.choice(["A", "B", "Q", "", None]))
    if rng.random() < 0.05:
        item[rng.choice(["zon", "bbox", "score", "frame_index", "extra"])] = _json_value(rng)
    return item if rng.random() < 0.95 else _json_value(rng)


def well_formed(doc: Any) -> bool:
    """The reader's contract, stated independently: what it must accept."""
    known = {*KEYS, *IGNORED_KEYS}
    return isinstance(doc, list) and all(
        isinstance(d, dict)
        and set(d) <= known
        and isinstance(d.get("defect_class"), str)
        and d["defect_class"] != ""
        and isinstance(d.get("attributes", {}), dict)
        and all(
            isinstance(v, int | float) and not isinstance(v, bool)
            for v in d.get("attributes", {}).values()
        )
        and (d.get("zone") is None or isinstance(d.get("zone"), str))
        for d in doc
    )


def doubtful(defect: Defect) -> bool:
    """A defect the bracket standard cannot pass."""
    return (
        defect.defect_class not in BRACKET.class_ids
        or (defect.zone is not None and defect.zone not in {z.id for z in BRACKET.zones})
        or any(not math.isfinite(v) or v < 0 for v in defect.attributes.values())
    )


def defects_cases(rng: random.Random) -> Iterator[Case]:
    while True:
        roll = rng.random()
        doc = (
            [_defect_like(rng) for _ in range(rng.randint(0, 5))]
            if roll < 0.85
            else _json_value(rng)
        )
        text = json.dumps(doc)
        kind = "document" if isinstance(doc, list) else "value"
        if rng.random() < 0.15:
            kind = "corrupted"
            i = rng.randrange(len(text) + 1)
            text = text[:i] + _piece(rng) + text[i + rng.randint(0, 6) :]
            try:
                doc = json.loads(text)
            except (ValueError, RecursionError):
                doc = None  # invalid JSON: must be refused
                text_is_json = False
            else:
                text_is_json = True
        else:
            text_is_json = True

        def run(text: str = text, doc: Any = doc, text_is_json: bool = text_is_json) -> bool:
            try:
                defects = parse_defects(text, source="fuzz.json")
            except UserError:
                if text_is_json and well_formed(doc):
                    raise _Malformed("a well-formed document was refused") from None
                raise
            if not (text_is_json and well_formed(doc)):
                raise _Malformed("a malformed document was accepted")
            result = apply_standard(BRACKET, defects)
            if result.verdict is Verdict.PASS and any(doubtful(d) for d in defects):
                raise _Malformed(f"PASS with doubtful defects: {result.reasons}")
            return True

        yield kind, run


# --- the run ---


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence C libraries' warnings (libpng, libtiff) on fd 2; Python errors are caught."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def run_target(name: str, cases: Iterator[Case], n: int, max_seconds: float, show: int) -> Tally:
    tally = Tally()
    start = time.monotonic()
    with tqdm(total=n, desc=name, unit="input", file=sys.stdout, mininterval=1.0) as bar:
        for kind, run in cases:
            if tally.inputs >= n or time.monotonic() - start > max_seconds:
                break
            t0 = time.perf_counter()
            try:
                run()
                tally.accepted += 1
            except UserError:
                tally.user_errors += 1
            except _Malformed as exc:
                tally.pass_on_malformed += 1
                if len(tally.failures) < show:
                    tally.failures.append(f"{name} {kind}: {exc}")
            except Exception as exc:  # the bugs this run looks for
                tally.other += 1
                if len(tally.failures) < show:
                    where = traceback.extract_tb(exc.__traceback__)[-1]
                    tally.failures.append(
                        f"{name} {kind}: {type(exc).__name__}: {exc} "
                        f"({where.filename}:{where.lineno})"
                    )
            elapsed = time.perf_counter() - t0
            if elapsed > tally.slowest_s:
                tally.slowest_s, tally.slowest_kind = elapsed, kind
            tally.inputs += 1
            tally.kinds[kind.split("/")[0]] += 1
            bar.update()
    tally.seconds = time.monotonic() - start
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="inputs per target")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="time bound per target")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    parser.add_argument("--show", type=int, default=20, help="failures printed per target")
    args = parser.parse_args()

    console = Console(width=150)  # the table whole, also in a log
    tallies: dict[str, Tally] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.targets:
            rng = random.Random(f"{args.seed}-{name}")
            if name == "image":
                with _quiet_stderr():
                    tallies[name] = run_target(
                        name, image_cases(rng, Path(tmp)), args.n, args.max_seconds, args.show
                    )
            else:
                cases = standard_cases(rng) if name == "standard" else defects_cases(rng)
                tallies[name] = run_target(name, cases, args.n, args.max_seconds, args.show)

    table = Table(title=f"fuzz, seed {args.seed}")
    for col in ("target", "inputs", "UserError", "accepted", "PASS on malformed",
                "other exceptions", "seconds", "slowest input"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("target", "slowest input") else "right")
    for name, t in tallies.items():
        table.add_row(
            name, f"{t.inputs:,}", f"{t.user_errors:,}", f"{t.accepted:,}",
            str(t.pass_on_malformed), str(t.other), f"{t.seconds:.0f}",
            f"{t.slowest_s * 1000:.0f} ms ({t.slowest_kind})",
        )  # fmt: skip
    console.print(table)
    for name, t in tallies.items():
        kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(t.kinds.items()))
        console.print(f"{name} inputs by kind: {kinds}", highlight=False)
        if t.inputs < args.n:
            console.print(f"[yellow]{name}: stopped at --max-seconds after {t.inputs:,}[/]")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    console.print(f"peak memory {peak:.0f} MiB", highlight=False)
    failures = [f for t in tallies.values() for f in t.failures]
    for line in failures:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    if any(t.pass_on_malformed or t.other for t in tallies.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
