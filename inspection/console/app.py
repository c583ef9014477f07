"""The operator console: a Gradio Blocks app over :class:`ConsoleService`.

Every event has an ``api_name``, so that the page and ``gradio_client`` call the same
handlers; each handler finds the user from the login cookie (``gr.Request``) and the
service checks what their role allows. Nothing is launched at import:
:func:`build_console` builds the app, :func:`launch_console` serves it.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from inspection.console.auth import (
    DEFAULT_SESSION_HOURS,
    LOCAL_USER,
    ExpiringTokens,
    User,
    UserDirectory,
)
from inspection.console.feed import SimulatorFeed
from inspection.console.labels import labels, verdict_label
from inspection.console.service import ConsoleService, ModelSet, PartView
from inspection.console.stats import LineKpis
from inspection.errors import UserError
from inspection.records.store import PartHistory, RecordedPart

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
CSS = ".mono textarea { font-family: ui-monospace, 'DejaVu Sans Mono', monospace; }"
SETTINGS_COLUMNS = ("product", "standard", "version", "adapter", "by", "at")
MEASUREMENT_COLUMNS = ("class", "zone", "size", "clause", "severity", "action", "reason")
PART_COLUMNS = ("captured", "station", "part", "product", "verdict", "defects", "clauses")


@dataclass
class ConsoleContext:
    """What the handlers share: the service, the users, the language, the feed."""

    service: ConsoleService
    users: UserDirectory | None
    language: str
    feed: SimulatorFeed | None = None

    def user(self, request: gr.Request | None) -> User | None:
        """The caller: the login's user, or the local engineer of a console without users."""
        if self.users is None:
            return LOCAL_USER
        name = getattr(request, "username", None)
        return self.users.get(name)


def _shown_errors(handler: Callable[..., Any]) -> Callable[..., Any]:
    """A user's mistake (or a refused action) becomes a message on the page and an
    error for an API client; anything else stays a server error."""

    @functools.wraps(handler)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        except UserError as exc:
            raise gr.Error(str(exc), print_exception=False) from None

    return wrapper


# ---------------------------------------------------------------------- presentation


def part_rows(parts: list[RecordedPart] | tuple[RecordedPart, ...], language: str) -> list[list]:
    """Table rows of parts (:data:`PART_COLUMNS`)."""
    return [
        [
            p.captured_at.strftime("%Y-%m-%d %H:%M:%S"),
            p.station,
            p.part_id,
            p.product or "",
            verdict_label(p.verdict, language),
            ", ".join(d["defect_class"] for d in p.defects),
            ", ".join(dict.fromkeys(d["clause_id"] for d in p.defects if d["clause_id"])),
        ]
        for p in parts
    ]


def kpi_markdown(kpis: LineKpis, language: str) -> str:
    counts = kpis.counts
    yield_text = "–" if kpis.yield_rate is None else f"{100 * kpis.yield_rate:.1f} %"
    rate = "–" if kpis.parts_per_min is None else f"{kpis.parts_per_min:.1f}"
    top = ", ".join(f"{name} ({n})" for name, n in kpis.top_defects) or "–"
    words = (
        ("Shift", "Parts", "Yield", "Parts/min", "Top defects", "Overrides of REJECT")
        if language == "en"
        else ("班次", "零件数", "良率", "件/分钟", "主要缺陷", "不合格改判数")
    )
    verdicts = "  ".join(f"{verdict_label(v, language)} {counts.get(v, 0)}" for v in counts)
    return (
        f"**{words[0]}** {kpis.shift} (from {kpis.shift_start:%H:%M} UTC) · "
        f"**{words[1]}** <span id='kpi-parts'>{kpis.parts}</span> · "
        f"**{words[2]}** <span id='kpi-yield'>{yield_text}</span> · **{words[3]}** {rate} · "
        f"**{words[5]}** <span id='kpi-overrides'>{kpis.overrides}</span>\n\n"
        f"{verdicts}\n\n**{words[4]}**: {top}"
    )


