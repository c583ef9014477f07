"""What the console does, without the screen: every action the Gradio app offers, with
the user's role checked here, so that a call to the app's API and a click on its page
are held to the same rules.

:class:`ConsoleService` reads the records the line daemon writes
(:class:`~inspection.records.RecordStore`), keeps standards and per-product settings
(:class:`~inspection.console.standards.StandardLibrary`), and loads the models only when
a question or an audit needs them (:class:`ModelSet`). Gradio-free.
"""

from __future__ import annotations

import io
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from inspection.console.auth import (
    ASK,
    AUDIT,
    EDIT_STANDARDS,
    REVIEW,
    SWITCH_MODELS,
    VIEW,
    User,
    require,
)
from inspection.console.standards import StandardLibrary
from inspection.console.stats import DEFAULT_SHIFTS, LineKpis, Shift, line_kpis
from inspection.errors import UserError
from inspection.records.store import PartHistory, RecordedPart, RecordStore
from inspection.types import Action, Verdict

REVIEW_SAMPLE_EVERY = 20
"""One PASS or REJECT in this many joins the review queue, for audit (a fixed sample)."""

MAX_REASON_CHARS = 2000
VERDICT_COLOURS = {
    Verdict.REJECT: (230, 40, 40),
    Verdict.REVIEW: (240, 170, 0),
    Verdict.PASS: (40, 170, 60),
}
"""A recorded defect's box is drawn in the colour of the verdict its action implies
(rework and scrap: REJECT); an action not recorded, or unknown, in blue."""


@dataclass(frozen=True)
class LivePage:
    """What the Live tab shows: the latest parts and this shift's KPIs."""

    parts: tuple[RecordedPart, ...]
    kpis: LineKpis


@dataclass(frozen=True)
class PartView:
    """One part opened: its record, its image with the defects drawn, what followed."""

    record: RecordedPart
    overlay: np.ndarray | None  # (H, W, 3) uint8; None when no evidence image is kept
    history: PartHistory
    missing_evidence: str | None = None


@dataclass(frozen=True)
class AskOutcome:
    """A question answered (or why not), as stored with the part."""

    question: str
    answer: str
    agreed: bool | None
    rules_verdict: str | None
    transcript: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class AuditOutcome:
    """A batch audit run from the console: its folder and what it found."""

    out: Path
    report: Path
    results_csv: Path
    parts: int
    verdicts: dict[str, int]
    unreadable: int
    not_audited: str | None = None
    """The uploads the audit passed over (``"1 file not audited (.gif 1): ..."``)."""
    recorded: Any = None
    """What was recorded in the line's records (:class:`~inspection.audit.recording.RecordedAudit`),
    when asked for."""


