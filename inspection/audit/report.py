"""The audit's readable outputs, made from ``results.jsonl``: ``report.html`` and
``results.csv``.

Both are rewritten after every run from every record in the folder (a resumed audit
reports the whole archive) by streaming the records twice, so neither the archive nor
its records are ever held whole. The report is one self-contained HTML file: summary and
yield, a defect Pareto chart, counts by clause, the inputs that could not be read and
why, and a sortable, filterable table of the parts (small inline script, nothing from a
network) with a thumbnail of the defect overlay for every part that did not pass; a
click opens the full-size overlay beside it in ``overlays/``.

Size stays bounded on 100,000 parts: the table holds every part that did not pass first,
then passing ones, up to :data:`MAX_TABLE_ROWS`; thumbnails are inlined up to
:data:`MAX_INLINE_THUMBNAILS` and linked (``overlays/thumbs/``, lazily loaded) past it.
``results.csv`` always holds every part.
"""

from __future__ import annotations

import base64
import csv
import html
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inspection.audit.results import iter_records
from inspection.viz import VERDICT_COLOURS, figure_base64

REPORT_NAME = "report.html"
CSV_NAME = "results.csv"
MAX_TABLE_ROWS = 10_000
MAX_INLINE_THUMBNAILS = 2_000
MAX_LISTED_UNREADABLE = 1_000
VERDICTS = ("PASS", "REJECT", "REVIEW")
CSV_COLUMNS = (
    "source",
    "part_id",
    "verdict",
    "action",
    "severity",
    "clauses",
    "defects",
    "n_defects",
    "part_score",
    "image_score",
    "audio_score",
    "reasons",
    "error",
    "overlay",
    "width",
    "height",
    "sha256",
    "model_version",
    "standard_version",
    "calibration_version",
)


@dataclass
class AuditStats:
    """Counts over every record of an audit folder."""

    parts: int = 0
    verdicts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(VERDICTS, 0))
    unreadable: int = 0
    defects: Counter = field(default_factory=Counter)  # defect class -> defects
    clause_parts: Counter = field(default_factory=Counter)  # clause -> parts citing it
    clause_defects: Counter = field(default_factory=Counter)  # clause -> defects under it
    errors: list[tuple[str, str]] = field(default_factory=list)  # the first few

    @property
    def readable(self) -> int:
        return self.parts - self.unreadable

    @property
    def yield_rate(self) -> float | None:
        """Share of the parts audited that passed (unreadable inputs count as not
        passed: they were not shown to pass)."""
        return self.verdicts["PASS"] / self.parts if self.parts else None

    def add(self, record: dict[str, Any]) -> None:
        self.parts += 1
        self.verdicts[record["verdict"]] = self.verdicts.get(record["verdict"], 0) + 1
        if record.get("error"):
            self.unreadable += 1
            if len(self.errors) < MAX_LISTED_UNREADABLE:
                self.errors.append((record["source"], record["error"]))
        for d in record.get("defects", []):
            self.defects[d["defect_class"]] += 1
            if d.get("clause"):
                self.clause_defects[d["clause"]] += 1
        for clause in record.get("clauses", []):
            self.clause_parts[clause] += 1


def collect(out: Path) -> AuditStats:
    stats = AuditStats()
    for record in iter_records(out):
        stats.add(record)
    return stats


def write_outputs(out: Path, run: dict[str, Any]) -> AuditStats:
    """Write ``results.csv`` and ``report.html`` from ``results.jsonl``; the counts."""
    out = Path(out)
    stats = collect(out)
    write_csv(out)
    write_report(out, run, stats)
    return stats


# ---------------------------------------------------------------------------------------
# CSV


def csv_row(record: dict[str, Any]) -> dict[str, Any]:
    scores = record.get("scores") or {}
    return {
        "source": record["source"],
        "part_id": record.get("part_id", ""),
        "verdict": record["verdict"],
        "action": record.get("action", ""),
        "severity": record.get("severity") or "",
        "clauses": " ".join(record.get("clauses", [])),
        "defects": describe_defects(record),
        "n_defects": len(record.get("defects", [])),
        "part_score": _num(scores.get("part")),
        "image_score": _num(scores.get("image")),
        "audio_score": _num(scores.get("audio")),
        "reasons": "; ".join(record.get("reasons", [])),
        "error": record.get("error") or "",
        "overlay": record.get("overlay") or "",
        "width": record.get("width", ""),
        "height": record.get("height", ""),
        "sha256": record.get("sha256") or "",
        "model_version": record.get("model_version") or "",
        "standard_version": record.get("standard_version") or "",
        "calibration_version": record.get("calibration_version") or "",
    }