def part_details(view: PartView, language: str) -> tuple[str, list[list], str, str]:
    """Verdict, measurement rows, report and history of an opened part, as shown."""
    record = view.record
    verdict = verdict_label(record.verdict, language)
    lines = [f"## <span id='part-verdict'>{verdict}</span> · {record.station} / {record.part_id}"]
    if record.not_inspected:
        lines.append(f"Not inspected: {record.not_inspected}")
    if record.reasons:
        lines.append("; ".join(record.reasons))
    lines.append(
        f"standard {record.standard_id} {record.standard_version or ''} · "
        f"model {record.model_version} · captured {record.captured_at:%Y-%m-%d %H:%M:%S} UTC"
    )
    if view.missing_evidence:
        lines.append(f"_{view.missing_evidence}_")
    rows = [
        [
            d["defect_class"],
            d.get("zone") or "",
            ", ".join(f"{k} {v:.2f}" for k, v in sorted(d["attributes"].items())),
            d.get("clause_id") or "",
            d.get("severity") or "",
            d["action"],
            d.get("reason") or "",
        ]
        for d in record.defects
    ]
    return "\n\n".join(lines), rows, _report_markdown(view), history_markdown(view.history)


def _report_markdown(view: PartView) -> str:
    if view.history.reports:
        import json

        latest = view.history.reports[-1]
        body = json.dumps(latest["body"], ensure_ascii=False, indent=2)
        agreed = {True: "agrees with the rules", False: "DISAGREES with the rules"}.get(
            latest["agreed"], ""
        )
        return f"Report by decoder {latest['decoder_version']} {agreed}\n```json\n{body}\n```"
    clauses = [d for d in view.record.defects if d.get("clause_id")]
    if not clauses:
        return "No cloud report; no clause of the standard applied."
    cited = "\n".join(
        f"- **{d['clause_id']}** ({d['defect_class']}): {d['action']}, {d.get('reason') or ''}"
        for d in clauses
    )
    return f"No cloud report yet. The rules cited:\n{cited}"


def history_markdown(history: PartHistory) -> str:
    """A part's reviews and questions, oldest first, one line each."""
    lines = [
        f"- {r['created_at']:%Y-%m-%d %H:%M} **{r['reviewer']}**: {r['decision']}"
        + (f" ({r['defect_class']})" if r["defect_class"] else "")
        + (f": {r['reason']}" if r["reason"] else "")
        + (" · mask drawn" if r["mask"] else "")
        for r in history.reviews
    ]
    lines += [
        f"- {q['created_at']:%Y-%m-%d %H:%M} **{q['asker']}** asked "
        + ("(spoken) " if q["audio"] else "")
        + f"“{q['question']}”: {q['answer'] or q['error'] or ''}"
        for q in history.questions
    ]
    return "\n".join(lines) or "–"


def settings_rows(library: Any) -> list[list]:
    """Each product's active standard version and adapter (:data:`SETTINGS_COLUMNS`)."""
    return [
        [s.product, s.standard_id, s.standard_version, s.adapter or "(base)", s.updated_by,
         f"{s.updated_at:%Y-%m-%d %H:%M}"]
        for s in library.product_settings()
    ]  # fmt: skip


def problem_text(problem: Any) -> str:
    """A standard's problem as an engineer reads it in the editor: line first."""
    where = f"line {problem.line}" if problem.line else "file"
    return (
        f"{where}: {problem.field}: {problem.message}"
        if problem.field
        else (f"{where}: {problem.message}")
    )


def figure_image(figure: Any) -> np.ndarray:
    """A matplotlib figure as an RGB picture."""
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[:, :, :3].copy()


def editor_mask(value: Any) -> np.ndarray | None:
    """The region an operator painted in the image editor (any layer), or ``None``."""
    if not isinstance(value, dict):
        return None
    painted = None
    for layer in value.get("layers") or ():
        layer = np.asarray(layer)
        if layer.ndim == 3 and layer.shape[2] == 4:
            alpha = layer[:, :, 3] > 0
            painted = alpha if painted is None else painted | alpha
    return None if painted is None or not painted.any() else painted


# ---------------------------------------------------------------------- the app


