"""A simulated line: parts from the synthetic generator, as a camera + microphone would
deliver them, with their ground truth kept alongside for scoring."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np

from inspection.capture.base import PartSource
from inspection.synth import DEFECT_CLASSES, SynthPart, generate_part
from inspection.types import Frame, Observation

# Line parts take indices far from those `inspection synth` uses for a dataset, so a
# line run with a training seed still shows parts the model never saw.
LINE_INDEX_OFFSET = 10_000_000


class SimulatedLine(PartSource):
    """Parts passing a station at ``cycle_s`` intervals, a share of them defective.

    Parameters
    ----------
    product
        Synthetic product name (``bracket``, ``panel``, ``tile``).
    n
        Number of parts; ``None`` runs forever.
    defect_rate
        Probability that a part carries a defect (classes drawn uniformly).
    profiler
        The station also has a 3D profiler registered to the camera: each frame carries
        the part's height map (:meth:`~inspection.synth.part.SynthPart.height_map`), from
        which dents are measured (size and depth).
    """

    def __init__(
        self,
        product: str,
        n: int | None = 100,
        seed: int = 0,
        defect_rate: float = 0.5,
        size: int = 256,
        station: str = "sim-station-1",
        cycle_s: float = 1.5,
        profiler: bool = False,
    ):
        self.product, self.n, self.seed = product, n, seed
        self.defect_rate, self.size = defect_rate, size
        self.station, self.cycle_s, self.profiler = station, cycle_s, profiler

    def _defect_class(self, index: int) -> str | None:
        rng = np.random.default_rng([self.seed, index, 7])
        if rng.random() >= self.defect_rate:
            return None
        return str(rng.choice(DEFECT_CLASSES))

    def parts(self) -> Iterator[tuple[Observation, SynthPart]]:
        """Observations with the synthetic ground truth of each part."""
        start = datetime(2026, 1, 1, 6, 0, tzinfo=UTC)
        index = 0
        while self.n is None or index < self.n:
            part = generate_part(
                self.product,
                LINE_INDEX_OFFSET + index,
                self.seed,
                self._defect_class(index),
                size=self.size,
            )
            yield self.observe(part, start + timedelta(seconds=index * self.cycle_s)), part
            index += 1

    def observe(self, part: SynthPart, timestamp: datetime) -> Observation:
        height = part.height_map() if self.profiler else None
        frame = Frame(part.image, camera="cam0", mm_per_px=part.mm_per_px, height_map=height)
        return Observation(
            part_id=part.part_id,
            station=self.station,
            frames=(frame,),
            audio=part.audio,
            timestamp=timestamp,
            product=part.product,
            metadata={"reference_rgb": list(map(int, part.reference_rgb))},
        )

    def __iter__(self) -> Iterator[Observation]:
        for observation, _ in self.parts():
            yield observation