def write_csv(out: Path) -> Path:
    from inspection.records.export import spreadsheet_safe

    path = Path(out) / CSV_NAME
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for record in iter_records(out):
            writer.writerow(spreadsheet_safe(csv_row(record)))
    partial.replace(path)
    return path


def describe_defects(record: dict[str, Any]) -> str:
    """``scratch 6.2 mm @A 4.1.1; dent @B`` for a record's defects."""
    parts = []
    for d in record.get("defects", []):
        size = d["measurements"].get("length_mm")
        text = d["defect_class"] + (f" {size:.1f} mm" if size is not None else "")
        text += f" @{d['zone'] or '-'}" + (f" {d['clause']}" if d.get("clause") else "")
        parts.append(text)
    return "; ".join(parts)


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


# ---------------------------------------------------------------------------------------
# Charts


def pareto_figure(defects: Counter) -> str | None:
    """Defects by class, most frequent first, with the cumulative share: a base64 PNG,
    or ``None`` when there are no defects. Axes are fitted to the data (nothing clips)."""
    if not defects:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = defects.most_common()
    names = [k for k, _ in items]
    counts = [v for _, v in items]
    total = sum(counts)
    cumulative = [100 * sum(counts[: i + 1]) / total for i in range(len(counts))]
    fig, ax = plt.subplots(figsize=(max(5.5, 0.9 * len(names) + 2), 3.6))
    bars = ax.bar(names, counts, color="#c62828")
    ax.bar_label(bars, padding=2, fontsize=9)
    ax.set_ylim(0, max(counts) * 1.18)  # room for the labels above the tallest bar
    ax.set_ylabel("defects")
    ax.tick_params(axis="x", rotation=30)
    share = ax.twinx()
    share.plot(names, cumulative, color="#1f4e79", marker="o")
    share.set_ylim(0, 108)
    share.set_ylabel("cumulative %")
    ax.set_title(f"Defect Pareto ({total} defects)")
    fig.tight_layout()
    return figure_base64(fig)


def verdict_figure(stats: AuditStats) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = [stats.verdicts.get(v, 0) for v in VERDICTS]
    fig, ax = plt.subplots(figsize=(5.5, 2.4))
    bars = ax.barh(VERDICTS, counts, color=[VERDICT_COLOURS[v] for v in VERDICTS])
    ax.bar_label(bars, padding=3, fontsize=9)
    ax.set_xlim(0, max(1, max(counts)) * 1.2)
    ax.invert_yaxis()
    ax.set_xlabel("parts")
    ax.set_title("Verdicts")
    fig.tight_layout()
    return figure_base64(fig)


# ---------------------------------------------------------------------------------------
# HTML


def write_report(out: Path, run: dict[str, Any], stats: AuditStats | None = None) -> Path:
    """Write ``DIR/report.html`` (see the module) and return its path."""
    out = Path(out)
    stats = stats or collect(out)
    esc = html.escape
    title = f"Audit of {run.get('input', out)}"
    body = [
        f"<h1>{esc(title)}</h1>",
        _versions(run),
        _summary(stats),
        "<section class='charts'>",
    ]
    pareto = pareto_figure(stats.defects)
    if pareto:
        body.append(_figure(pareto, "Defects by class, most frequent first (Pareto)", "pareto"))
    else:
        body.append("<p>No defects found.</p>")
    body.append(_figure(verdict_figure(stats), "Parts by verdict", "verdicts"))
    body.append("</section>")
    body.append(_clauses(stats, run))
    body.append(_unreadable(stats))
    body += list(_parts_table(out, stats))
    page = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        *body,
        f"<script>{_JS}</script></body></html>",
    ]
    path = out / REPORT_NAME
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text("\n".join(page), encoding="utf-8")
    partial.replace(path)
    return path


def _versions(run: dict[str, Any]) -> str:
    esc = html.escape
    t = run.get("thresholds") or {}
    rows = [
        ("standard", f"{run.get('standard_id')} rev {run.get('standard_revision')}"),
        ("standard version", run.get("standard_version")),
        ("model version", run.get("model_version")),
        ("calibration version", run.get("calibration_version")),
        ("thresholds", ", ".join(f"{k} {v:.4g}" for k, v in t.items())),
        ("engine", run.get("engine")),
        ("input", f"{run.get('input')} ({run.get('input_kind')})"),
    ]
    cells = "".join(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in rows)
    return f"<table class='versions' id='versions'>{cells}</table>"


