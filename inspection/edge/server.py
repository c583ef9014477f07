"""The edge's HTTP API: ``inspection edge serve``. Torch-free (FastAPI, ONNX Runtime).

One bundle, loaded and self-tested at start, decides the parts posted to it:

- ``POST /v1/inspect`` (multipart: ``image`` file, optional ``audio`` WAV, ``part_id``,
  optional ``product``, ``station``, ``mm_per_px``, and a 3D profiler's ``height_map``
  registered to the image: a one-channel TIFF of float32 mm, or of integer counts read
  through ``height_scale_mm``, ``height_offset_mm`` and ``height_invalid`` as a GenICam
  camera reports them with each frame) answers the part's
  :class:`~inspection.types.InspectionResult` as JSON, with ``forwarded``: whether its
  payload was queued for the cloud. A frame or clip that cannot be read is a REVIEW
  with the reason (HTTP 200: the part is decided, to review); a request that is not
  one (no image, a bad part id, an unknown product, a file over the size limit) is a
  4xx, never a 500.
- ``GET /healthz``: the process answers. ``GET /readyz``: 200 once the bundle is loaded
  and its self-test passed, 503 otherwise (and ``/v1/inspect`` answers 503 until then:
  a bundle that fails its self-test decides nothing).

With a cloud (``--cloud URL``) every payload goes into the durable outbox
(:class:`~inspection.edge.outbox.Outbox`) and a :class:`~inspection.edge.outbox.Forwarder`
thread sends it: the edge keeps deciding while the cloud is away.

The API is open on loopback; on any other address it needs a bearer token
(``--api-token-file``), compared in constant time.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import importlib.util
import ipaddress
import logging
import math
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, Header, HTTPException, UploadFile
from fastapi.responses import JSONResponse

from inspection.edge.install import SelfTestReport
from inspection.edge.payload import PART_ID_PATTERN, EdgePayload
from inspection.errors import UserError
from inspection.io import HeightEncoding, InputError, read_audio, read_height_map, read_image
from inspection.types import Frame, InspectionResult, Observation

log = logging.getLogger(__name__)

MAX_IMAGE_BYTES = 64 * 2**20  # a 50 Mpx 16-bit PNG compresses well under this
MAX_AUDIO_BYTES = 16 * 2**20  # the longest tap test the detector takes, as 32-bit WAV
_CHUNK = 2**20
_LOOPBACK_NAMES = ("localhost",)


@dataclass
class EdgeService:
    """What the edge API serves: a runtime, its self-test, and the way to the cloud.

    Parameters
    ----------
    runtime
        An :class:`~inspection.edge.runtime.EdgeRuntime`.
    selftest
        Its self-test (the API decides nothing unless it passed).
    outbox, forwarder
        Helper C's ``Outbox`` and ``Forwarder`` where a cloud is configured.
    api_token
        The bearer token the API requires (``None``: open, loopback only).
    """

    runtime: Any
    selftest: SelfTestReport
    outbox: Any = None
    forwarder: Any = None
    api_token: str | None = None

    @property
    def ready(self) -> bool:
        return self.selftest.passed

    def forward(self, payload: EdgePayload | None) -> bool:
        """Queue ``payload`` for the cloud; ``False`` when there is no cloud, no payload,
        the part id is queued already, or the outbox refused it (logged: the edge keeps
        deciding)."""
        if self.outbox is None or payload is None:
            return False
        try:
            return bool(self.outbox.put(payload))
        except Exception:  # a full or broken outbox must not stop the line
            log.exception("outbox refused the payload of part %s", payload.part_id)
            return False


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``)."""
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_token: str | None) -> None:
    """Refuse to open the API beyond loopback without a token.

    Raises
    ------
    UserError
        ``host`` is not loopback and there is no token.
    """
    if api_token is None and not is_loopback(host):
        raise UserError(
            f"--host {host} is not a loopback address: give --api-token-file FILE (clients "
            "then send 'Authorization: Bearer TOKEN'), or serve on 127.0.0.1"
        )


def read_token(path: str | Path) -> str:
    """The token in ``path`` (first line, stripped).

    Raises
    ------
    UserError
        A missing or empty token file.
    """
    path = Path(path).expanduser()
    try:
        token = path.read_text(encoding="utf-8").strip().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the token file ({exc})") from exc
    if not token or not token[0].strip():
        raise UserError(f"{path}: the token file is empty")
    return token[0].strip()


