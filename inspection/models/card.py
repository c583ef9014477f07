"""Packaging a trained model for shipping: a manifest of file hashes and a model card.

Torch-free: an edge box verifies a bundle with :func:`verify_manifest` before loading it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from inspection.metrics import REPORT_METRICS
from inspection.pipeline import thresholds_of

MANIFEST = "manifest.json"
CARD = "MODEL_CARD.md"
NOT_SHIPPED = frozenset({MANIFEST, "train_state.pt", "train_log.jsonl"})


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(model_dir: str | Path) -> Path:
    """``manifest.json``: SHA-256 and size of every file the model ships with (sub-folders
    such as ``decoder/`` included, by relative path)."""
    model_dir = Path(model_dir)
    files = {
        p.relative_to(model_dir).as_posix(): {"sha256": sha256(p), "bytes": p.stat().st_size}
        for p in sorted(model_dir.rglob("*"))
        if p.is_file() and p.name not in NOT_SHIPPED
    }
    path = model_dir / MANIFEST
    path.write_text(json.dumps({"files": files}, indent=2) + "\n", encoding="utf-8")
    return path


def verify_manifest(model_dir: str | Path) -> list[str]:
    """Problems with a shipped model: missing, extra-changed or corrupted files."""
    model_dir = Path(model_dir)
    manifest = json.loads((model_dir / MANIFEST).read_text(encoding="utf-8"))
    problems = []
    for name, entry in manifest["files"].items():
        path = model_dir / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif sha256(path) != entry["sha256"]:
            problems.append(f"{name}: SHA-256 differs from the manifest (corrupt or modified)")
    return problems


def write_model_card(
    model_dir: str | Path,
    metrics: dict[str, Any],
    command: str,
    description: str,
    extra_sections: dict[str, str] | None = None,
) -> Path:
    """``MODEL_CARD.md`` with the measured metrics and the command that made the model."""
    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    extra = config.get("extra", {})
    lines = [
        f"# Model card: {model_dir.name}",
        "",
        description,
        "",
        f"- model version: `{config.get('model_version')}`",
        f"- architecture: `{config['config'].get('name')}` "
        f"(image size {config['config'].get('image_size')}, tower "
        f"{config['config'].get('image_tower')})",
        f"- classes: {', '.join(config['config'].get('classes', []))}",
        f"- thresholds: {_thresholds_line(extra)}",
        "",
        "## How it was made",
        "",
        "```bash",
        command.strip(),
        "```",
        "",
        "## Measured",
        "",
        "| metric | value |",
        "| --- | --- |",
    ]
    for key in (
        "image_auroc",
        "image_auroc_image_only",
        "pixel_auroc",
        "pixel_aupro",
        "false_reject_rate_at_miss_1pct",
        "size_error_mm_median",
    ):
        lines.append(f"| {key} | {_fmt(metrics.get(key))} |")
    lines.append(f"| latency p50 (ms, CPU) | {_fmt(metrics.get('latency_ms', {}).get('p50'))} |")
    lines += [
        "",
        "| class | accuracy | precision | recall | AUROC (fused) | AUROC (image) "
        "| length error (mm, median) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    by_score = metrics.get("per_class_by_score", {})
    size_error = metrics.get("size_error_mm_median_by_class", {})
    for cls, v in metrics.get("per_class", {}).items():
        s = by_score.get(cls, {})
        cells = [
            v.get("accuracy"),
            v.get("precision"),
            v.get("recall"),
            s.get("auroc"),
            s.get("auroc_image_only"),
            size_error.get(cls),
        ]
        lines.append(f"| {cls} | " + " | ".join(_fmt(c) for c in cells) + " |")
    for title, body in (extra_sections or {}).items():
        lines += ["", f"## {title}", "", body.strip()]
    path = model_dir / CARD
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def decoder_section(evaluations: list[tuple[str, dict[str, Any]]]) -> str:
    """A table of the report decoder's figures, one row per evaluation ``(what, metrics)``."""
    keys = REPORT_METRICS
    lines = [
        "Reports scored against the rule engine on the same measurements "
        "(see `inspection/decoder/evaluate.py`).",
        "",
        "| parts under | n | " + " | ".join(keys) + " |",
        "| --- | --- | " + " | ".join("---" for _ in keys) + " |",
    ]
    for what, m in evaluations:
        cells = [_fmt(m.get(k)) for k in keys]
        lines.append(f"| {what} | {m.get('report_parts')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _thresholds_line(metadata: dict[str, Any]) -> str:
    """The thresholds as the line uses them (through :func:`pipeline.thresholds_of`), and
    what calibration recorded where the line lifts a value to its floor."""
    recorded = metadata.get("thresholds") or {}
    used = thresholds_of(metadata)
    parts = []
    for name in ("image", "pixel", "audio"):
        value = getattr(used, name)
        part = f"{name} {value:.4g}"
        if name in recorded and float(recorded[name]) < value:
            part += f" (recorded {float(recorded[name]):.2g}, lifted to its floor)"
        parts.append(part)
    source = (
        f"{recorded['held_out_good']} held-out good parts"
        if "held_out_good" in recorded
        else used.version
    )
    return ", ".join(parts) + f"; set on {source}"


def _fmt(value: Any) -> str:
    return "n/a" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))