def build_console(
    db: str | Path | None = None,
    model: str | Path | None = None,
    *,
    users: UserDirectory | None = None,
    language: str = "en",
    service: ConsoleService | None = None,
    refresh_s: float = 5.0,
    simulate: bool | None = None,
    whisper: str | Path | None = None,
    mm_per_px: float | None = None,
    verify: bool = True,
    normality: str | Path | None = None,
    review_from: float | None = None,
    guard_band: str | Path | None = None,
) -> gr.Blocks:
    """The console as a Gradio Blocks app (not launched).

    Parameters
    ----------
    db : str | Path | None
        The records database the line daemon writes (SQLAlchemy URL or SQLite file).
        ``None``: a fresh SQLite file fed by the simulated line.
    model : str | Path | None
        Detection model (with its decoder) for questions and audits; default: shipped.
    users : UserDirectory | None
        Who may log in (see :func:`launch_console`); ``None``: one local engineer.
    language : str
        ``en`` or ``zh``.
    service : ConsoleService | None
        A service built by the caller (tests); ``db``, ``model`` are then ignored.
    refresh_s : float
        How often the live view refreshes itself.
    simulate : bool | None
        Feed the simulated line into the database (default: when ``db`` is ``None``).
    whisper : str | Path | None
        Local openai-whisper checkpoint to transcribe spoken questions.
    mm_per_px : float | None
        Station scale for questions and audits (sizes go to review without one).
    verify : bool
        Refuse model files that differ from their manifest.
    normality : str | Path | None
        A feature normality model of the product fused with ``model`` for questions and
        audits (what only it finds goes to REVIEW); ``None``: the model alone.
    review_from : float | None
        The station's review band for questions and audits; ``None``: none.
    guard_band : str | Path | None
        The station's guard band file for questions and audits; ``None``: none.

    Examples
    --------
    >>> from inspection.console import build_console  # doctest: +SKIP
    >>> build_console().launch(server_name="127.0.0.1")  # doctest: +SKIP
    """
    L = labels(language)
    if service is None:
        service = _service(
            db, model, whisper, mm_per_px, verify, normality, review_from, guard_band
        )
    feed = None
    if simulate if simulate is not None else db is None:
        feed = SimulatorFeed(service.store, service.library, service.models)
    ctx = ConsoleContext(service, users, language, feed)

    with gr.Blocks(title=L["title"], analytics_enabled=False) as blocks:
        with gr.Row():
            gr.Markdown(f"# {L['title']}")
            whoami = gr.Markdown(elem_id="whoami")
            if users is not None:
                gr.Button(L["logout"], link="/logout", size="sm", scale=0)
        with gr.Tabs() as tabs:
            _live_and_review_tabs(blocks, ctx, L, tabs, refresh_s, whoami)
            _audit_tab(ctx, L)
            _standards_tab(ctx, L)
            _models_tab(ctx, L)
            _statistics_tab(ctx, L)
    blocks.console = ctx  # type: ignore[attr-defined]  # tests reach the service through it
    return blocks


def _service(
    db: str | Path | None,
    model: str | Path | None,
    whisper: str | Path | None,
    mm_per_px: float | None,
    verify: bool,
    normality: str | Path | None = None,
    review_from: float | None = None,
    guard_band: str | Path | None = None,
) -> ConsoleService:
    from inspection.config import get_settings
    from inspection.console.standards import StandardLibrary
    from inspection.records.store import RecordStore

    if db is None:
        db = Path(tempfile.mkdtemp(prefix="inspection-console-")) / "records.db"
    store = RecordStore(db)
    library = StandardLibrary(store.engine)
    library.seed(get_settings().standards_dir)
    models = ModelSet(
        Path(model) if model else None,
        whisper_checkpoint=Path(whisper) if whisper else None,
        mm_per_px=mm_per_px,
        verify=verify,
        normality=Path(normality) if normality else None,
        review_from=review_from,
        guard_band=Path(guard_band) if guard_band else None,
    )
    models.check_review_band()  # the models load on first use: the band is checked now
    return ConsoleService(store, library, models)