def load_service(
    *,
    bundle_dir: str | Path | None = None,
    home: str | Path | None = None,
    public_key: str | Path | None = None,
    product: str | None = None,
    split: str | None = None,
    threads: int | None = None,
    cloud: str | None = None,
    token_file: str | Path | None = None,
    outbox_path: str | Path | None = None,
    api_token_file: str | Path | None = None,
    review_from: float | None = None,
    guard_band: str | Path | None = None,
    profiler_dents: bool = False,
) -> EdgeService:
    """Load a bundle (``bundle_dir``, or the home's current one), self-test it, and
    connect the outbox where a cloud is given. A guard band (``guard_band.json``,
    :func:`~inspection.pipeline.with_guard_band`) is read first and applies once the
    self-test has passed: the self-test reproduces what the bundle decided at export, and
    the band is the plant's rule on top of it, like ``review_from``. ``profiler_dents``
    searches each part's height map for the dents the camera missed
    (:func:`~inspection.pipeline.with_profiler_dents`; the self-test's parts carry none).

    Raises
    ------
    UserError
        A bundle that does not verify, bad options (a cloud without a token file or an
        outbox, an outbox module that is not installed).
    """
    from inspection.edge.bundle import load_bundle
    from inspection.edge.install import current_bundle, run_selftest, trusted_key
    from inspection.edge.runtime import EdgeRuntime
    from inspection.pipeline import with_guard_band
    from inspection.standards import load_guard_band

    guard = load_guard_band(guard_band) if guard_band is not None else None  # fails first
    if bundle_dir is not None:
        bundle = load_bundle(bundle_dir, public_key=trusted_key(home, public_key))
    else:
        bundle = current_bundle(home, public_key)
    runtime = EdgeRuntime(
        bundle,
        product=product,
        split=split,
        threads=threads,
        review_from=review_from,
        profiler_dents=profiler_dents,
    )
    report = run_selftest(runtime)
    if not report.passed:
        log.error("bundle %s failed its self-test: %s", bundle.version, "; ".join(report.failures))
    runtime.thresholds = with_guard_band(runtime.thresholds, guard)
    service = EdgeService(runtime, report)
    if api_token_file is not None:
        service.api_token = read_token(api_token_file)
    if cloud is not None:
        service.outbox, service.forwarder = _cloud(cloud, token_file, outbox_path)
    return service


def _cloud(url: str, token_file: str | Path | None, outbox_path: str | Path | None):
    if token_file is None or outbox_path is None:
        raise UserError("--cloud needs --token-file FILE (the cloud's API key) and --outbox FILE")
    if importlib.util.find_spec("inspection.edge.outbox") is None:
        raise UserError("--cloud needs inspection.edge.outbox, which this install does not have")
    from inspection.edge.outbox import Forwarder, Outbox

    outbox = Outbox(outbox_path)
    return outbox, Forwarder(outbox, url.rstrip("/"), read_token(token_file))