@dataclass
class ModelSet:
    """The models the console uses, loaded on first need and kept.

    Parameters
    ----------
    model_dir : Path | None
        Detection model (folder, bundle or ``.onnx``); ``None``: the shipped default.
    decoder_dir : Path | None
        Report decoder; default ``MODEL/decoder`` when that exists.
    whisper_checkpoint : Path | None
        A local openai-whisper checkpoint (``.pt``) or CTranslate2 Whisper folder to
        transcribe spoken questions; default: the bundled English ``tiny.en``.
    mm_per_px : float | None
        The station's scale, for the measurements a question re-inspects.
    normality : Path | None
        A feature normality model of the product fused with the model
        (:func:`~inspection.pipeline.load_detector`); ``None``: the model alone.
    review_from : float | None
        The station's review band (:func:`~inspection.pipeline.with_review_band`), so
        that questions and audits decide as the line does; ``None``: none.
    guard_band : Path | None
        The station's guard band file (:func:`~inspection.pipeline.with_guard_band`),
        read when the set is made (a bad file fails then, not on a question); ``None``:
        readings taken as exact.
    """

    model_dir: Path | None = None
    decoder_dir: Path | None = None
    whisper_checkpoint: Path | None = None
    mm_per_px: float | None = None
    verify: bool = True
    normality: Path | None = None
    review_from: float | None = None
    guard_band: Path | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # Held while the decoder answers: the active adapter is the shared model's state.
    ask_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _detector: Any = field(default=None, repr=False)
    _metadata: dict[str, Any] = field(default_factory=dict, repr=False)
    _decoder: Any = field(default=None, repr=False)
    _whisper: Any = field(default=None, repr=False)
    _guard: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.guard_band is not None:
            from inspection.standards import load_guard_band

            self._guard = load_guard_band(self.guard_band)
        if self.model_dir is None:
            from inspection.config import default_model_dir

            self.model_dir = default_model_dir()
        if self.decoder_dir is None and (Path(self.model_dir) / "decoder").is_dir():
            self.decoder_dir = Path(self.model_dir) / "decoder"

    def detector(self) -> tuple[Any, dict[str, Any]]:
        with self._lock:
            if self._detector is None:
                from inspection.pipeline import load_detector

                self._detector, self._metadata = load_detector(
                    self.model_dir, self.verify, self.normality
                )
            return self._detector, self._metadata

    def inspector(self, standard: Any) -> Any:
        from inspection.pipeline import (
            Inspector,
            line_thresholds,
        )

        detector, metadata = self.detector()
        thresholds = line_thresholds(metadata, review_from=self.review_from, guard_band=self._guard)
        return Inspector(detector, standard, thresholds)

    def check_review_band(self) -> None:
        """Refuse a review band the model's image threshold leaves no room for, before
        the models load (they load on first use): from a model folder's checkpoint, or
        the fused detector's 0.5; an ``.onnx`` or bundle is checked when it loads.

        Raises
        ------
        UserError
            See :func:`~inspection.pipeline.with_review_band`.
        """
        from inspection.models.checkpoint import read_checkpoint
        from inspection.models.fusion import FUSED_THRESHOLD
        from inspection.pipeline import Thresholds, thresholds_of, with_review_band

        if self.review_from is None:
            return
        if self.normality is not None:
            thresholds = Thresholds(image=FUSED_THRESHOLD)
        elif self.model_dir is not None and self.model_dir.is_dir():
            # The header only: the files are hashed once, when the model loads.
            thresholds = thresholds_of(read_checkpoint(self.model_dir, verify=False).extra)
        else:
            return
        with_review_band(thresholds, self.review_from)

    def adapters(self) -> list[str]:
        """The LoRA adapters saved with the decoder (none without a decoder)."""
        if self.decoder_dir is None:
            return []
        from inspection.decoder.lora import saved_adapters

        return [a.name for a in saved_adapters(self.decoder_dir)]

    def decoder(self, adapter: str | None) -> Any:
        """The decoder with ``adapter`` in use (``None``: the base); callers hold
        :attr:`ask_lock` while they use it, since the adapter is the model's state."""
        if self.decoder_dir is None:
            raise UserError("no report decoder: start the console with a model that has one")
        from inspection.decoder.lora import base_only, load_decoder, use_adapter

        if self._decoder is None:
            self._decoder = load_decoder(self.decoder_dir, verify=self.verify)
        if adapter is None:
            if self.adapters():
                base_only(self._decoder)
        else:
            use_adapter(self._decoder, adapter)
        return self._decoder

    def transcribe(self, samples: np.ndarray) -> str:
        """Speech to text (16 kHz mono samples): the ``whisper_checkpoint`` given, else the
        Whisper ``tiny.en`` bundled with the pretrained extra (see :mod:`inspection.transcribe`)."""
        if self._whisper is None:
            from inspection.transcribe import Transcriber

            self._whisper = Transcriber(self.whisper_checkpoint)
        return self._whisper.transcribe(samples).text