def _live_and_review_tabs(
    blocks: gr.Blocks,
    ctx: ConsoleContext,
    L: dict,
    tabs: gr.Tabs,
    refresh_s: float,
    whoami: gr.Markdown,
) -> None:
    service, lang = ctx.service, ctx.language
    headers = [L[f"col_{name}"] for name in PART_COLUMNS]
    with gr.Tab(L["live"], id="live"):
        kpis = gr.Markdown(elem_id="kpis", label=L["kpis"])
        with gr.Row():
            refresh = gr.Button(L["refresh"], size="sm", scale=0)
            auto = gr.Checkbox(value=True, label=L["auto_refresh"], scale=0)
        latest = gr.Dataframe(
            headers=headers, label=L["latest_parts"], interactive=False, elem_id="latest"
        )
    with gr.Tab(L["review"], id="review") as review_tab:
        queue_refresh = gr.Button(L["refresh"], size="sm")
        queue = gr.Dataframe(headers=headers, label=L["queue"], interactive=False, elem_id="queue")
    with gr.Tab(L["part"], id="part"):
        with gr.Row():
            station_box = gr.Textbox(label="Station", elem_id="part-station", scale=1)
            part_box = gr.Textbox(label=L["part"], elem_id="part-id", scale=2)
            open_button = gr.Button(L["open_part"], scale=0, min_width=120)
        with gr.Row():
            image = gr.Image(label=L["image"], interactive=False, type="numpy", scale=2, height=360)
            with gr.Column(scale=3):
                summary = gr.Markdown(elem_id="part-summary")
                measurements = gr.Dataframe(
                    headers=[L[f"col_{name}"] for name in MEASUREMENT_COLUMNS],
                    label=L["measurements"],
                    interactive=False,
                )
        report = gr.Markdown(label=L["report"])
        with gr.Accordion(L["history"], open=True):
            history = gr.Markdown(elem_id="part-history")
        gr.Markdown(f"### {L['your_decision']}")
        with gr.Row():
            decision = gr.Radio(
                ["PASS", "REJECT", "REVIEW"], label=L["decision"], elem_id="decision"
            )
            reason = gr.Textbox(label=L["reason"], elem_id="reason", scale=2)
            defect_class = gr.Textbox(label=L["defect_class"], scale=1)
        mask = gr.ImageEditor(
            label=L["mask"], type="numpy", sources=(), layers=False, visible=True, height=320
        )
        save_review = gr.Button(L["submit_review"], variant="primary", elem_id="save-review")
        review_message = gr.Markdown(elem_id="review-message")
        gr.Markdown(f"### {L['ask']}")
        with gr.Row():
            question = gr.Textbox(label=L["question"], scale=3)
            spoken = gr.Audio(
                sources=["microphone", "upload"], type="filepath", label=L["spoken"], scale=2
            )
        ask_button = gr.Button(L["ask_button"])
        answer = gr.Markdown(elem_id="answer")

    def live(request: gr.Request) -> tuple[str, list[list]]:
        _require_view(ctx, request)
        page = service.live_page(20)
        return kpi_markdown(page.kpis, lang), part_rows(page.parts, lang)

    def tick(request: gr.Request) -> tuple[str, list[list]]:
        """The timer: the simulated line makes its next part, then the view refreshes."""
        _require_view(ctx, request)
        if ctx.feed is not None:
            ctx.feed.step()
        return live(request)

    def review_queue(request: gr.Request) -> list[list]:
        _require_view(ctx, request)
        return part_rows(service.review_queue(50), lang)

    def open_part(station: str, part_id: str, request: gr.Request) -> tuple:
        view = service.part(station.strip(), part_id.strip(), ctx.user(request))
        text, rows, report_text, history_text = part_details(view, lang)
        editor = None
        if view.overlay is not None:
            editor = {"background": view.overlay, "layers": [], "composite": view.overlay}
        return view.overlay, text, rows, report_text, history_text, editor

    def pick(rows: Any, event: gr.SelectData, request: gr.Request) -> tuple:
        row = event.index[0] if isinstance(event.index, list | tuple) else event.index
        values = rows.values.tolist() if hasattr(rows, "values") else rows
        station, part_id = values[row][1], values[row][2]
        opened = open_part(station, part_id, request)
        return (station, part_id, *opened, gr.Tabs(selected="part"))

    def review(
        station: str,
        part_id: str,
        decision_value: str | None,
        reason_text: str,
        class_text: str,
        drawn: Any,
        request: gr.Request,
    ) -> tuple[str, str]:
        if not decision_value:
            raise UserError("choose PASS, REJECT or REVIEW")
        review_id = service.review(
            ctx.user(request),
            station.strip(),
            part_id.strip(),
            decision_value,
            reason_text,
            class_text,
            editor_mask(drawn),
        )
        history = service.history(station.strip(), part_id.strip(), ctx.user(request))
        return f"{L['saved']} (review {review_id})", history_markdown(history)

    def ask(
        station: str, part_id: str, text: str, audio: str | None, request: gr.Request
    ) -> tuple[str, str]:
        outcome = service.ask(ctx.user(request), station.strip(), part_id.strip(), text, audio)
        heard = f"_{outcome.transcript}_\n\n" if outcome.transcript else ""
        verdict = f"\n\nrules: **{outcome.rules_verdict}**"
        shown = outcome.answer or outcome.error or ""
        history = service.history(station.strip(), part_id.strip(), ctx.user(request))
        return heard + shown + verdict, history_markdown(history)

    live_outputs = [kpis, latest]
    part_outputs = [image, summary, measurements, report, history, mask]
    refresh.click(_shown_errors(live), None, live_outputs, api_name="live")
    timer = gr.Timer(refresh_s)
    timer.tick(_shown_errors(tick), None, live_outputs, api_name=False, show_progress="hidden")
    auto.change(lambda on: gr.Timer(active=on), auto, timer, api_name=False)
    queue_refresh.click(_shown_errors(review_queue), None, queue, api_name="review_queue")
    open_button.click(
        _shown_errors(open_part), [station_box, part_box], part_outputs, api_name="open_part"
    )
    for table in (latest, queue):
        table.select(
            _shown_errors(pick),
            table,
            [station_box, part_box, *part_outputs, tabs],
            api_name=False,
        )
    save_review.click(
        _shown_errors(review),
        [station_box, part_box, decision, reason, defect_class, mask],
        [review_message, history],
        api_name="review",
    )
    ask_button.click(
        _shown_errors(ask), [station_box, part_box, question, spoken], [answer, history],
        api_name="ask",
    )  # fmt: skip

    def first_look(request: gr.Request) -> tuple[str, str, list[list]]:
        user = ctx.user(request)
        signed_in = "" if user is None else f"{L['signed_in_as']} **{user.name}** ({user.role})"
        return (signed_in, *live(request))

    # The first look, in one request off the queue: who is signed in and the line now.
    # Other tabs load when opened (a page that opens fast is one that asks for little).
    blocks.load(
        _shown_errors(first_look), None, [whoami, *live_outputs], api_name=False, queue=False
    )
    review_tab.select(_shown_errors(review_queue), None, queue, api_name=False)