def create_edge_app(service: EdgeService) -> FastAPI:
    """The edge API over ``service`` (see the module's docstring)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if service.forwarder is not None:
            service.forwarder.start()
        try:
            yield
        finally:
            if service.forwarder is not None:
                service.forwarder.stop()

    app = FastAPI(title="inspection edge", version=_version(), lifespan=lifespan)
    authorized = _authorizer(service.api_token)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        body = {
            "ready": service.ready,
            "bundle_version": service.runtime.bundle.version,
            "model_version": service.runtime.bundle.model_version,
            "split": service.runtime.split,
            "selftest": service.selftest.to_json(),
        }
        if service.outbox is not None:
            body["pending"] = service.outbox.pending()
        return JSONResponse(body, status_code=200 if service.ready else 503)

    @app.post("/v1/inspect", dependencies=[Depends(authorized)])
    def inspect(
        image: Annotated[UploadFile, File(description="The part's frame (PNG, JPEG, TIFF...)")],
        part_id: Annotated[str, Form(max_length=128)],
        audio: Annotated[UploadFile | None, File(description="Tap-test clip (WAV)")] = None,
        product: Annotated[str | None, Form(max_length=64)] = None,
        station: Annotated[str, Form(max_length=128)] = "",
        mm_per_px: Annotated[float | None, Form()] = None,
        height_map: Annotated[
            UploadFile | None,
            File(description="3D profiler height map (TIFF: float32 mm, or integer counts)"),
        ] = None,
        height_scale_mm: Annotated[float | None, Form()] = None,
        height_offset_mm: Annotated[float, Form()] = 0.0,
        height_invalid: Annotated[int | None, Form()] = None,
    ) -> dict[str, Any]:
        # Sync on purpose: FastAPI runs it in its thread pool, ONNX Runtime releases the GIL.
        if not service.ready:
            raise HTTPException(503, "the bundle has not passed its self-test")
        if not re.fullmatch(PART_ID_PATTERN, part_id):
            raise HTTPException(422, f"part_id {part_id!r} must match {PART_ID_PATTERN}")
        runtime = service.runtime
        try:
            runtime.standard_for(product)
        except UserError as exc:
            raise HTTPException(422, str(exc)) from None
        if mm_per_px is not None and not (math.isfinite(mm_per_px) and mm_per_px > 0):
            raise HTTPException(422, f"mm_per_px must be a finite positive number, not {mm_per_px}")
        encoding = _height_encoding(height_scale_mm, height_offset_mm, height_invalid)
        image_bytes = _read_upload(image, MAX_IMAGE_BYTES, "image")
        audio_bytes = _read_upload(audio, MAX_AUDIO_BYTES, "audio") if audio else None
        height_bytes = None
        if height_map is not None:
            height_bytes = _read_upload(height_map, MAX_IMAGE_BYTES, "height_map")
        try:
            observation = _observation(
                image_bytes,
                image.filename,
                audio_bytes,
                audio,
                part_id,
                product,
                station,
                mm_per_px,
                height_bytes,
                height_map.filename if height_map else None,
                encoding,
            )
        except UserError as exc:  # the part is on the line: it goes to review, with why
            result, payload = runtime.review(part_id, str(exc), product=product, station=station)
        else:
            result, payload = runtime.inspect(observation)
        return _answer(result, service.forward(payload), payload)

    return app


def _authorizer(token: str | None):
    digest = None if token is None else hashlib.sha256(token.encode()).digest()

    def authorized(authorization: Annotated[str | None, Header()] = None) -> None:
        if digest is None:
            return
        scheme, _, given = (authorization or "").partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(
            hashlib.sha256(given.strip().encode()).digest(), digest
        )
        if not ok:
            raise HTTPException(
                401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
            )

    return authorized


def _read_upload(upload: UploadFile, limit: int, what: str) -> bytes:
    """The upload's bytes, refused with 413 past ``limit`` (read in chunks: a huge body
    is not held in memory to be measured)."""
    chunks, size = [], 0
    while chunk := upload.file.read(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"{what} is over {limit // 2**20} MiB")
        chunks.append(chunk)
    return b"".join(chunks)


def _height_encoding(
    scale_mm: float | None, offset_mm: float, invalid: int | None
) -> HeightEncoding | None:
    """The request's height encoding; a malformed one is the request's fault (422)."""
    if scale_mm is None:
        if offset_mm != 0.0 or invalid is not None:
            raise HTTPException(422, "height_offset_mm and height_invalid need height_scale_mm")
        return None
    try:
        return HeightEncoding(scale_mm, offset_mm, invalid)
    except UserError as exc:
        raise HTTPException(422, str(exc)) from None


def _observation(
    image_bytes: bytes,
    image_name: str | None,
    audio_bytes: bytes | None,
    audio: UploadFile | None,
    part_id: str,
    product: str | None,
    station: str,
    mm_per_px: float | None,
    height_bytes: bytes | None = None,
    height_name: str | None = None,
    encoding: HeightEncoding | None = None,
) -> Observation:
    """The part as :mod:`inspection.io` reads files (pixel budget, EXIF orientation,
    NaN audio refused, a height map one channel of mm or of counts with their encoding),
    with errors that name the uploaded file, not a temporary one.

    Raises
    ------
    UserError
        A file that cannot be read, or a height map of another size than the image.
    """
    with _spooled(image_bytes) as path:
        image = _named(read_image, path, image_name or "image")
    clip = None
    if audio_bytes is not None:
        with _spooled(audio_bytes) as path:
            clip = _named(read_audio, path, (audio.filename if audio else None) or "audio")
    height_map = None
    if height_bytes is not None:
        with _spooled(height_bytes) as path:
            read = partial(read_height_map, encoding=encoding)
            height_map = _named(read, path, height_name or "height_map")
    return Observation(
        part_id=part_id,
        station=station,
        frames=(Frame(image, mm_per_px=mm_per_px, height_map=height_map),),
        audio=clip,
        product=product,
    )


@contextlib.contextmanager
def _spooled(data: bytes) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="inspection-edge-") as tmp:
        path = Path(tmp) / "upload"
        path.write_bytes(data)
        yield path


def _named(reader, path: Path, name: str):
    try:
        return reader(path)
    except InputError as exc:
        raise InputError(str(exc).replace(str(path), name)) from None


def _answer(result: InspectionResult, forwarded: bool, payload: EdgePayload | None) -> dict:
    body = result.to_json()
    body["forwarded"] = forwarded
    body["bundle_version"] = payload.bundle_version if payload is not None else None
    body["payload_bytes"] = payload.tensor_bytes() if payload is not None else None
    return body


def _version() -> str:
    from inspection import __version__

    return __version__


def serve(service: EdgeService, host: str = "127.0.0.1", port: int = 8600) -> None:
    """Serve the edge API with uvicorn until interrupted.

    Raises
    ------
    UserError
        A non-loopback ``host`` without an API token.
    """
    import uvicorn

    check_bind(host, service.api_token)
    uvicorn.run(create_edge_app(service), host=host, port=port, log_level="info")
