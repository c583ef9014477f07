"""The report service through FastAPI's TestClient: a real tiny decoder, a real SQLite
file, real API keys."""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")
pytest.importorskip("torch")

from serve_helpers import STANDARDS_DIR, payload, running_client, tiny_decoder_dir

from inspection.edge.payload import WireDefect, WireTensor
from inspection.serve.auth import KeyStore
from inspection.serve.settings import ServeSettings

MAX_BYTES = 64 * 1024


@pytest.fixture(scope="module")
def db_path(tmp_path_factory):
    return tmp_path_factory.mktemp("serve-app") / "service.db"


@pytest.fixture(scope="module")
def tokens(db_path):
    keys = KeyStore(db_path)
    valid, revoked = keys.add("edge-1"), keys.add("old-box")
    keys.revoke("old-box")
    keys.close()
    return {"valid": valid, "revoked": revoked}


@pytest.fixture(scope="module")
def settings(tmp_path_factory, db_path, tokens):
    return ServeSettings(
        decoder_dir=tiny_decoder_dir(tmp_path_factory),
        standards_dirs=(STANDARDS_DIR,),
        db_path=db_path,
        max_payload_bytes=MAX_BYTES,
        max_wait_ms=5,
    )


@pytest.fixture(scope="module")
def served(settings):
    with running_client(settings) as (client, service):
        yield client, service


@pytest.fixture
def client(served):
    return served[0]


@pytest.fixture(scope="module")
def auth(tokens):
    return {"Authorization": f"Bearer {tokens['valid']}"}


