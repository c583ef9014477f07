"""Property tests: a config file's field of any kind or value gives a config or one
ValueError naming the problem (a ModelError through the file loaders), never another
exception. A few hundred derandomised examples per property."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is in the dev extra")

from conftest import fuzz_settings  # noqa: E402
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from inspection.errors import ModelError  # noqa: E402
from inspection.models.config import ModelConfig  # noqa: E402
from inspection.models.registry import get_config, load_config  # noqa: E402

FUZZ = fuzz_settings()

# What a YAML or JSON file can hold: scalars of every kind, lists and mappings of them
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**12), max_value=10**12)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)
MODEL_FIELDS = [f.name for f in dataclasses.fields(ModelConfig) if f.name != "name"]
SHIPPED = ["small", "padim-lite0", "small-lite0"]


@FUZZ
@given(st.sampled_from(SHIPPED), st.sampled_from(MODEL_FIELDS), VALUES)
def test_any_value_of_a_model_config_field_is_a_config_or_a_value_error(name, field, value):
    data = get_config(name).to_dict() | {field: value}
    try:
        config = ModelConfig.from_dict(data)
    except ValueError as refused:
        assert field in str(refused) or "image_size" in str(refused) or "must" in str(refused)
        return
    assert ModelConfig.from_dict(config.to_dict()) == config  # what it accepted round-trips


@FUZZ
@given(st.dictionaries(st.sampled_from(MODEL_FIELDS) | st.text(max_size=8), VALUES, max_size=5))
def test_any_yaml_model_config_file_loads_or_is_a_model_error(tmp_path, data):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    try:
        load_config(path)
    except ModelError as refused:
        assert "mine.yaml" in str(refused)


@FUZZ
@given(st.sampled_from(["fusion", "vocab_size", "lm_path", "lm", "description"]), VALUES, VALUES)
def test_any_decoder_config_field_loads_or_is_a_model_error(tmp_path, field, value, inner):
    from inspection.decoder.fusion import FusionConfig

    torch = pytest.importorskip("torch")  # noqa: F841  (the decoder module imports it)
    from inspection.decoder.model import get_decoder_config

    fusion_field = dataclasses.fields(FusionConfig)[len(str(inner)) % 8].name
    data = {field: value, "fusion": {fusion_field: inner}} if field != "fusion" else {field: value}
    path = tmp_path / "dec.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    try:
        get_decoder_config(path)
    except ModelError as refused:
        assert "dec.yaml" in str(refused)