class ConsoleService:
    """Every action of the console, each checked against the user's role.

    Parameters
    ----------
    store : RecordStore
        The records the line daemon writes.
    library : StandardLibrary
        Standards, their versions, and each product's active version and adapter.
    models : ModelSet | None
        Models for questions and audits (``None``: a default :class:`ModelSet`).
    workdir : Path | None
        Where audits and uploads go (default: a temporary folder).
    clock : Callable[[], float]
        Wall clock (injected by tests): the KPIs' shift.
    """

    def __init__(
        self,
        store: RecordStore,
        library: StandardLibrary | None = None,
        models: ModelSet | None = None,
        *,
        workdir: Path | None = None,
        clock: Callable[[], float] = time.time,
        shifts: Sequence[Shift] = DEFAULT_SHIFTS,
        sample_every: int = REVIEW_SAMPLE_EVERY,
    ) -> None:
        self.store = store
        self.library = library or StandardLibrary(store.engine, clock=clock)
        self.models = models or ModelSet()
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="inspection-console-"))
        self.clock = clock
        self.shifts = tuple(shifts)
        self.sample_every = sample_every

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    # ------------------------------------------------------------------ live and parts

    def live_page(self, n: int = 12, station: str | None = None) -> LivePage:
        """The ``n`` latest parts and this shift's line KPIs."""
        parts = self.store.latest(n, station=station)
        kpis = line_kpis(self.store.engine, self.now(), self.shifts, station=station)
        return LivePage(tuple(parts), kpis)

    def review_queue(self, limit: int = 50, station: str | None = None) -> list[RecordedPart]:
        """Parts to review, newest first: every unreviewed REVIEW, then a fixed sample of
        unreviewed PASS and REJECT (one in :attr:`sample_every`) for audit."""
        queue = self.store.unreviewed(Verdict.REVIEW, limit, station)
        room = limit - len(queue)
        if room > 0:
            sampled = [
                part
                for verdict in (Verdict.REJECT, Verdict.PASS)
                for part in self.store.unreviewed(verdict, room, station, every=self.sample_every)
            ]
            sampled.sort(key=lambda p: p.captured_at, reverse=True)
            queue += sampled[:room]
        return queue

    def part(self, station: str, part_id: str, user: User | None = None) -> PartView:
        """Open one part: its record, the image with its defects drawn, its history."""
        require(user, VIEW)
        record = self.store.get(part_id, station)
        if record is None:
            raise UserError(f"no record of part {part_id!r} at station {station!r}")
        history = self.history(station, part_id, user)
        image, missing = self._evidence_image(record)
        overlay = None if image is None else draw_defects(image, record.defects)
        height = self._evidence_height(record)
        if overlay is not None and height is not None and height.shape == overlay.shape[:2]:
            from inspection.viz import height_picture  # the relief beside the photograph

            relief = height_picture(
                height,
                [(m, c) for m, _, c in defect_boxes(height.shape, record.defects)],
                footprint_boxes(height.shape, record.defects),
            )
            overlay = np.concatenate([overlay, relief], axis=1)
        return PartView(record, overlay, history, missing)

    def history(self, station: str, part_id: str, user: User | None = None) -> PartHistory:
        """The reviews, questions and reports of one part (no image read)."""
        require(user, VIEW)
        return self.store.history(part_id, station)

    def _evidence_height(self, record: RecordedPart) -> np.ndarray | None:
        """The part's height map where its record keeps one (a station with a 3D
        profiler, :func:`~inspection.records.evidence.frame_evidence`), else ``None``
        (and for a file gone or unreadable: the photograph is still shown)."""
        from inspection.io import InputError, read_height_map
        from inspection.records.evidence import frame_height_map

        path = frame_height_map([self.store.evidence.find(d) for d in record.evidence], 0)
        try:
            return None if path is None else read_height_map(path)
        except InputError:
            return None

    def _evidence_image(self, record: RecordedPart, frame: int = 0) -> tuple[Any, str | None]:
        if len(record.evidence) <= frame:
            return None, "no image kept for this part"
        path = self.store.evidence.find(record.evidence[frame])
        if path is None:
            return None, f"evidence image {record.evidence[frame][:12]}... is missing"
        from inspection.io import InputError, read_image

        try:
            return read_image(path), None
        except InputError:
            return None, f"evidence image {record.evidence[frame][:12]}... is unreadable"

    # ------------------------------------------------------------------ review

    def review(
        self,
        user: User | None,
        station: str,
        part_id: str,
        decision: str,
        reason: str = "",
        defect_class: str | None = None,
        mask: np.ndarray | None = None,
    ) -> int:
        """Store an operator's decision on a part; an override needs a reason.

        Returns the review's id.
        """
        user = require(user, REVIEW)
        record = self.store.get(part_id, station)
        if record is None:
            raise UserError(f"no record of part {part_id!r} at station {station!r}")
        decision = str(decision).upper()
        if decision not in {v.value for v in Verdict}:
            raise UserError(f"a review decides PASS, REJECT or REVIEW, not {decision!r}")
        reason = (reason or "").strip()
        if len(reason) > MAX_REASON_CHARS:
            raise UserError(f"the reason is longer than {MAX_REASON_CHARS} characters")
        if decision != record.verdict and not reason:
            raise UserError(
                f"overriding {record.verdict or 'NOT INSPECTED'} with {decision} needs a reason"
            )
        if mask is not None and not np.asarray(mask).any():
            mask = None  # an empty drawing is no drawing
        return self.store.add_review(
            part_id,
            station,
            user.name,
            decision,
            reason or None,
            defect_class=(defect_class or "").strip() or None,
            mask=mask,
        )

    # ------------------------------------------------------------------ ask

    def ask(
        self,
        user: User | None,
        station: str,
        part_id: str,
        question: str = "",
        audio_path: str | Path | None = None,
    ) -> AskOutcome:
        """Answer a question about a recorded part, typed or spoken.

        A spoken question's clip is kept with the part and fed to the model as the part's
        audio; it is transcribed where a Whisper checkpoint is configured. The answer comes
        from the decoder (with the product's adapter) and is held to the rule engine.
        """
        user = require(user, ASK)
        record = self.store.get(part_id, station)
        if record is None:
            raise UserError(f"no record of part {part_id!r} at station {station!r}")
        clip, wav = (None, None) if not audio_path else _read_clip(Path(audio_path))
        question = (question or "").strip()
        transcript = None
        if clip is not None and not question:
            transcript = question = self.models.transcribe(clip.samples)
            if not question:
                raise UserError("nothing was heard in the recording: type the question")
        from inspection.decoder.schema import check_question

        check_question(question)
        outcome = self._answer(record, question, clip)
        outcome = AskOutcome(**{**outcome.__dict__, "transcript": transcript})
        self.store.add_question(
            part_id,
            station,
            user.name,
            question,
            answer=outcome.answer or None,
            error=outcome.error,
            agreed=outcome.agreed,
            transcript=transcript,
            audio=wav,
        )
        return outcome

    def _answer(self, record: RecordedPart, question: str, clip: Any) -> AskOutcome:
        from inspection.decoder.reporting import ask_part
        from inspection.types import Frame, Observation

        image, missing = self._evidence_image(record)
        if image is None:
            raise UserError(f"cannot ask about {record.part_id}: {missing}")
        product = self._product(record)
        _, standard = self.library.active_standard(product)
        setting = self.library.setting(product)
        frame = Frame(image=image, camera="console", mm_per_px=self.models.mm_per_px)
        observation = Observation(record.part_id, record.station, (frame,), audio=clip)
        inspector = self.models.inspector(standard)
        with self.models.ask_lock:
            decoder = self.models.decoder(setting.adapter if setting else None)
            result, answer = ask_part(inspector, decoder, observation, question)
        return AskOutcome(
            question=question,
            answer=answer.text,
            agreed=answer.agreed,
            rules_verdict=result.verdict.value,
            error=answer.error,
        )

    def _product(self, record: RecordedPart) -> str:
        if record.product:
            return record.product
        settings = self.library.product_settings()
        if len(settings) == 1:
            return settings[0].product
        raise UserError(f"part {record.part_id} names no product: cannot choose its standard")

    # ------------------------------------------------------------------ audit

    def audit(
        self, user: User | None, files: Sequence[str | Path], product: str, record: bool = False
    ) -> AuditOutcome:
        """Run the batch audit on uploaded images (or one zip) under the product's active
        standard; the report stays in the console's work folder. ``record``: the parts
        also go into the line's records, at a station named after the audit
        (``audit-20261206T025512Z-k3j2x9_a``: each audit a lot of its own), for review
        here."""
        import shutil

        from inspection.audit import AuditOptions, audit
        from inspection.audit.inputs import describe_files_not_audited, files_not_audited

        require(user, AUDIT)
        files = [Path(f) for f in files or ()]
        if not files:
            raise UserError("upload images or a .zip to audit")
        version, _ = self.library.active_standard(product)
        audits = self.workdir / "audits"
        audits.mkdir(parents=True, exist_ok=True)
        # Named by the time, and unique whatever the clock says (two audits in one tick).
        stamp = self.now().strftime("%Y%m%dT%H%M%SZ")
        run = Path(tempfile.mkdtemp(prefix=f"{stamp}-", dir=audits))
        inputs = run / "inputs"
        inputs.mkdir()
        standard_file = run / f"{version.standard_id}-v{version.version}.yaml"
        standard_file.write_text(version.text, encoding="utf-8")
        if len(files) == 1 and files[0].suffix.lower() == ".zip":
            spec: Path = files[0]  # the audit reads zips itself, paths made safe
        else:
            for index, path in enumerate(files):
                shutil.copyfile(path, inputs / f"{index:05d}-{Path(path).name}")
            spec = inputs
        models = self.models
        options = AuditOptions(workers=2, mm_per_px=models.mm_per_px, normality=models.normality)
        not_audited = describe_files_not_audited(files_not_audited(spec))
        summary = audit(spec, run / "audit", self.models.model_dir, standard_file, options)
        recorded = None
        if record:
            from inspection.audit.recording import record_audit

            station = f"audit-{run.name}"  # audit-20261206T025512Z-k3j2x9_a: a lot of its own
            recorded = record_audit(spec, run / "audit", self.store, station, product, False)
        return AuditOutcome(
            out=run / "audit",
            report=run / "audit" / "report.html",
            results_csv=run / "audit" / "results.csv",
            parts=summary.parts,
            verdicts=dict(summary.verdicts),
            unreadable=summary.unreadable,
            not_audited=not_audited,
            recorded=recorded,
        )

    # ------------------------------------------------------------------ standards, models

    def save_standard(self, user: User | None, text: str, note: str | None = None) -> Any:
        """Validate and store a standard as its next version (engineers only)."""
        user = require(user, EDIT_STANDARDS)
        return self.library.save(text, user.name, note)

    def activate_standard(
        self, user: User | None, product: str, standard_id: str, version: int
    ) -> Any:
        user = require(user, EDIT_STANDARDS)
        return self.library.activate(product, standard_id, int(version), user.name)

    def switch_adapter(self, user: User | None, product: str, adapter: str | None) -> Any:
        """Use ``adapter`` (``None``: the base decoder) for a product's reports."""
        user = require(user, SWITCH_MODELS)
        return self.library.set_adapter(product, adapter or None, user.name, self.models.adapters())

    def model_card(self) -> str:
        """The active detection model's card (Markdown), or what is missing."""
        card = Path(self.models.model_dir) / "MODEL_CARD.md"
        if card.is_file():
            return card.read_text(encoding="utf-8")
        return f"No model card in {self.models.model_dir}."

    def export_records(self, user: User | None, days: float) -> Path:
        """The records of the parts captured in the last ``days``, as a CSV file in the
        console's work folder (``inspection records export``'s columns)."""
        from inspection.records.export import export_records

        require(user, VIEW)
        since, until = self.statistics_window(days)
        out = self.workdir / "exports" / f"records-{until.strftime('%Y%m%dT%H%M%SZ')}.csv"
        out.parent.mkdir(parents=True, exist_ok=True)
        export_records(self.store, out, since, until, progress=False)
        return out

    def statistics_window(self, days: float) -> tuple[datetime, datetime]:
        if not 0 < days <= 366:
            raise UserError("choose between 1 and 366 days")
        now = self.now()
        return now - timedelta(days=days), now