def _require_view(ctx: ConsoleContext, request: gr.Request | None) -> None:
    from inspection.console.auth import VIEW, require

    require(ctx.user(request), VIEW)


def _audit_tab(ctx: ConsoleContext, L: dict) -> None:
    service = ctx.service
    products = [s.product for s in service.library.product_settings()]
    with gr.Tab(L["audit"], id="audit"):
        with gr.Row():
            files = gr.File(label=L["audit_files"], file_count="multiple", type="filepath")
            product = gr.Dropdown(
                products, value=products[0] if products else None, label=L["product"]
            )
        record = gr.Checkbox(value=False, label=L["record_parts"])
        run = gr.Button(L["run_audit"], variant="primary")
        summary = gr.Markdown()
        downloads = gr.File(label=L["audit_report"], file_count="multiple", interactive=False)

    def audit(paths: list[str] | None, product_name: str, keep: bool, request: gr.Request):
        outcome = service.audit(ctx.user(request), paths or [], product_name, bool(keep))
        verdicts = ", ".join(f"{k} {v}" for k, v in outcome.verdicts.items())
        text = f"{outcome.parts} parts: {verdicts}; {outcome.unreadable} unreadable"
        if outcome.recorded is not None:
            text += (
                f"\n\n{outcome.recorded.new} parts recorded at station `{outcome.recorded.station}`"
            )
        if outcome.not_audited:
            text += f"\n\n{outcome.not_audited}"
        return text, [str(outcome.report), str(outcome.results_csv)]

    run.click(
        _shown_errors(audit), [files, product, record], [summary, downloads], api_name="audit"
    )


