"""Decide parts with an installed bundle, torch-free: the edge box's inspector.

:class:`EdgeRuntime` runs a verified bundle (:func:`~inspection.edge.bundle.load_bundle`)
with ONNX Runtime: the edge graph detects, the line's one decision function
(:class:`~inspection.pipeline.Inspector`) decides by the product's standard, and the
same detection becomes the part's :class:`~inspection.edge.payload.EdgePayload` for the
cloud, at the bundle's split point (``"fused"``: the fusion graph ran here; ``"tokens"``:
the raw tokens and maps, the cloud fuses).

An error anywhere on this path is REVIEW with its reason, never a PASS: the Inspector
turns a failed detection into REVIEW; a payload that cannot be made (the fusion graph
failed, a part id the wire format refuses) turns the part's verdict into REVIEW too, and
its payload is then ``None`` (nothing is sent that the cloud could not hold to the
verdict).

>>> runtime = EdgeRuntime(load_bundle("bundles/m1"), product="bracket")  # doctest: +SKIP
>>> result, payload = runtime.inspect(observation)  # doctest: +SKIP
>>> result.verdict, payload.tensor_bytes()  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from inspection.decoder.schema import defects_of
from inspection.edge.payload import MAX_DEFECTS, SPLITS, EdgePayload, WireDefect, WireTensor
from inspection.errors import UserError
from inspection.models.fusion import heads_part
from inspection.models.outputs import Detection
from inspection.pipeline import (
    Inspector,
    RecordingDetector,
    line_thresholds,
    review_result,
)
from inspection.standards import Standard
from inspection.types import Action, InspectionResult, Observation, Verdict

if TYPE_CHECKING:
    from pathlib import Path

    from inspection.edge.bundle import Bundle

MAX_REASONS = 64  # EdgePayload.reasons' bound


class EdgeRuntime:
    """One bundle, ready to decide parts.

    Parameters
    ----------
    bundle : Bundle
        A bundle :func:`~inspection.edge.bundle.load_bundle` verified (every file's
        SHA-256, and the signature where a key is configured).
    product : str | None
        The product decided when an observation names none. ``None``: the bundle's only
        product (an error when it serves several).
    split : str | None
        ``"fused"`` or ``"tokens"``; ``None``: the bundle's own.
    threads : int | None
        ONNX Runtime intra-op threads (``None``: its default).
    review_from : float | None
        A review band below the image threshold
        (:func:`~inspection.pipeline.with_review_band`); ``None``: none.
    guard_band : Path | None
        The gauge's guard band file (:func:`~inspection.pipeline.with_guard_band`);
        ``None``: readings taken as exact.
    profiler_dents : bool
        Search each frame's height map for dents the camera missed
        (:func:`~inspection.pipeline.with_profiler_dents`).

    Raises
    ------
    UserError
        An unknown product or split, a ``"fused"`` split with no fusion graph in the
        bundle; ``ModelError`` for a graph ONNX Runtime cannot load.
    """

    def __init__(
        self,
        bundle: Bundle,
        product: str | None = None,
        split: str | None = None,
        threads: int | None = None,
        review_from: float | None = None,
        guard_band: Path | None = None,
        profiler_dents: bool = False,
    ):
        self.bundle = bundle
        self.split = split or bundle.split
        if self.split not in SPLITS:
            raise UserError(f"split must be one of {', '.join(SPLITS)}, not {self.split!r}")
        # The manifest checked every file's SHA-256 already; each graph's own sidecar is
        # checked again where the bundle carries it (it costs one hash of the graph).
        self.detector = bundle.detector(threads)
        self.fusion = self._fusion(threads)
        self.thresholds = line_thresholds(
            self.detector.metadata,
            review_from=review_from,
            guard_band=guard_band,
            profiler_dents=profiler_dents,
        )
        self._standards: dict[str, Standard] = {}
        self.product = product if product is not None else self._only_product()
        self.standard_for(self.product)  # an unknown product fails here, not on the line

    def _fusion(self, threads: int | None):
        if self.split != "fused":
            return None
        if self.bundle.fusion_graph is None:
            raise UserError(
                f"{self.bundle.path}: no fusion graph in the bundle; run it with split "
                "'tokens' (the cloud fuses) or export the bundle with its decoder"
            )
        from inspection.edge.fusion import OnnxFusion

        return OnnxFusion(self.bundle.fusion_graph, threads=threads)

    def _only_product(self) -> str | None:
        products = sorted(self.bundle.product_standards)
        if len(products) == 1:
            return products[0]
        if not products and len(self.bundle.standards) == 1:
            return None  # a bundle with one standard and no product names
        raise UserError(
            f"{self.bundle.path}: the bundle serves {len(products)} products "
            f"({', '.join(products) or 'none named'}); name one (product=...)"
        )

    @property
    def products(self) -> tuple[str, ...]:
        return tuple(sorted(self.bundle.product_standards))

    def standard_for(self, product: str | None) -> Standard:
        """The standard the bundle holds for ``product`` (``None``: the default product),
        read from the bundle once.

        Raises
        ------
        BundleError
            A product the bundle has no standard for, naming the ones it has (a
            ``UserError``).
        """
        product = product if product is not None else self.product
        sid = self.bundle.standard_id(product)
        if sid not in self._standards:
            self._standards[sid] = self.bundle.load_standard(product)
        return self._standards[sid]

    def inspector(self, product: str | None = None) -> Inspector:
        """The line's Inspector for ``product``: this bundle's detector, thresholds and
        standard."""
        return Inspector(self.detector, self.standard_for(product), self.thresholds)

    def inspect(self, observation: Observation) -> tuple[InspectionResult, EdgePayload | None]:
        """Decide one part and make its payload from the same detection.

        Parameters
        ----------
        observation : Observation
            The part; its ``product`` (or the runtime's) chooses the standard. With
            several frames the payload carries the last frame's tensors.

        Returns
        -------
        tuple[InspectionResult, EdgePayload | None]
            The verdict (REVIEW with the reason on any error) and the payload, ``None``
            where it could not be made (the verdict is then REVIEW, with why).

        Raises
        ------
        UserError
            A product the bundle has no standard for (the caller's mistake: there is no
            standard to decide, or to send to review, by).
        """
        inspector = self.inspector(observation.product)
        recording = RecordingDetector(self.detector)
        result = replace(inspector, detector=recording).inspect(observation)
        return self._with_payload(observation, result, recording.last)

    def review(
        self, part_id: str, reason: str, product: str | None = None, station: str = ""
    ) -> tuple[InspectionResult, EdgePayload | None]:
        """REVIEW for a part that could not be inspected at all (an unreadable frame or
        clip), with this bundle's versions, and its payload where one can be made."""
        result = review_result(self.standard_for(product), part_id, reason)
        result = replace(
            result,
            model_version=self.detector.version,
            calibration_version=self.thresholds.version,
        )
        observation = Observation(part_id=part_id, station=station, frames=(), product=product)
        return self._with_payload(observation, result, None)

    def _with_payload(
        self, observation: Observation, result: InspectionResult, detection: Detection | None
    ) -> tuple[InspectionResult, EdgePayload | None]:
        try:
            return result, self.payload(observation, result, detection)
        except Exception as exc:  # the part is decided, but the cloud cannot be told: review
            reason = f"edge payload failed: {type(exc).__name__}: {exc}"
            return _to_review(result, reason), None

    def payload(
        self, observation: Observation, result: InspectionResult, detection: Detection | None
    ) -> EdgePayload:
        """The payload of a decided part at this runtime's split point.

        ``detection`` ``None`` (the detection failed; the result is REVIEW already)
        gives zero fused tokens, as the in-process report does, so that the cloud still
        writes a report held to the REVIEW; in the ``"tokens"`` split there is nothing
        to send. The defects carry the zone the rule engine placed each in (the cloud
        has no image to place them by).

        Raises
        ------
        ValueError
            No detection in the ``"tokens"`` split, or fields the wire format refuses.
        """
        tensors = self._tensors(detection)
        return EdgePayload(
            part_id=result.part_id,
            station=observation.station,
            product=observation.product if observation.product is not None else self.product,
            standard_id=result.standard_id,
            standard_version=result.standard_version,
            model_version=result.model_version or self.detector.version,
            calibration_version=result.calibration_version,
            bundle_version=self.bundle.version,
            split=self.split,
            defects=[WireDefect.from_defect(d) for d in defects_of(result)[:MAX_DEFECTS]],
            verdict=result.verdict,
            reasons=list(result.reasons[:MAX_REASONS]),
            **tensors,
        )

    def _tensors(self, detection: Detection | None) -> dict[str, WireTensor]:
        if detection is not None:  # the decoder reads the heads' channels, fused or not
            detection = heads_part(detection)
        if self.split == "fused":
            if detection is None:
                shape = (self.fusion.config["queries"], self.fusion.config["dim"])
                return {"fused": WireTensor.from_array(np.zeros(shape, np.float32))}
            return {"fused": WireTensor.from_array(self.fusion.fuse(detection)[0])}
        if detection is None:
            raise ValueError("no detection to send in the 'tokens' split")
        tensors = {
            "patch_tokens": WireTensor.from_array(detection.patch_tokens[0]),
            "maps": WireTensor.from_array(detection.maps[0]),
        }
        if detection.audio_tokens is not None:
            tensors["audio_tokens"] = WireTensor.from_array(detection.audio_tokens[0])
        return tensors


def _to_review(result: InspectionResult, reason: str) -> InspectionResult:
    """``result`` sent to review with ``reason`` added (a REJECT stays a REJECT)."""
    if result.verdict == Verdict.REJECT:
        return replace(result, reasons=(*result.reasons, reason))
    return replace(
        result,
        verdict=Verdict.REVIEW,
        action=Action.REVIEW,
        reasons=(*result.reasons, reason),
    )