def draw_defects(image: np.ndarray, defects: Sequence[dict[str, Any]]) -> np.ndarray:
    """The part's image with each recorded defect's box tinted by its action and
    labelled with its class and clause, and the box of the depression a 3D profiler
    sized it on dashed (:func:`footprint_boxes`)."""
    from inspection.viz import overlay

    shape = image.shape[:2]
    return overlay(image, defect_boxes(shape, defects), dashed=footprint_boxes(shape, defects))


def defect_boxes(
    shape: tuple[int, ...], defects: Sequence[dict[str, Any]]
) -> list[tuple[np.ndarray, str, tuple[int, int, int]]]:
    """``(mask, label, rgb)`` of each recorded defect's box on a picture of ``shape``:
    coloured by its action, labelled with its class and clause."""
    regions = []
    for defect in defects:
        if not defect.get("bbox"):
            continue
        label = " ".join(filter(None, (defect.get("defect_class"), defect.get("clause_id"))))
        regions.append((_box_mask(shape, defect["bbox"]), label, _action_colour(defect)))
    return regions


def footprint_boxes(
    shape: tuple[int, ...], defects: Sequence[dict[str, Any]]
) -> list[tuple[np.ndarray, tuple[int, int, int]]]:
    """``(mask, rgb)`` of the box of each recorded defect's footprint (the depression a
    3D profiler read its sizes on, where one did) on a picture of ``shape``."""
    return [
        (_box_mask(shape, defect["footprint_bbox"]), _action_colour(defect))
        for defect in defects
        if defect.get("footprint_bbox")
    ]


def _box_mask(shape: tuple[int, ...], box: Sequence[int]) -> np.ndarray:
    """A ``(H, W)`` uint8 mask of ``[x0, y0, x1, y1]`` (x1, y1 exclusive), clipped."""
    height, width = shape[:2]
    x0, y0, x1, y1 = (int(v) for v in box)
    mask = np.zeros((height, width), np.uint8)
    mask[max(0, y0) : min(height, y1), max(0, x0) : min(width, x1)] = 1
    return mask


def _action_colour(defect: dict[str, Any]) -> tuple[int, int, int]:
    try:
        return VERDICT_COLOURS[Action(str(defect.get("action"))).verdict]
    except ValueError:
        return (40, 120, 230)


def _read_clip(path: Path) -> tuple[Any, bytes]:
    """A spoken question's clip (validated: empty or NaN audio is refused) and its WAV."""
    import soundfile as sf

    from inspection.io import read_audio

    clip = read_audio(path)
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(clip.samples, -1, 1), clip.sample_rate, format="WAV", subtype="PCM_16")
    return clip, buffer.getvalue()