def _standards_tab(ctx: ConsoleContext, L: dict) -> None:
    service = ctx.service
    library = service.library
    with gr.Tab(L["standards"], id="standards") as standards_tab:
        with gr.Row():
            standard = gr.Dropdown(
                library.standards(), label=L["standard"], allow_custom_value=True
            )
            version = gr.Dropdown([], label=L["version"], allow_custom_value=True)
            other = gr.Dropdown([], label=L["compare_with"], allow_custom_value=True)
        # Textboxes, not gr.Code: the code editor's scripts cost the page ~0.3 s to load.
        text = gr.Textbox(
            label=L["standard_text"], lines=18, max_lines=40, elem_classes="mono", elem_id="yaml"
        )
        upload = gr.File(label=L["upload_standard"], file_types=[".yaml", ".yml"], type="filepath")
        with gr.Row():
            note = gr.Textbox(label=L["note"], scale=3)
            check = gr.Button(L["check"], scale=0)
            save = gr.Button(L["save_version"], variant="primary", scale=0)
        problems = gr.Markdown(elem_id="standard-problems")
        diff = gr.Textbox(label=L["diff"], interactive=False, lines=10, elem_classes="mono")
        with gr.Row():
            product = gr.Dropdown(
                [s.product for s in library.product_settings()],
                label=L["product"],
                allow_custom_value=True,
            )
            activate = gr.Button(L["activate"])
        settings = gr.Dataframe(
            headers=list(SETTINGS_COLUMNS), label=L["active_settings"], interactive=False
        )
        activity = gr.Dataframe(
            headers=["at", "who", "what", "target"], label=L["activity"], interactive=False
        )

    def versions(standard_id: str) -> tuple:
        found = [v.version for v in library.versions(standard_id)] if standard_id else []
        newest = found[0] if found else None
        body = library.text(standard_id, newest) if newest else ""
        return (
            gr.Dropdown(choices=found, value=newest),
            gr.Dropdown(choices=found, value=found[1] if len(found) > 1 else newest),
            body,
        )

    def show(standard_id: str, number: Any) -> str:
        return library.text(standard_id, int(number)) if standard_id and number else ""

    def compare(standard_id: str, new: Any, old: Any) -> str:
        if not (standard_id and new and old):
            return ""
        return library.diff(standard_id, int(old), int(new)) or "(no difference)"

    def read_upload(path: str | None) -> str:
        if not path:
            return gr.skip()
        data = Path(path).read_bytes()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{Path(path).name} is not UTF-8 text") from None

    def check_text(body: str) -> str:
        found = library.check(body or "")
        return "✔ valid" if not found else "\n".join(f"- {problem_text(p)}" for p in found)

    def save_text(body: str, note_text: str, request: gr.Request) -> tuple:
        from inspection.standards.loader import StandardError

        try:
            saved = service.save_standard(ctx.user(request), body or "", note_text or None)
        except StandardError as exc:
            listed = "; ".join(problem_text(p) for p in exc.problems)
            raise UserError(f"not saved: {listed}") from None
        return (
            f"{L['saved']}: {saved.label}",
            gr.Dropdown(choices=library.standards(), value=saved.standard_id),
            *tables(),
        )

    def activate_version(product_name: str, standard_id: str, number: Any, request: gr.Request):
        if not number:
            raise UserError("choose a version to activate")
        service.activate_standard(ctx.user(request), product_name, standard_id, int(number))
        return tables()

    def tables() -> tuple[list[list], list[list]]:
        rows = settings_rows(library)
        events = [
            [f"{a.created_at:%Y-%m-%d %H:%M}", a.actor, a.action, a.target or ""]
            for a in library.activity(20)
        ]
        return rows, events

    standard.change(
        _shown_errors(versions), standard, [version, other, text], api_name="standard_versions"
    )
    version.change(_shown_errors(show), [standard, version], text, api_name=False)
    other.change(_shown_errors(compare), [standard, version, other], diff, api_name="diff_standard")
    upload.upload(_shown_errors(read_upload), upload, text, api_name=False)
    check.click(_shown_errors(check_text), text, problems, api_name="check_standard")
    save.click(
        _shown_errors(save_text),
        [text, note],
        [problems, standard, settings, activity],
        api_name="save_standard",
    )
    activate.click(
        _shown_errors(activate_version),
        [product, standard, version],
        [settings, activity],
        api_name="activate_standard",
    )
    standards_tab.select(_shown_errors(tables), None, [settings, activity], api_name=False)


def _models_tab(ctx: ConsoleContext, L: dict) -> None:
    service = ctx.service
    library = service.library
    with gr.Tab(L["models"], id="models") as models_tab:
        gr.Markdown(f"**{service.models.model_dir}**")
        settings = gr.Dataframe(
            headers=list(SETTINGS_COLUMNS), label=L["active_settings"], interactive=False
        )
        with gr.Row():
            product = gr.Dropdown(
                [s.product for s in library.product_settings()],
                label=L["product"],
                allow_custom_value=True,
            )
            adapter = gr.Dropdown(
                ["(base)", *service.models.adapters()], label=L["adapter"], value="(base)"
            )
            switch = gr.Button(L["switch_adapter"], variant="primary")
        message = gr.Markdown(elem_id="adapter-message")
        with gr.Accordion(L["model_card"], open=True):
            gr.Markdown(service.model_card())

    def switch_adapter(product_name: str, name: str | None, request: gr.Request):
        chosen = None if name in (None, "", "(base)") else name
        setting = service.switch_adapter(ctx.user(request), product_name, chosen)
        saved = f"{L['saved']}: {setting.product} → {setting.adapter or '(base)'}"
        return saved, settings_rows(library)

    switch.click(
        _shown_errors(switch_adapter),
        [product, adapter],
        [message, settings],
        api_name="switch_adapter",
    )
    models_tab.select(lambda: settings_rows(library), None, settings, api_name=False)