def _metric(client, name: str, **labels: str) -> float:
    """One sample of the service's /metrics (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    key = f"{name}{{{want}}}" if labels else name
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(key + " "):
            return float(line.split()[-1])
    return 0.0


# -- open endpoints and authentication --------------------------------------------------


def test_health_ready_and_metrics_need_no_key(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True and len(ready.json()["decoder_version"]) == 12
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert "inspection_serve_batch_size" in metrics.text
    assert "inspection_serve_queue_depth" in metrics.text


@pytest.mark.parametrize(
    ("header", "status"),
    [(None, 401), ("Bearer insp_not-a-key", 401), ("Basic dXNlcjpwYXNz", 401), ("revoked", 403)],
)
def test_auth_refuses_missing_wrong_and_revoked_keys(
    client, bracket_standard, tokens, header, status
):
    headers = {}
    if header == "revoked":
        headers["Authorization"] = f"Bearer {tokens['revoked']}"
    elif header is not None:
        headers["Authorization"] = header
    body = payload(bracket_standard, "auth-part")
    response = client.post("/v1/reports", json=body, headers=headers)
    assert response.status_code == status, response.text
    assert client.get("/v1/reports/auth-part", headers=headers).status_code == status
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"


def test_a_valid_key_is_served(client, bracket_standard, auth):
    response = client.post("/v1/reports", json=payload(bracket_standard, "auth-ok"), headers=auth)
    assert response.status_code == 200, response.text
    assert client.get("/v1/reports/auth-ok", headers=auth).status_code == 200


# -- bad input: 413 and 422, never a 500 -------------------------------------------------


def test_oversized_body_is_413_before_parsing(client, bracket_standard, auth):
    big = WireTensor.from_array(np.zeros((2000, 32)))  # 128 KB of float16
    body = payload(bracket_standard, "too-big", split="tokens")
    body["patch_tokens"] = big.model_dump()
    data = json.dumps(body).encode()
    assert len(data) > MAX_BYTES
    before = _metric(client, "inspection_serve_requests_total", route="/v1/reports", status="413")
    response = client.post("/v1/reports", content=data, headers=auth)
    assert response.status_code == 413 and str(MAX_BYTES) in response.json()["detail"]
    # Sent without a Content-Length (chunked): cut off while reading.
    chunks = (data[i : i + 8192] for i in range(0, len(data), 8192))
    response = client.post("/v1/reports", content=chunks, headers=auth)
    assert response.status_code == 413
    # Not a byte of it was parsed: no report for the part.
    assert client.get("/v1/reports/too-big", headers=auth).status_code == 404
    after = _metric(client, "inspection_serve_requests_total", route="/v1/reports", status="413")
    assert after == before + 2


def _bad_payloads(standard):
    good = payload(standard, "bad-part")
    nan = WireTensor.from_array(np.zeros((8, 64))).model_dump()
    nan["data"] = base64.b64encode(np.full((8, 64), np.nan, "<f2").tobytes()).decode()
    short = dict(good["fused"], data=good["fused"]["data"][:-8])
    return {
        "not json": b"{not json",
        "a list": b"[1, 2]",
        "no part id": {k: v for k, v in good.items() if k != "part_id"},
        "bad part id": {**good, "part_id": "../../etc/passwd"},
        "unknown field": {**good, "surprise": 1},
        "bad verdict": {**good, "verdict": "MAYBE"},
        "nan tokens": {**good, "fused": nan},
        "short data": {**good, "fused": short},
        "not base64": {**good, "fused": dict(good["fused"], data="%%%")},
        "3-d fused": {**good, "fused": WireTensor.from_array(np.zeros((1, 8, 64))).model_dump()},
        "fused with tokens split": {**good, "split": "tokens"},
        "negative shape": {**good, "fused": dict(good["fused"], shape=[-8, -64])},
        "fused of another decoder": {
            **good,
            "fused": WireTensor.from_array(np.zeros((16, 128))).model_dump(),
        },
        "string attribute": {
            **good,
            "defects": [{"defect_class": "scratch", "attributes": {"length_mm": "long"}}],
        },
    }


@pytest.mark.parametrize(
    "case",
    [
        "not json",
        "a list",
        "no part id",
        "bad part id",
        "unknown field",
        "bad verdict",
        "nan tokens",
        "short data",
        "not base64",
        "3-d fused",
        "fused with tokens split",
        "negative shape",
        "fused of another decoder",
        "string attribute",
    ],
)
def test_malformed_payloads_are_422(client, bracket_standard, auth, case):
    body = _bad_payloads(bracket_standard)[case]
    if isinstance(body, bytes):
        response = client.post(
            "/v1/reports", content=body, headers={**auth, "Content-Type": "application/json"}
        )
    else:
        response = client.post("/v1/reports", json=body, headers=auth)
    assert response.status_code == 422, response.text
    assert response.json()["detail"]
    assert client.get("/v1/reports/bad-part", headers=auth).status_code == 404


def test_tokens_of_another_width_are_422(client, bracket_standard, auth):
    body = payload(bracket_standard, "wide-maps", split="tokens")
    body["maps"] = WireTensor.from_array(np.zeros((5, 16, 16))).model_dump()
    response = client.post("/v1/reports", json=body, headers=auth)
    assert response.status_code == 422 and "maps" in response.json()["detail"]


def test_unknown_standard_is_422_naming_it(client, bracket_standard, auth):
    body = payload(bracket_standard, "unknown-std")
    response = client.post("/v1/reports", json={**body, "standard_id": "QS-NOPE-9"}, headers=auth)
    assert response.status_code == 422 and "QS-NOPE-9" in response.json()["detail"]
    response = client.post("/v1/reports", json={**body, "standard_version": "0ff1ce"}, headers=auth)
    detail = response.json()["detail"]
    assert response.status_code == 422 and "0ff1ce" in detail and bracket_standard.id in detail


def test_defects_the_standard_does_not_know_are_decided_not_500(client, bracket_standard, auth):
    defects = [
        WireDefect(defect_class="alien_goo", attributes={"area_mm2": 3.0}, zone="A"),
        WireDefect(defect_class="scratch", attributes={"colour_of_sky": 1e30}, zone="Z9"),
    ]
    body = payload(bracket_standard, "odd-defects", defects=defects)
    response = client.post("/v1/reports", json=body, headers=auth)
    assert response.status_code == 200, response.text
    assert response.json()["verdict"] != "PASS"


# -- reports, idempotency, the edge's verdict --------------------------------------------


def test_report_is_stored_and_answered_again(client, service_of, bracket_standard, auth):
    defects = [WireDefect(defect_class="scratch", attributes={"length_mm": 7.0}, zone="A")]
    body = payload(bracket_standard, "part-idem", verdict="REJECT", defects=defects)
    first = client.post("/v1/reports", json=body, headers=auth)
    assert first.status_code == 200, first.text
    answer = first.json()
    assert answer["duplicate"] is False and answer["part_id"] == "part-idem"
    assert answer["model_version"] == "tiny-test"
    assert answer["decoder_version"] == client.get("/readyz").json()["decoder_version"]
    assert answer["verdict"] == "REJECT" and answer["rules_verdict"] == "REJECT"
    assert answer["report"]["part_id"] == "part-idem"
    assert len(answer["report"]["defects"]) == 1
    assert answer["agreed"] is (not answer["disagreements"])
    stored = service_of.store.count()
    # A repeat, even with other contents, gets the first answer.
    again = client.post(
        "/v1/reports", json={**body, "verdict": "PASS", "defects": []}, headers=auth
    )
    assert again.status_code == 200
    assert again.json() == {**answer, "duplicate": True}
    assert service_of.store.count() == stored
    fetched = client.get("/v1/reports/part-idem", headers=auth)
    assert fetched.status_code == 200 and fetched.json() == answer
    assert client.get("/v1/reports/never-sent", headers=auth).status_code == 404


@pytest.fixture
def service_of(served):
    return served[1]


@pytest.mark.parametrize(("edge", "expected"), [("REJECT", "REJECT"), ("REVIEW", "REVIEW")])
def test_report_is_held_to_the_edges_verdict(client, bracket_standard, auth, edge, expected):
    # No defects: the cloud's rules alone would pass the part.
    body = payload(bracket_standard, f"held-{edge}", verdict=edge, reasons=["score over threshold"])
    answer = client.post("/v1/reports", json=body, headers=auth).json()
    assert answer["edge_verdict"] == edge
    assert answer["rules_verdict"] == expected
    assert answer["verdict"] == expected  # never PASS, whatever the decoder wrote


def test_cloud_rules_are_stricter_than_an_edge_pass(client, bracket_standard, auth):
    defects = [WireDefect(defect_class="scratch", attributes={"length_mm": 9.0}, zone="A")]
    body = payload(bracket_standard, "edge-too-kind", verdict="PASS", defects=defects)
    answer = client.post("/v1/reports", json=body, headers=auth).json()
    assert answer["rules_verdict"] == "REJECT" and answer["verdict"] == "REJECT"


def test_tokens_split_runs_the_fusion_in_the_cloud(client, bracket_standard, auth):
    body = payload(bracket_standard, "raw-tokens", split="tokens")
    response = client.post("/v1/reports", json=body, headers=auth)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["report"] is not None and answer["report"]["part_id"] == "raw-tokens"


def test_concurrent_duplicates_decode_once(client, service_of, bracket_standard, auth):
    body = payload(bracket_standard, "dup-burst", verdict="REVIEW")
    stored = service_of.store.count()
    reports = _metric(client, "inspection_serve_reports_total", verdict="REVIEW")
    with ThreadPoolExecutor(6) as pool:
        answers = list(
            pool.map(lambda _: client.post("/v1/reports", json=body, headers=auth), range(6))
        )
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    bodies = [a.json() for a in answers]
    assert sum(not b["duplicate"] for b in bodies) == 1
    assert len({json.dumps({**b, "duplicate": None}, sort_keys=True) for b in bodies}) == 1
    assert service_of.store.count() == stored + 1
    assert _metric(client, "inspection_serve_reports_total", verdict="REVIEW") == reports + 1


@pytest.mark.slow
def test_more_defects_than_a_report_holds_are_reported_not_500(client, bracket_standard, auth):
    # MAX_DEFECTS + 1: the report lists the worst 16 and counts the other one.
    defects = [
        WireDefect(defect_class="dent", attributes={"area_mm2": 0.5 + i % 7}, zone="B")
        for i in range(17)
    ]
    body = payload(bracket_standard, "pitted", verdict="REJECT", defects=defects)
    response = client.post("/v1/reports", json=body, headers=auth)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["verdict"] == "REJECT" and not answer["agreed"]  # 1 defect unreported
    assert any("more than a report holds" in d for d in answer["disagreements"])
