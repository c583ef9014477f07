"""The edge API on a real uvicorn server on 127.0.0.1: verdicts, review, 4xx, auth, outbox."""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from edge_helpers import PART_SIZE, PRODUCT
from PIL import Image
from test_runtime import OTHER_SEED, shared_bundle

from inspection.edge import server as edge_server
from inspection.edge.install import SelfTestReport
from inspection.edge.server import EdgeService, check_bind, create_edge_app, load_service
from inspection.errors import UserError
from inspection.io import read_audio, write_audio
from inspection.types import Frame, Observation

WAIT_S = 60  # generous: a loaded CI machine starts a server in well under a second


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    return shared_bundle(tmp_path_factory)


@pytest.fixture(scope="module")
def service(bundle_dir) -> EdgeService:
    return load_service(bundle_dir=bundle_dir, threads=1)


@pytest.fixture(scope="module")
def parts():
    from inspection.export.bundle import holdout_parts

    return [obs for obs, _ in holdout_parts(PRODUCT, seed=OTHER_SEED, size=PART_SIZE)]


@contextlib.contextmanager
def running(service: EdgeService):
    """The app under a real uvicorn on a free loopback port (the socket is bound here,
    so no other process can take the port in between)."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_edge_app(service), log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=WAIT_S) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(WAIT_S)
        sock.close()


@pytest.fixture(scope="module")
def client(service):
    with running(service) as client:
        yield client


def png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def wav(samples: np.ndarray, tmp_path: Path, subtype: str = "FLOAT") -> bytes:
    path = tmp_path / "tap.wav"
    sf.write(path, samples, 16000, subtype=subtype)
    return path.read_bytes()


def post(client, image: bytes | None, audio: bytes | None = None, **fields):
    files = {}
    if image is not None:
        files["image"] = ("part.png", image, "image/png")
    if audio is not None:
        files["audio"] = ("tap.wav", audio, "audio/wav")
    data = {"part_id": "p-1", **fields}
    return client.post("/v1/inspect", files=files, data=data)


def test_health_and_readiness(client, service):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["ready"] is True and body["selftest"]["passed"] is True
    assert body["selftest"]["parts"] >= 2
    assert body["bundle_version"] == service.runtime.bundle.version


def test_inspect_answers_the_runtimes_verdict(client, service, parts, tmp_path):
    verdicts = set()
    for observation in parts:
        image = observation.frames[0].image
        audio = None
        if observation.audio is not None:
            write_audio(tmp_path / "a.wav", observation.audio)
            audio = (tmp_path / "a.wav").read_bytes()
        answer = post(
            client,
            png(image),
            audio,
            part_id=observation.part_id,
            product=PRODUCT,
            mm_per_px=str(observation.frames[0].mm_per_px),
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        clip = read_audio(tmp_path / "a.wav") if audio is not None else None
        expected, payload = service.runtime.inspect(
            Observation(
                part_id=observation.part_id,
                station="",
                frames=(Frame(image, mm_per_px=observation.frames[0].mm_per_px),),
                audio=clip,
                product=PRODUCT,
            )
        )
        assert body["verdict"] == expected.verdict.value, body["reasons"]
        assert body["scores"] == pytest.approx(expected.scores, abs=1e-6)
        assert body["part_id"] == observation.part_id and body["forwarded"] is False
        assert body["payload_bytes"] == payload.tensor_bytes() > 0
        assert body["model_version"] == service.runtime.bundle.model_version
        verdicts.add(body["verdict"])
    assert len(verdicts) >= 2  # PASS and another: the answers are not one constant


def test_a_review_band_on_the_box_answers_review_for_what_would_pass(bundle_dir, parts):
    banded = load_service(bundle_dir=bundle_dir, threads=1, review_from=1e-6)
    assert banded.ready  # the self-test expects its recorded PASSes as REVIEW in the band
    with running(banded) as client:
        for observation in parts:
            image = observation.frames[0].image
            mm = str(observation.frames[0].mm_per_px)
            answer = post(
                client, png(image), None, part_id=observation.part_id, product=PRODUCT, mm_per_px=mm
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["verdict"] != "PASS"


def test_a_guard_band_on_the_box_applies_after_the_self_test(bundle_dir, tmp_path):
    from inspection.errors import UserError

    band = tmp_path / "guard_band.json"
    band.write_text('{"margins": {"scratch": {"length_mm": {"fixed": 0.2, "proportional": 0.1}}}}')
    guarded = load_service(bundle_dir=bundle_dir, threads=1, guard_band=band)
    assert guarded.ready  # the self-test reproduces the export's decisions, band or not
    thresholds = guarded.runtime.thresholds
    assert thresholds.guard.margin("scratch", "length_mm", 3.0) == pytest.approx(0.5)
    assert thresholds.version.endswith(thresholds.guard.version)  # recorded with each verdict
    with pytest.raises(UserError, match="no such guard-band file"):  # before the bundle loads
        load_service(bundle_dir=tmp_path / "no-bundle", guard_band=tmp_path / "absent.json")


def test_unreadable_inputs_are_review_with_the_reason(client, tmp_path):
    image = png(np.full((PART_SIZE, PART_SIZE, 3), 120, np.uint8))
    for files, expected in (
        ((b"\x89PNG\r\n\x1a\n not really", None), "part.png: not a readable image"),
        ((image, wav(np.array([0.1, np.nan, 0.2] * 4000, np.float32), tmp_path)), "NaN"),
        ((image, b"RIFF....WAVEfmt garbage"), "tap.wav: not a readable audio file"),
    ):
        answer = post(client, *files)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["verdict"] == "REVIEW", body
        assert any(expected in r for r in body["reasons"]), body["reasons"]
        assert "upload" not in " ".join(body["reasons"])  # the file's name, not a temp path


def test_malformed_requests_are_4xx_never_500(client, monkeypatch):
    image = png(np.full((PART_SIZE, PART_SIZE, 3), 120, np.uint8))
    cases = {
        "no image": post(client, None),
        "no part id": client.post("/v1/inspect", files={"image": ("p.png", image)}),
        "bad part id": post(client, image, part_id="../../etc/passwd x"),
        "unknown product": post(client, image, product="widget"),
        "zero scale": post(client, image, mm_per_px="0"),
        "not a number": post(client, image, mm_per_px="wide"),
        "json body": client.post("/v1/inspect", json={"part_id": "p-1"}),
        "wrong method": client.get("/v1/inspect"),
    }
    for name, answer in cases.items():
        assert 400 <= answer.status_code < 500, (name, answer.status_code, answer.text)
    assert "widget" in cases["unknown product"].text
    monkeypatch.setattr(edge_server, "MAX_IMAGE_BYTES", 1000)
    too_big = post(client, image + b"\0" * 2000)
    assert too_big.status_code == 413 and "over" in too_big.text


def test_parallel_requests_all_get_their_own_verdict(client):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (PART_SIZE, PART_SIZE, 3), dtype=np.uint8) for _ in range(8)]

    def one(i: int):
        return post(client, png(images[i]), part_id=f"par-{i}")

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(one, range(len(images))))
    assert [a.status_code for a in answers] == [200] * len(images)
    assert [a.json()["part_id"] for a in answers] == [f"par-{i}" for i in range(len(images))]


def test_a_bundle_that_failed_its_self_test_decides_nothing(service):
    failed = EdgeService(service.runtime, SelfTestReport(parts=3, failures=("p: verdict",)))
    with running(failed) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 503
        answer = post(client, png(np.zeros((PART_SIZE, PART_SIZE, 3), np.uint8)))
        assert answer.status_code == 503


def test_a_token_guards_the_api(service):
    guarded = EdgeService(service.runtime, service.selftest, api_token="s3cret-token")
    image = png(np.zeros((PART_SIZE, PART_SIZE, 3), np.uint8))
    with running(guarded) as client:
        assert client.get("/healthz").status_code == 200  # probes stay open
        assert post(client, image).status_code == 401
        client.headers["Authorization"] = "Bearer wrong"
        assert post(client, image).status_code == 401
        client.headers["Authorization"] = "Bearer s3cret-token"
        assert post(client, image).status_code == 200


def test_no_open_api_beyond_loopback():
    for host in ("127.0.0.1", "::1", "localhost"):
        check_bind(host, None)
    check_bind("0.0.0.0", "a-token")
    for host in ("0.0.0.0", "192.168.1.20", "edge.example"):
        with pytest.raises(UserError, match="not a loopback address"):
            check_bind(host, None)


def test_with_a_cloud_every_payload_is_queued_once(bundle_dir, tmp_path):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{closed.getsockname()[1]}"  # bound, never listening: unreachable
    (tmp_path / "token").write_text("cloud-key\n")
    service = load_service(
        bundle_dir=bundle_dir,
        threads=1,
        cloud=url,
        token_file=tmp_path / "token",
        outbox_path=tmp_path / "outbox.db",
    )
    image = png(np.full((PART_SIZE, PART_SIZE, 3), 100, np.uint8))
    try:
        with running(service) as client:
            first = post(client, image, part_id="cloud-1")
            again = post(client, image, part_id="cloud-1")
            other = post(client, b"broken", part_id="cloud-2")  # a REVIEW is reported too
            assert [a.status_code for a in (first, again, other)] == [200] * 3
            assert (first.json()["forwarded"], again.json()["forwarded"]) == (True, False)
            assert other.json()["verdict"] == "REVIEW" and other.json()["forwarded"] is True
            assert client.get("/readyz").json()["pending"] == 2
    finally:
        closed.close()
    assert service.outbox.pending() == 2  # the cloud never answered: both still queued
    with pytest.raises(UserError, match="--token-file"):
        load_service(bundle_dir=bundle_dir, cloud=url)


def _tiff(array: np.ndarray) -> bytes:
    import cv2

    ok, data = cv2.imencode(".tiff", array)
    assert ok
    return data.tobytes()


def _pit_map(mm_per_px: float) -> np.ndarray:
    """A face 5 µm of noise rough with a pit 0.1 mm deep and 2.4 mm across."""
    yy, xx = np.mgrid[:PART_SIZE, :PART_SIZE]
    d2 = ((yy - 48) ** 2 + (xx - 48) ** 2) / (1.2 / mm_per_px) ** 2
    pit = np.where(d2 <= 1, -0.1 * (1 - d2) ** 2, 0.0)
    noise = np.random.default_rng(3).normal(0, 0.005, pit.shape)
    return (pit + noise).astype(np.float32)


def test_a_profilers_height_map_posted_with_the_part_measures_its_dents(bundle_dir, parts):
    """``height_map`` beside the image (float mm, or a 3D camera's counts with their
    encoding), on a box that searches height maps (``--profiler-dents``): the pit is a
    dent with its depth, the same either way; a map that cannot be read as mm, or of
    another size, is the part's REVIEW with why; a malformed encoding is the request's
    fault."""
    mm = parts[0].frames[0].mm_per_px
    height = _pit_map(mm)
    counts = np.round((height + 2.0) * 1000).astype(np.uint16)  # 1 µm a count, -2 mm at 0
    encoding = {"height_scale_mm": "0.001", "height_offset_mm": "-2"}
    searching = load_service(bundle_dir=bundle_dir, threads=1, profiler_dents=True)
    assert searching.ready  # the self-test's parts carry no height map: nothing changes
    image = png(np.full((PART_SIZE, PART_SIZE, 3), 120, np.uint8))

    def inspect(client, data: bytes, **fields):
        files = {"image": ("part.png", image, "image/png"), "height_map": ("p.tiff", data)}
        fields = {"part_id": "p-1", "product": PRODUCT, "mm_per_px": str(mm), **fields}
        return client.post("/v1/inspect", files=files, data=fields)

    with running(searching) as client:
        answers = [inspect(client, _tiff(height)), inspect(client, _tiff(counts), **encoding)]
        for answer in answers:
            assert answer.status_code == 200, answer.text
            body = answer.json()
            dents = [d for d in body["decisions"] if d["defect"]["defect_class"] == "dent"]
            assert body["verdict"] != "PASS" and len(dents) == 1, body
            depth = dents[0]["defect"]["attributes"]["depth_mm"]
            assert depth == pytest.approx(0.1, abs=0.02)
        first, second = (a.json()["decisions"] for a in answers)
        assert first[0]["defect"]["attributes"] == pytest.approx(
            second[0]["defect"]["attributes"], rel=0.05
        )
        for data, words in (
            (_tiff(counts), "needs the profiler's z scale"),
            (_tiff(height[:50]), "height map is 96x50 px"),
            (b"II*\0 not a tiff", "p.tiff: cannot decode a height map"),
        ):
            body = inspect(client, data).json()
            assert body["verdict"] == "REVIEW" and any(words in r for r in body["reasons"]), body
        for fields in ({"height_offset_mm": "1"}, {"height_scale_mm": "0"}):
            answer = inspect(client, _tiff(counts), **fields)
            assert answer.status_code == 422, (fields, answer.text)
