"""The FastAPI app of the report service: :func:`create_app`.

One request, ``POST /v1/reports`` with an :class:`~inspection.edge.payload.EdgePayload`:

1. the body's size is checked before anything parses it (413);
2. the bearer token (401 unknown or missing, 403 revoked);
3. FastAPI validates the payload (422: shape, dtype, split, fields);
4. the standard, by id and version (422 naming it when the service has no such one);
   the tensors' widths against the decoder (422);
5. the cloud re-applies the standard to the payload's defects and holds the report to
   the stricter of that and the edge's verdict (an edge REJECT or REVIEW never becomes
   a PASS);
6. the part joins the dynamic batcher's queue (503 + ``Retry-After`` when full); the
   worker fuses ``tokens`` payloads, decodes the batch, cross-checks each report and
   commits the answers to SQLite before any is sent;
7. the answer. A part id already answered gets the stored answer again with
   ``duplicate: true``, also while its first request is still decoding.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from inspection.edge.payload import PART_ID_PATTERN, EdgePayload
from inspection.errors import UserError
from inspection.serve.auth import KeyStatus, KeyStore
from inspection.serve.batching import BatchOptions, DynamicBatcher, QueueFull
from inspection.serve.metrics import BodyLimit, ServiceMetrics
from inspection.serve.settings import ServeSettings
from inspection.serve.standards import StandardIndex
from inspection.serve.store import ReportStore
from inspection.standards import Standard, apply_standard
from inspection.types import Action, InspectionResult, Verdict

log = logging.getLogger("inspection.serve")


class ReportAnswer(BaseModel):
    """The service's answer for one part."""

    part_id: str
    report: dict[str, Any] | None = Field(
        description="The decoder's report (null when it could not write one)."
    )
    verdict: Verdict = Field(description="The part's final verdict after the cross-check.")
    agreed: bool = Field(description="The report matches the rules on every compared field.")
    disagreements: list[str]
    rules_verdict: Verdict = Field(
        description="What the report is held to: the stricter of the cloud's rules and the edge."
    )
    edge_verdict: Verdict
    standard_id: str
    standard_version: str
    model_version: str
    decoder_version: str
    adapter: str | None
    duplicate: bool = Field(description="This part id was answered before: the first answer.")
    error: str | None = None


@dataclass(frozen=True)
class Job:
    """One part, checked and ready for the decoder."""

    payload: EdgePayload
    standard: Standard
    result: InspectionResult  # what the report is held to


def held_to_edge(
    result: InspectionResult, edge: Verdict, edge_reasons: Sequence[str]
) -> InspectionResult:
    """The cloud rules' result, made as strict as the edge's verdict.

    The edge may know more than the defects it sends (a score above threshold with no
    region to measure, a failed frame): its REVIEW or REJECT stands. An edge REJECT
    carries no disposition, so the result's action is at least ``rework``.
    """
    if Verdict(edge).rank <= Verdict(result.verdict).rank:
        return result
    action = (
        Action.REVIEW
        if edge is Verdict.REVIEW
        else max(result.action, Action.REWORK, key=lambda a: a.rank)
    )
    why = "; ".join(edge_reasons) or "no reason given"
    reason = f"edge verdict {edge.value} ({why}) is stricter than the rules' {result.verdict.value}"
    return replace(result, verdict=edge, action=action, reasons=(*result.reasons, reason))


