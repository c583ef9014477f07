"""Pictures people would rather see than read: defect overlays and HTML reports.

Reports are single self-contained HTML files (images embedded as base64 PNG), so they
can be mailed or archived with the batch they describe.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from inspection.io import to_uint8_rgb

VERDICT_COLOURS = {"PASS": "#2e7d32", "REVIEW": "#f9a825", "REJECT": "#c62828"}

_PALETTE = [  # RGB, distinguishable on metal, paint and ceramic
    (255, 64, 64),
    (64, 160, 255),
    (255, 200, 0),
    (200, 64, 255),
    (0, 220, 140),
    (255, 128, 0),
    (255, 255, 255),
]


def class_colour(index: int) -> tuple[int, int, int]:
    return _PALETTE[index % len(_PALETTE)]


def overlay(
    image: np.ndarray,
    regions: Sequence[tuple[np.ndarray, str, tuple[int, int, int]]],
    heatmap: np.ndarray | None = None,
    alpha: float = 0.35,
    dashed: Sequence[tuple[np.ndarray, tuple[int, int, int]]] = (),
) -> np.ndarray:
    """Draw each ``(mask, label, rgb)`` region as a tinted outline with its label.

    ``heatmap`` (``(H, W)`` floats in 0..1), when given, is blended in first, e.g. an
    anomaly map. Each ``(mask, rgb)`` of ``dashed`` is outlined with a dashed line and
    not tinted: what a region was measured on when that is not the region itself (a
    dent's footprint on the height map).
    """
    canvas = to_uint8_rgb(image).copy()
    if heatmap is not None:
        heat = cv2.applyColorMap((np.clip(heatmap, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
        canvas = cv2.addWeighted(canvas, 1 - alpha, heat[:, :, ::-1], alpha, 0)
    line = max(1, round(max(canvas.shape[:2]) / 300))
    labels = []
    for mask, label, colour in regions:
        mask = np.asarray(mask, dtype=np.uint8)
        if not mask.any():
            continue
        tint = canvas.copy()
        tint[mask > 0] = colour
        canvas = cv2.addWeighted(canvas, 1 - alpha, tint, alpha, 0)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(canvas, contours, -1, colour, line, cv2.LINE_AA)
        x, y, _, _ = cv2.boundingRect(np.concatenate(contours))
        labels.append((label, (x, y - 3), colour))
    for mask, colour in dashed:
        _dashed_outline(canvas, np.asarray(mask, dtype=np.uint8), colour, line)
    for label, origin, colour in labels:  # last, so that no later tint covers one
        if label:  # an empty label: the region is outlined only
            _label(canvas, label, origin, colour)
    return canvas


def _dashed_outline(canvas: np.ndarray, mask: np.ndarray, colour, line: int) -> None:
    """The outer edge of ``mask`` in dashes about four lines long, as long gaps."""
    dash = 4 * line + 2
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    for contour in contours:
        points = contour[:, 0, :]
        for start in range(0, len(points), 2 * dash):
            piece = points[start : start + dash + 1]
            cv2.polylines(canvas, [piece], False, colour, line, cv2.LINE_AA)


def height_picture(
    height_map: np.ndarray,
    regions: Sequence[tuple[np.ndarray, tuple[int, int, int]]] = (),
    dashed: Sequence[tuple[np.ndarray, tuple[int, int, int]]] = (),
) -> np.ndarray:
    """A profiler's height map in false colour: the height off the plane of the part's
    face (blue below its median, red above, over the range that holds all but 0.02 % of
    the face's points, so that a dent of a few dozen points spans it and a lone spike
    does not; grey where it saw nothing), labelled with that range in mm, each ``(mask,
    rgb)`` of ``regions`` outlined and each of ``dashed`` outlined dashed: beside a
    part's overlay, the relief its dents were measured on. The face is the part's top
    face (:func:`_face_of`): the belt beside the part and through its holes, millimetres
    down, is clipped dark blue, and the part's tilt on the belt is taken off, rather
    than spread over the scale (either would leave a dent of 0.1 mm one colour)."""
    from inspection.measure import plane_through  # scikit-image: only for a relief

    height = np.asarray(height_map, dtype=np.float32)
    seen = np.isfinite(height)
    picture = np.full((*height.shape, 3), 128, np.uint8)
    if seen.any():
        face = _face_of(height) & seen
        height = height - plane_through(height, face)
        values = height[face]
        level = float(np.median(values))
        low, high = np.percentile(values, [0.01, 99.99])
        span = max(level - float(low), float(high) - level, 1e-6)
        scaled = np.clip((height - level) / span * 127.5 + 127.5, 0, 255)
        coloured = cv2.applyColorMap(np.nan_to_num(scaled).astype(np.uint8), cv2.COLORMAP_TURBO)
        picture[seen] = coloured[:, :, ::-1][seen]
        legend = f"{-span:+.3f} .. {span:+.3f} mm"
    else:
        legend = "no height read"
    picture = overlay(picture, [(m, "", c) for m, c in regions], alpha=0.0, dashed=dashed)
    _label(picture, legend, (0, picture.shape[0]), (255, 255, 255))
    return picture


WALL_NOISE_MULTIPLE = 40.0
"""For a picture, whose map has no scale: a step between neighbouring points of more
than this many deviations of the map's noise is a wall (5 µm noise: 0.2 mm a point; the
synthetic dents' sides are at most 0.14 mm a point)."""


def _face_of(height: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: the part's top face on a height map with no scale
    (:func:`~inspection.measure.top_face`, walls steeper than
    :data:`WALL_NOISE_MULTIPLE` noise deviations a point); every point where that finds
    none."""
    from inspection.measure import top_face, walls

    finite = np.isfinite(height)
    step = np.abs(np.diff(height, axis=1))[finite[:, 1:] & finite[:, :-1]]
    noise = 1.4826 * float(np.median(step)) / np.sqrt(2) if step.size else 0.0
    if noise <= 0:
        return np.ones(height.shape, bool)
    face = top_face(height, walls(height, WALL_NOISE_MULTIPLE * noise))
    return face if (face & finite).any() else np.ones(height.shape, bool)


LABEL_MIN_SCALE = 0.5
"""Smallest OpenCV font scale of an overlay label: about 11 px of text, the least that
reads at the size a picture is shown. Draw an overlay at the size it will be shown (a
thumbnail at thumbnail size): a label drawn on the full frame and shrunk with it is
unreadable."""


def label_scale(shape: tuple[int, ...]) -> float:
    """Font scale of labels on a picture of ``shape``: text about 4-5 % of its longest
    side, and never under :data:`LABEL_MIN_SCALE`."""
    return max(LABEL_MIN_SCALE, max(shape[:2]) / 500)


def _label(canvas: np.ndarray, text: str, origin: tuple[int, int], colour) -> None:
    """The label on a dark box (readable on any surface), kept inside the picture."""
    font, size = cv2.FONT_HERSHEY_SIMPLEX, label_scale(canvas.shape)
    thickness = max(1, round(size * 1.5))
    (w, h), base = cv2.getTextSize(text, font, size, thickness)
    pad = max(1, round(size * 3))
    height, width = canvas.shape[:2]
    x = int(min(max(0, origin[0]), max(0, width - w - 2 * pad)))
    y = int(min(max(h + pad, origin[1]), height - base - pad))  # the text's baseline
    cv2.rectangle(canvas, (x, y - h - pad), (x + w + 2 * pad, y + base + pad), (0, 0, 0), -1)
    cv2.putText(canvas, text, (x + pad, y), font, size, colour, thickness, cv2.LINE_AA)


def png_base64(image: np.ndarray) -> str:
    """An RGB or grayscale image as a base64 PNG string for ``<img src=...>``."""
    out = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, buf = cv2.imencode(".png", out)
    if not ok:
        raise ValueError("cannot encode image as PNG")
    return base64.b64encode(buf.tobytes()).decode("ascii")


def figure_base64(fig) -> str:
    """A matplotlib figure as a base64 PNG string (the figure is closed)."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


@dataclass(frozen=True)
class Card:
    """One part in a report: its picture, a title and lines of detail."""

    image_b64: str
    title: str
    lines: tuple[str, ...] = ()
    verdict: str | None = None


def write_html_report(
    path: str | Path,
    title: str,
    summary: Sequence[tuple[str, str]] = (),
    tables: Sequence[tuple[str, Sequence[str], Sequence[Sequence[str]]]] = (),
    figures: Sequence[tuple[str, str]] = (),
    cards: Sequence[Card] = (),
) -> Path:
    """Write a self-contained HTML report.

    Parameters
    ----------
    summary
        ``(name, value)`` pairs shown at the top.
    tables
        ``(caption, header, rows)``.
    figures
        ``(caption, base64 PNG)`` plots.
    cards
        One card per part shown, with its overlay image.
    """
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
    ]
    if summary:
        parts.append("<dl class='summary'>")
        parts += [f"<div><dt>{esc(k)}</dt><dd>{esc(v)}</dd></div>" for k, v in summary]
        parts.append("</dl>")
    for caption, header, rows in tables:
        parts.append(f"<h2>{esc(caption)}</h2><table><tr>")
        parts += [f"<th>{esc(h)}</th>" for h in header]
        parts.append("</tr>")
        for row in rows:
            parts.append("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>")
        parts.append("</table>")
    for caption, b64 in figures:
        parts.append(f"<figure><img src='data:image/png;base64,{b64}'>")
        parts.append(f"<figcaption>{esc(caption)}</figcaption></figure>")
    if cards:
        parts.append("<h2>Parts</h2><div class='cards'>")
        for card in cards:
            colour = VERDICT_COLOURS.get(card.verdict or "", "#555")
            parts.append(f"<div class='card' style='border-color:{colour}'>")
            parts.append(f"<img src='data:image/png;base64,{card.image_b64}'>")
            parts.append(f"<h3 style='color:{colour}'>{esc(card.title)}</h3>")
            parts += [f"<p>{esc(line)}</p>" for line in card.lines]
            parts.append("</div>")
        parts.append("</div>")
    parts.append("</body></html>")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;background:#fafafa}
h1{margin-bottom:.2em} table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;font-size:.9em}
th{background:#eee} .summary{display:flex;flex-wrap:wrap;gap:1.5em}
.summary dt{font-size:.8em;color:#666} .summary dd{margin:0;font-size:1.3em;font-weight:600}
figure{display:inline-block;margin:1em} figure img{max-width:520px}
.cards{display:flex;flex-wrap:wrap;gap:1em}
.card{width:270px;border:3px solid;border-radius:6px;padding:6px;background:#fff}
.card img{width:100%} .card h3{margin:.3em 0;font-size:1em} .card p{margin:.1em 0;font-size:.8em}
"""
