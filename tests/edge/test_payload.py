"""The edge -> cloud payload: round trips, refuses what the cloud must not decode."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from edge_guard import run_without_torch
from pydantic import ValidationError

from inspection.edge.payload import EdgePayload, WireDefect, WireTensor
from inspection.types import Defect, Verdict


def fused_payload(**overrides) -> EdgePayload:
    fields = {
        "part_id": "line1/p-0001",
        "standard_id": "QS-BRK-200",
        "standard_version": "1.0",
        "model_version": "m-1",
        "fused": WireTensor.from_array(np.linspace(-2, 2, 8 * 64).reshape(8, 64)),
        "defects": [WireDefect(defect_class="scratch", attributes={"length_mm": 3.5}, zone="A")],
        "verdict": "REJECT",
    }
    return EdgePayload(**{**fields, **overrides})


def test_a_payload_survives_its_json_round_trip():
    payload = fused_payload()
    back = EdgePayload.model_validate_json(payload.model_dump_json(by_alias=True))
    assert back == payload
    assert back.verdict is Verdict.REJECT
    np.testing.assert_allclose(back.fused.to_array(), payload.fused.to_array())
    assert back.to_defects() == (Defect("scratch", {"length_mm": 3.5}, zone="A"),)


def test_float16_on_the_wire_is_half_the_bytes_and_close():
    values = np.random.default_rng(0).normal(size=(8, 64)).astype(np.float32)
    half, full = WireTensor.from_array(values), WireTensor.from_array(values, "float32")
    assert fused_payload(fused=half).tensor_bytes() * 2 == fused_payload(fused=full).tensor_bytes()
    np.testing.assert_allclose(half.to_array(), values, atol=2e-3)
    np.testing.assert_array_equal(full.to_array(), values)


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        ({"dtype": "float16", "shape": [8, 65], "data": "AAAA"}, "needs 1040"),
        ({"dtype": "float16", "shape": [2], "data": "not base64!"}, "not base64"),
        ({"dtype": "float64", "shape": [1], "data": "AAAAAAAAAAA="}, "float16"),
        ({"dtype": "float16", "shape": [0, 4], "data": ""}, ">= 1"),
        ({"dtype": "float16", "shape": [5000, 5000], "data": ""}, "more than"),
        (
            {
                "dtype": "float32",
                "shape": [2],
                "data": base64.b64encode(np.array([1, np.nan], "<f4").tobytes()).decode(),
            },
            "NaN",
        ),
    ],
)
def test_a_tensor_that_does_not_decode_is_refused_with_its_reason(tensor, message):
    with pytest.raises(ValidationError, match=message):
        EdgePayload.model_validate({**fused_payload().to_json(), "fused": tensor})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"part_id": "../etc/passwd"}, "part_id"),
        ({"part_id": ""}, "part_id"),
        ({"verdict": "MAYBE"}, "verdict"),
        ({"split": "tokens"}, "carries no fused"),
        ({"split": "tokens", "fused": None}, "needs patch_tokens"),
        ({"fused": None}, "needs fused tokens"),
        ({"schema": "inspection.edge-payload/0"}, "schema"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_a_malformed_payload_is_refused_naming_the_field(change, message):
    with pytest.raises(ValidationError, match=message):
        EdgePayload.model_validate({**fused_payload().to_json(), **change})


def test_the_tokens_split_carries_tokens_and_maps_but_no_fused_tokens():
    rng = np.random.default_rng(1)
    tokens = {
        "split": "tokens",
        "fused": None,
        "patch_tokens": WireTensor.from_array(rng.normal(size=(196, 32))),
        "maps": WireTensor.from_array(rng.normal(size=(7, 64, 64))),
    }
    payload = fused_payload(**tokens)
    assert payload.tensor_bytes() == (196 * 32 + 7 * 64 * 64) * 2
    with pytest.raises(ValidationError, match="carries no fused"):
        fused_payload(**{**tokens, "fused": WireTensor.from_array(np.zeros((8, 64)))})


def test_the_payload_module_imports_no_torch():
    done = run_without_torch(
        """
        import numpy as np
        from inspection.edge.payload import EdgePayload, WireTensor
        EdgePayload(part_id="p", standard_id="S", standard_version="1", model_version="m",
                    fused=WireTensor.from_array(np.zeros((2, 2))), verdict="PASS")
        """
    )
    assert done.returncode == 0, done.stderr