class ReportService:
    """Everything behind the endpoints: standards, keys, store, decoder and batcher.

    Parameters
    ----------
    settings : ServeSettings
        How to run.
    """

    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self.metrics = ServiceMetrics()
        self.standards = StandardIndex(settings.standards_dirs)
        self.store: ReportStore | None = None
        self.keys: KeyStore | None = None
        self.decoder: Any = None  # ReportDecoder once loaded (torch is imported then)
        self.decoder_version = ""
        self.adapter: str | None = None
        self.load_error: str | None = None
        self.batcher: DynamicBatcher[Job, tuple[dict, bool]] | None = None
        self._inflight: dict[str, asyncio.Future] = {}
        self._loader: threading.Thread | None = None

    # -- life cycle -------------------------------------------------------------------

    def open(self) -> None:
        """Open the databases and start loading the decoder in the background (the
        service answers ``/healthz`` meanwhile; ``/readyz`` once it is loaded).
        Idempotent: a second lifespan over the same app (a test harness's) reuses it."""
        if self.store is not None:
            return
        self.store = ReportStore(self.settings.db_path)
        self.keys = KeyStore(self.settings.keys_path)
        self.standards.scan()
        self._loader = threading.Thread(target=self._load, name="decoder-loader", daemon=True)
        self._loader.start()

    def _load(self) -> None:
        try:
            from inspection.serve.decoding import load_service_decoder

            loaded = load_service_decoder(self.settings)
        except Exception as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.error("the report decoder did not load: %s", self.load_error)
            return
        self.decoder, self.decoder_version, self.adapter = loaded
        options = BatchOptions(
            self.settings.max_batch, self.settings.max_wait_ms / 1000, self.settings.max_queue
        )
        self.batcher = DynamicBatcher(self._process, options, on_batch=self.metrics.observe_batch)
        self.metrics.queue_depth.set_function(self.batcher.depth)
        self.batcher.start()
        log.info("report decoder %s loaded (adapter %s)", self.decoder_version, self.adapter)

    def wait_ready(self, timeout: float) -> bool:
        """Wait for the decoder to load (tests, the benchmark); ``True`` when ready."""
        if self._loader is not None:
            self._loader.join(timeout)
        return self.ready

    @property
    def ready(self) -> bool:
        return self.batcher is not None

    def close(self) -> None:
        """Stop the batcher (queued parts fail) and close the databases; idempotent."""
        if self._loader is not None:
            self._loader.join(30)
        if self.batcher is not None:
            self.batcher.stop()
        for db in (self.store, self.keys):
            if db is not None:
                db.close()
        self._loader = None

    # -- one request ------------------------------------------------------------------

    def authorize(self, token: str | None) -> None:
        """Raise 401 (missing or unknown token) or 403 (revoked)."""
        assert self.keys is not None
        if self.settings.open_without_keys and self.keys.count() == 0:
            return
        challenge = {"WWW-Authenticate": "Bearer"}
        if not token:
            raise HTTPException(401, "missing bearer token", headers=challenge)
        status = self.keys.check(token)
        if status is KeyStatus.REVOKED:
            raise HTTPException(403, "this API key has been revoked")
        if status is not KeyStatus.VALID:
            raise HTTPException(401, "unknown API key", headers=challenge)

    def prepare(self, payload: EdgePayload) -> Job:
        """Check the payload against the service (422) and decide it by the cloud's rules."""
        standard = self.standards.get(payload.standard_id, payload.standard_version)
        if standard is None:
            known = self.standards.describe()
            raise HTTPException(
                422,
                f"unknown standard {payload.standard_id!r} version "
                f"{payload.standard_version!r}; this service has: {known}",
            )
        from inspection.serve.decoding import check_tensors

        try:
            check_tensors(self.decoder, payload)
            result = apply_standard(standard, payload.to_defects(), payload.part_id)
        except (UserError, ValueError) as exc:
            raise HTTPException(422, str(exc)) from None
        return Job(payload, standard, held_to_edge(result, payload.verdict, payload.reasons))

    async def answer(self, payload: EdgePayload) -> dict[str, Any]:
        """The answer for one payload: stored, in flight, or decoded now.

        Everything up to the queue runs without an ``await``, so two requests for one
        part id cannot both miss the store and the in-flight table. A request that gives
        up (timeout, client gone) leaves its part decoding: it is stored, and the
        repeat gets it.
        """
        assert self.store is not None
        part_id = payload.part_id
        stored = self.store.get(part_id)
        if stored is not None:
            return {**stored, "duplicate": True}
        shared = self._inflight.get(part_id)
        if shared is not None:  # the first request for this part is still decoding
            answer, _ = await self._wait(shared)
            return {**answer, "duplicate": True}
        if self.batcher is None:
            raise HTTPException(503, "the report decoder is loading", headers={"Retry-After": "5"})
        job = self.prepare(payload)
        try:
            future = self.batcher.submit(job)
        except QueueFull as exc:
            raise HTTPException(503, f"busy: {exc}", headers={"Retry-After": "1"}) from None
        shared = asyncio.wrap_future(future)
        self._inflight[part_id] = shared
        shared.add_done_callback(lambda f: self._done(part_id, f))
        answer, fresh = await self._wait(shared)
        return {**answer, "duplicate": not fresh}

    def _done(self, part_id: str, future: asyncio.Future) -> None:
        if self._inflight.get(part_id) is future:
            del self._inflight[part_id]
        if not future.cancelled():
            future.exception()  # retrieved: no "exception was never retrieved" warning

    async def _wait(self, shared: asyncio.Future) -> tuple[dict, bool]:
        # shield: one request's timeout or disconnect does not cancel the shared decode.
        try:
            return await asyncio.wait_for(asyncio.shield(shared), self.settings.decode_timeout_s)
        except TimeoutError:
            raise HTTPException(
                503, "the report is taking long; send the part again", headers={"Retry-After": "5"}
            ) from None

    # -- the worker's side ------------------------------------------------------------

    def _process(self, jobs: Sequence[Job]) -> list[tuple[dict, bool] | Exception]:
        """Decode a batch, cross-check each report, commit the answers, in order;
        ``(answer, fresh)``: ``fresh`` is False where another request stored first.

        A batch that fails is decoded again part by part, so that one part the decoder
        cannot handle fails alone (its request gets the error) and the others are
        answered.
        """
        from inspection.serve.decoding import decode_jobs

        start = time.perf_counter()
        try:
            answers: list[dict | Exception] = list(decode_jobs(self.decoder, jobs))
        except Exception:
            if len(jobs) == 1:
                raise
            log.exception("a batch of %d failed; decoding its parts one by one", len(jobs))
            answers = [self._alone(job) for job in jobs]
        versions = {"decoder_version": self.decoder_version, "adapter": self.adapter}
        ok = [i for i, a in enumerate(answers) if not isinstance(a, Exception)]
        ours = [{**answers[i], **versions} for i in ok]
        assert self.store is not None
        stored = self.store.put_many(
            (jobs[i].payload.part_id, a) for i, a in zip(ok, ours, strict=True)
        )
        self.metrics.decode_seconds.observe(time.perf_counter() - start)
        results: list[tuple[dict, bool] | Exception] = list(answers)  # type: ignore[arg-type]
        for i, mine, kept in zip(ok, ours, stored, strict=True):
            self.metrics.reports.labels(verdict=kept["verdict"]).inc()
            results[i] = (kept, kept == mine)
        return results

    def _alone(self, job: Job) -> dict | Exception:
        from inspection.serve.decoding import decode_jobs

        try:
            return decode_jobs(self.decoder, [job])[0]
        except Exception as exc:
            log.exception("part %s could not be decoded", job.payload.part_id)
            return exc


