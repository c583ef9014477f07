"""What the edge sends the cloud for one part. Torch-free (numpy and pydantic only).

The edge decides; the cloud writes the report. The payload carries the tensors at the
split point, the measured defects and the edge's decision, with every version that made
it, so that the cloud can write a report held to the same rules:

- split ``"fused"`` (the default): the fusion resampler ran on the edge; ``fused`` is
  the ``(N, D)`` float16 prefix the decoder reads (a few KB).
- split ``"tokens"``: the raw ``patch_tokens (P, C)``, ``maps (1 + K, H, W)`` and, with
  audio, ``audio_tokens (T, C_a)``; the cloud runs the fusion itself.

>>> payload = EdgePayload(part_id="p-1", standard_id="QS-BRK-200", standard_version="1.0",
...     model_version="m1", split="fused", fused=WireTensor.from_array(np.zeros((8, 64))),
...     verdict="PASS")
>>> EdgePayload.model_validate_json(payload.model_dump_json()).fused.to_array().shape
(8, 64)
"""

from __future__ import annotations

import base64
import math
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from inspection.types import Defect, Verdict

SCHEMA = "inspection.edge-payload/1"
SPLITS = ("fused", "tokens")
WIRE_DTYPES = ("float16", "float32")
# A part id is a file name and a database key downstream: keep it printable and short.
PART_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$"
# The largest tensor a payload may carry (raw tokens of a large tiled frame stay well under).
MAX_TENSOR_ELEMENTS = 4_000_000
MAX_DEFECTS = 1024


class WireTensor(BaseModel):
    """A numpy array on the wire: dtype, shape and base64 of its little-endian bytes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dtype: Literal["float16", "float32"]
    shape: list[int] = Field(min_length=1, max_length=4)
    data: str

    @field_validator("shape")
    @classmethod
    def _positive_shape(cls, shape: list[int]) -> list[int]:
        if any(n < 1 for n in shape):
            raise ValueError(f"every dimension must be >= 1, got {shape}")
        if math.prod(shape) > MAX_TENSOR_ELEMENTS:
            raise ValueError(f"{math.prod(shape)} elements, more than {MAX_TENSOR_ELEMENTS}")
        return shape

    @model_validator(mode="after")
    def _data_matches_shape(self) -> WireTensor:
        self.to_array()  # raises ValueError naming the mismatch
        return self

    @classmethod
    def from_array(cls, array: np.ndarray, dtype: str = "float16") -> WireTensor:
        """Encode ``array`` as ``dtype`` (float16 halves the bytes; the decoder reads
        its prefix in float16 anyway)."""
        if dtype not in WIRE_DTYPES:
            raise ValueError(f"dtype must be one of {WIRE_DTYPES}, not {dtype!r}")
        values = np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<"))
        return cls(
            dtype=dtype,
            shape=list(values.shape),
            data=base64.b64encode(values.tobytes()).decode("ascii"),
        )

    def to_array(self) -> np.ndarray:
        """The float32 array.

        Raises
        ------
        ValueError
            Data that is not base64, whose length does not match the shape, or that
            holds NaN or infinite values.
        """
        try:
            raw = base64.b64decode(self.data, validate=True)
        except ValueError as exc:
            raise ValueError(f"data is not base64 ({exc})") from None
        dtype = np.dtype(self.dtype).newbyteorder("<")
        expected = math.prod(self.shape) * dtype.itemsize
        if len(raw) != expected:
            raise ValueError(
                f"data holds {len(raw)} bytes; shape {self.shape} of {self.dtype} needs {expected}"
            )
        array = np.frombuffer(raw, dtype=dtype).reshape(self.shape).astype(np.float32)
        if not np.isfinite(array).all():
            raise ValueError("data holds NaN or infinite values")
        return array


class WireDefect(BaseModel):
    """One measured defect as the rules read it (class, attributes in mm / ΔE, zone)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    defect_class: str = Field(min_length=1, max_length=64)
    attributes: dict[str, float] = Field(default_factory=dict, max_length=32)
    zone: str | None = Field(default=None, max_length=64)
    score: float = 1.0

    @classmethod
    def from_defect(cls, defect: Defect) -> WireDefect:
        return cls(
            defect_class=defect.defect_class,
            attributes={k: float(v) for k, v in defect.attributes.items()},
            zone=defect.zone,
            score=float(defect.score),
        )

    def to_defect(self) -> Defect:
        return Defect(self.defect_class, dict(self.attributes), zone=self.zone, score=self.score)


class EdgePayload(BaseModel):
    """One part, from the edge to the cloud report service (``POST /v1/reports``).

    Attributes
    ----------
    part_id : str
        The idempotency key: the service keeps the first report for a part id and
        answers the same one again.
    split : str
        ``"fused"`` (``fused`` set) or ``"tokens"`` (``patch_tokens`` and ``maps`` set,
        ``audio_tokens`` with audio).
    defects : list[WireDefect]
        Every measured defect with its zone, in the order the edge decided them.
    verdict, reasons
        The edge's decision: the report is held to it and never turns a REJECT or a
        REVIEW into a PASS.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: Literal["inspection.edge-payload/1"] = Field(default=SCHEMA, alias="schema")
    part_id: str = Field(pattern=PART_ID_PATTERN)
    station: str = Field(default="", max_length=128)
    product: str | None = Field(default=None, max_length=64)
    standard_id: str = Field(min_length=1, max_length=128)
    standard_version: str = Field(min_length=1, max_length=64)
    model_version: str = Field(min_length=1, max_length=128)
    calibration_version: str | None = Field(default=None, max_length=128)
    bundle_version: str | None = Field(default=None, max_length=128)
    split: Literal["fused", "tokens"] = "fused"
    fused: WireTensor | None = None
    patch_tokens: WireTensor | None = None
    maps: WireTensor | None = None
    audio_tokens: WireTensor | None = None
    defects: list[WireDefect] = Field(default_factory=list, max_length=MAX_DEFECTS)
    verdict: Verdict
    reasons: list[str] = Field(default_factory=list, max_length=64)
    language: Literal["en", "zh"] = "en"
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @model_validator(mode="after")
    def _tensors_match_split(self) -> EdgePayload:
        if self.split == "fused":
            if self.fused is None or len(self.fused.shape) != 2:
                raise ValueError("split 'fused' needs fused tokens of shape (N, D)")
            extra = [n for n in ("patch_tokens", "maps", "audio_tokens") if getattr(self, n)]
            if extra:
                raise ValueError(f"split 'fused' carries no {', '.join(extra)}")
            return self
        if self.fused is not None:
            raise ValueError("split 'tokens' carries no fused tokens")
        if self.patch_tokens is None or len(self.patch_tokens.shape) != 2:
            raise ValueError("split 'tokens' needs patch_tokens of shape (P, C)")
        if self.maps is None or len(self.maps.shape) != 3:
            raise ValueError("split 'tokens' needs maps of shape (1 + K, H, W)")
        if self.audio_tokens is not None and len(self.audio_tokens.shape) != 2:
            raise ValueError("audio_tokens must have shape (T, C_a)")
        return self

    def to_defects(self) -> tuple[Defect, ...]:
        return tuple(d.to_defect() for d in self.defects)

    def tensor_bytes(self) -> int:
        """Bytes of the tensors this payload carries (what the split point costs)."""
        tensors = (self.fused, self.patch_tokens, self.maps, self.audio_tokens)
        return sum(
            math.prod(t.shape) * np.dtype(t.dtype).itemsize for t in tensors if t is not None
        )

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)