def _statistics_tab(ctx: ConsoleContext, L: dict) -> None:
    from inspection.console import stats

    service = ctx.service
    with gr.Tab(L["statistics"], id="statistics"):
        with gr.Row():
            days = gr.Number(value=7, label=L["days"], minimum=1, maximum=366, precision=0)
            refresh = gr.Button(L["refresh"], scale=0)
            export = gr.Button(L["export_records"], scale=0)
        records_file = gr.File(label=L["records_file"], interactive=False)
        # Pictures, not gr.Plot: the plot component's scripts slow every page load.
        pareto = gr.Image(label=L["pareto"], type="numpy", interactive=False)
        trend = gr.Image(label=L["yield_trend"], type="numpy", interactive=False)
        false_rejects = gr.Image(label=L["false_rejects"], type="numpy", interactive=False)

    def statistics(window_days: float, request: gr.Request) -> tuple:
        _require_view(ctx, request)
        since, until = service.statistics_window(float(window_days or 7))
        engine = service.store.engine
        bucket = timedelta(hours=1 if window_days <= 2 else 6 if window_days <= 14 else 24)
        return (
            figure_image(stats.pareto_figure(stats.defect_pareto(engine, since, until))),
            figure_image(stats.yield_figure(stats.yield_trend(engine, since, until, bucket))),
            figure_image(
                stats.false_reject_figure(
                    stats.false_reject_trend(engine, since, until, service.shifts)
                )
            ),
        )

    refresh.click(
        _shown_errors(statistics), days, [pareto, trend, false_rejects], api_name="statistics"
    )

    def export_records(window_days: float, request: gr.Request) -> str:
        return str(service.export_records(ctx.user(request), float(window_days or 7)))

    export.click(_shown_errors(export_records), days, records_file, api_name="export_records")


# ---------------------------------------------------------------------- serving


def check_serving(has_users: bool, host: str, session_hours: float) -> None:
    """Refuse what must not be served: beyond loopback without logins, or sessions that
    never last."""
    if not has_users and host not in LOOPBACK_HOSTS:
        raise UserError(
            f"no user list: the console serves 127.0.0.1 only, not {host}; add users with "
            "`inspection console users add` and pass --users FILE"
        )
    if session_hours <= 0:
        raise UserError("--session-hours must be positive")


def launch_console(
    blocks: gr.Blocks,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    session_hours: float = DEFAULT_SESSION_HOURS,
    clock: Callable[[], float] | None = None,
    block: bool = True,
) -> tuple[Any, str]:
    """Serve a built console; returns ``(app, local_url)``.

    With users (``build_console(users=...)``) the console asks for a login and sessions
    last ``session_hours``; without, it serves 127.0.0.1 only and refuses any other host.
    """
    ctx: ConsoleContext = blocks.console  # type: ignore[attr-defined]
    check_serving(ctx.users is not None, host, session_hours)
    auth = None
    if ctx.users is not None:
        users = ctx.users

        def auth(name: str, password: str) -> bool:
            return users.authenticate(name, password) is not None

    app, local_url, _ = blocks.launch(
        server_name=host,
        server_port=port,
        auth=auth,
        auth_message="Inspection console: log in with your station account.",
        prevent_thread_lock=True,
        share=False,
        quiet=True,
        show_error=True,
        footer_links=["api"],
        allowed_paths=[str(ctx.service.workdir)],
        ssr_mode=False,
        mcp_server=False,
        css=CSS,
    )
    # Gradio keeps login tokens forever; ours lapse (before anyone can have logged in).
    kwargs = {} if clock is None else {"clock": clock}
    app.tokens = ExpiringTokens(session_hours * 3600.0, **kwargs)
    if block:
        blocks.block_thread()
    return app, local_url