_bearer = HTTPBearer(auto_error=False, description="An API key: inspection serve keys add NAME")


def _authorized(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    request.app.state.service.authorize(credentials.credentials if credentials else None)


def create_app(settings: ServeSettings | None = None) -> Any:
    """The report service as a FastAPI app (nothing starts until its lifespan does).

    Parameters
    ----------
    settings : ServeSettings | None
        How to run; ``None``: the defaults (the shipped decoder and standards).

    Returns
    -------
    fastapi.FastAPI
        ``app.state.service`` is its :class:`ReportService`.
    """
    settings = settings or ServeSettings()
    service = ReportService(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.open()
        try:
            yield
        finally:
            service.close()

    app = FastAPI(
        title="inspection report service",
        version=_package_version(),
        description="Edge payloads in, cross-checked inspection reports out.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.add_middleware(BodyLimit, max_bytes=settings.max_payload_bytes, metrics=service.metrics)
    errors = {
        400: {"description": "A body that cannot be read (not UTF-8, bad Content-Length)"},
        401: {"description": "Missing or unknown API key"},
        403: {"description": "Revoked API key"},
        413: {"description": "Body larger than the service accepts"},
        422: {"description": "Malformed payload, or a standard or tensor the service lacks"},
        503: {"description": "Loading or busy: retry after Retry-After seconds"},
    }

    @app.post(
        "/v1/reports",
        response_model=ReportAnswer,
        dependencies=[Depends(_authorized)],
        responses=errors,
        summary="Report on one part",
    )
    async def post_report(payload: EdgePayload) -> dict[str, Any]:
        """Decode, cross-check and store the report of one part (idempotent by part id)."""
        return await service.answer(payload)

    @app.get(
        "/v1/reports/{part_id:path}",
        response_model=ReportAnswer,
        dependencies=[Depends(_authorized)],
        responses={**errors, 404: {"description": "No report for this part id"}},
        summary="The stored report of a part",
    )
    async def get_report(
        part_id: Annotated[str, PathParam(pattern=PART_ID_PATTERN)],
    ) -> dict[str, Any]:
        assert service.store is not None
        stored = service.store.get(part_id)
        if stored is None:
            raise HTTPException(404, f"no report for part {part_id!r}")
        return stored

    @app.get("/healthz", summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz", summary="The decoder is loaded", responses={503: {"description": "Not yet"}}
    )
    async def readyz() -> Response:
        body = {
            "ready": service.ready,
            "decoder_version": service.decoder_version or None,
            "adapter": service.adapter,
            "error": service.load_error,
        }
        return JSONResponse(body, status_code=200 if service.ready else 503)

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        data, content_type = service.metrics.render()
        return Response(data, media_type=content_type)

    return app


def app_from_env() -> Any:
    """The app with :func:`~inspection.serve.settings.settings_from_env` settings:
    ``uvicorn --factory inspection.serve.app:app_from_env`` (several workers share the
    SQLite file: the first answer per part id wins in all of them)."""
    from inspection.serve.settings import settings_from_env

    return create_app(settings_from_env())


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("inspection")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


__all__ = ["ReportAnswer", "ReportService", "app_from_env", "create_app", "held_to_edge"]
