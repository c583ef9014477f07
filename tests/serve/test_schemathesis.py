"""Property-based tests from the service's own OpenAPI spec (schemathesis): whatever
the spec allows a client to send, and much that it does not, never gets a 5xx, and the
answers match the spec."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")
pytest.importorskip("torch")
schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from serve_helpers import STANDARDS_DIR, running_client, tiny_decoder_dir  # noqa: E402

from inspection.serve.auth import KeyStore  # noqa: E402
from inspection.serve.settings import ServeSettings  # noqa: E402


@pytest.fixture(scope="module")
def served_app(tmp_path_factory):
    db = tmp_path_factory.mktemp("serve-schema") / "service.db"
    token = KeyStore(db).add("fuzzer")
    config = ServeSettings(
        decoder_dir=tiny_decoder_dir(tmp_path_factory),
        standards_dirs=(STANDARDS_DIR,),
        db_path=db,
        max_payload_bytes=256 * 1024,
        max_wait_ms=5,
    )
    with running_client(config) as (client, _):
        yield client.app, token


def test_the_spec_holds_and_nothing_is_a_5xx(served_app):
    app, token = served_app
    bearer = {"Authorization": f"Bearer {token}"}
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{o.method.upper()} {o.path}" for o in operations} >= {
        "POST /v1/reports",
        "GET /v1/reports/{part_id}",
        "GET /readyz",
    }
    seen: dict[str, set[int]] = {}
    positive, negative = schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE
    takes_input = [o for o in operations if o.method.upper() == "POST" or "{" in o.path]
    runs = [(o, positive) for o in operations] + [(o, negative) for o in takes_input]
    for operation, mode in runs:

        @given(case=operation.as_strategy(mode))
        @settings(
            max_examples=10,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case):
            response = case.call(headers=bearer)
            assert response.status_code < 500, f"{case.method} {case.path}: {response.text}"
            # positive_data_acceptance is left out: a schema-valid payload can still name a
            # standard the service lacks or break a cross-field rule (split vs tensors),
            # which JSON Schema cannot say; those are 422 by design.
            case.validate_response(
                response,
                headers=bearer,
                excluded_checks=[schemathesis.checks.positive_data_acceptance],
            )
            seen.setdefault(f"{case.method} {case.path}", set()).add(response.status_code)

        check()
    # The valid token got past authentication: the payloads were judged, not refused.
    assert seen["POST /v1/reports"] - {401, 403}
    assert seen["GET /v1/reports/{part_id}"] - {401, 403}