def _summary(stats: AuditStats) -> str:
    esc = html.escape
    y = stats.yield_rate
    items = [
        ("parts", str(stats.parts), "#222"),
        *((v, str(stats.verdicts.get(v, 0)), VERDICT_COLOURS[v]) for v in VERDICTS),
        ("could not be read", str(stats.unreadable), "#555"),
        ("yield (PASS / parts)", "n/a" if y is None else f"{100 * y:.1f} %", "#222"),
    ]
    cells = "".join(
        f"<div><dt>{esc(k)}</dt><dd style='color:{c}'>{esc(v)}</dd></div>" for k, v, c in items
    )
    return f"<dl class='summary' id='summary'>{cells}</dl>"


def _figure(b64: str, caption: str, ident: str) -> str:
    return (
        f"<figure id='{ident}'><img alt='{html.escape(caption)}' "
        f"src='data:image/png;base64,{b64}'><figcaption>{html.escape(caption)}</figcaption>"
        "</figure>"
    )


def _clauses(stats: AuditStats, run: dict[str, Any]) -> str:
    esc = html.escape
    clauses = run.get("clauses") or {}
    rows = []
    for clause, parts in stats.clause_parts.most_common():
        info = clauses.get(clause, {})
        rows.append(
            f"<tr><td>{esc(clause)}</td><td>{esc(str(info.get('severity', '')))}</td>"
            f"<td>{esc(str(info.get('action', '')))}</td><td data-sort='{parts}'>{parts}</td>"
            f"<td data-sort='{stats.clause_defects[clause]}'>{stats.clause_defects[clause]}</td>"
            f"<td>{esc(info.get('text', ''))}</td></tr>"
        )
    if not rows:
        return "<h2>Counts by clause</h2><p>No clause was cited.</p>"
    head = "".join(
        f"<th>{h}</th>" for h in ("clause", "severity", "action", "parts", "defects", "text")
    )
    return (
        "<h2>Counts by clause</h2><table class='sortable' id='clauses'>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _unreadable(stats: AuditStats) -> str:
    esc = html.escape
    if not stats.unreadable:
        return "<h2>Inputs that could not be read</h2><p>None: every input was read.</p>"
    rows = "".join(
        f"<tr><td>{esc(source)}</td><td>{esc(error)}</td></tr>" for source, error in stats.errors
    )
    more = ""
    if stats.unreadable > len(stats.errors):
        more = f"<p>and {stats.unreadable - len(stats.errors)} more: see {CSV_NAME}.</p>"
    return (
        f"<h2>Inputs that could not be read ({stats.unreadable})</h2>"
        "<p>Each is REVIEW: an input that was not inspected is never a PASS.</p>"
        "<table class='sortable' id='unreadable'><thead><tr><th>input</th><th>why</th>"
        f"</tr></thead><tbody>{rows}</tbody></table>{more}"
    )


def _table_records(out: Path) -> Iterator[dict[str, Any]]:
    """Every part that did not pass, then the passing ones, up to MAX_TABLE_ROWS."""
    shown = 0
    for flagged in (True, False):
        for record in iter_records(out):
            if (record["verdict"] != "PASS") is flagged:
                if shown == MAX_TABLE_ROWS:
                    return
                shown += 1
                yield record


def _parts_table(out: Path, stats: AuditStats) -> Iterator[str]:
    esc = html.escape
    options = "".join(f"<option>{v}</option>" for v in VERDICTS)
    yield (
        f"<h2>Parts</h2><div class='controls'><input id='filter' type='search' "
        "placeholder='filter: part, defect, clause, reason...' aria-label='filter'>"
        f"<select id='verdict' aria-label='verdict'><option value=''>all verdicts</option>"
        f"{options}</select><span id='shown'></span></div>"
    )
    if stats.parts > MAX_TABLE_ROWS:
        yield (
            f"<p>The table shows {MAX_TABLE_ROWS} of {stats.parts} parts (every part that "
            f"did not pass first); {CSV_NAME} lists them all.</p>"
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("overlay", "part", "verdict", "clauses", "defects", "part score", "reasons")
    )
    yield f"<table class='sortable' id='parts'><thead><tr>{head}</tr></thead><tbody>"
    inlined = 0
    for record in _table_records(out):
        verdict = record["verdict"]
        picture = ""
        if record.get("thumbnail"):
            src = record["thumbnail"]
            if inlined < MAX_INLINE_THUMBNAILS and (out / src).is_file():
                data = base64.b64encode((out / src).read_bytes()).decode("ascii")
                src, inlined = f"data:image/jpeg;base64,{data}", inlined + 1
                picture = f"<img src='{src}' alt='overlay of {esc(record['source'])}'>"
            else:
                picture = f"<img loading='lazy' src='{esc(src)}' alt='overlay'>"
            picture = f"<a href='{esc(record['overlay'])}' target='_blank'>{picture}</a>"
        score = (record.get("scores") or {}).get("part")
        reasons = record.get("error") or "; ".join(
            record.get("reasons") or [d["reason"] for d in record.get("defects", [])]
        )
        colour = VERDICT_COLOURS.get(verdict, "#555")
        yield (
            f"<tr data-verdict='{verdict}'><td>{picture}</td><td>{esc(record['source'])}</td>"
            f"<td style='color:{colour};font-weight:600'>{verdict}</td>"
            f"<td>{esc(' '.join(record.get('clauses', [])))}</td>"
            f"<td><div class='cell'>{esc(describe_defects(record))}</div></td>"
            f"<td data-sort='{score if score is not None else -1}'>"
            f"{'' if score is None else f'{score:.3f}'}</td>"
            f"<td><div class='cell why'>{esc(reasons)}</div></td></tr>"
        )
    yield "</tbody></table>"


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em 2em;color:#222;background:#fafafa}
h1{margin-bottom:.3em;font-size:1.5em;overflow-wrap:anywhere}
table{border-collapse:collapse;margin:.8em 0}
td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;font-size:.88em;vertical-align:top}
th{background:#eee} table.sortable th{cursor:pointer;user-select:none}
table.sortable th.asc::after{content:' \\25B2'} table.sortable th.desc::after{content:' \\25BC'}
.versions th{width:11em}
.summary{display:flex;flex-wrap:wrap;gap:1.6em;margin:1em 0}
.summary dt{font-size:.8em;color:#666} .summary dd{margin:0;font-size:1.4em;font-weight:600}
.charts{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
figure{margin:.5em 0} figure img{max-width:100%;height:auto}
figcaption{font-size:.85em;color:#555}
.controls{display:flex;gap:.8em;align-items:center;margin:.5em 0}
.controls input{width:22em;padding:.3em}
#parts img{width:200px;max-width:200px;display:block;border:1px solid #999}
#parts .cell{max-height:12em;overflow:auto} #parts .why{max-width:32em}
"""

_JS = """
(function(){
  function key(td){var v=td.getAttribute('data-sort');if(v!==null)return parseFloat(v);
    return td.textContent.trim().toLowerCase();}
  document.querySelectorAll('table.sortable').forEach(function(table){
    table.querySelectorAll('th').forEach(function(th,col){
      th.addEventListener('click',function(){
        var asc=!th.classList.contains('asc');
        table.querySelectorAll('th').forEach(function(h){h.classList.remove('asc','desc');});
        th.classList.add(asc?'asc':'desc');
        var body=table.tBodies[0],rows=Array.prototype.slice.call(body.rows);
        rows.sort(function(a,b){var x=key(a.cells[col]),y=key(b.cells[col]);
          return (x<y?-1:x>y?1:0)*(asc?1:-1);});
        rows.forEach(function(r){body.appendChild(r);});
      });
    });
  });
  var parts=document.getElementById('parts'),text=document.getElementById('filter'),
      verdict=document.getElementById('verdict'),shown=document.getElementById('shown');
  function filter(){
    var q=text.value.trim().toLowerCase(),v=verdict.value,n=0,rows=parts.tBodies[0].rows;
    for(var i=0;i<rows.length;i++){var r=rows[i];
      var ok=(!v||r.getAttribute('data-verdict')===v)&&
             (!q||r.textContent.toLowerCase().indexOf(q)>=0);
      r.style.display=ok?'':'none';if(ok)n++;}
    shown.textContent=n+' of '+rows.length+' rows shown';
  }
  text.addEventListener('input',filter);verdict.addEventListener('change',filter);filter();
})();
"""


def load_run(out: Path) -> dict[str, Any]:
    from inspection.audit.results import RUN_NAME

    path = Path(out) / RUN_NAME
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
