"""Parts for a console without a line: the simulated line, inspected and recorded.

``inspection console`` with no ``--db`` shows a line all the same: each step takes the
next synthetic part, inspects it with the console's model under the product's active
standard, and records it as the line daemon would, evidence image included.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from inspection.console.service import ModelSet
from inspection.console.standards import StandardLibrary
from inspection.records.store import RecordStore


class SimulatorFeed:
    """Synthetic parts inspected and recorded, one per :meth:`step`.

    Parameters
    ----------
    store, library, models
        Where parts are recorded, the standard they are held to, the model deciding.
    product, station, seed, defect_rate
        What the simulated line makes (see :class:`~inspection.capture.SimulatedLine`).
    """

    def __init__(
        self,
        store: RecordStore,
        library: StandardLibrary,
        models: ModelSet,
        *,
        product: str = "bracket",
        station: str = "sim-station-1",
        seed: int = 0,
        defect_rate: float = 0.4,
        clock: Callable[[], float] = time.time,
    ) -> None:
        from inspection.capture.simulator import SimulatedLine

        self.store, self.library, self.models = store, library, models
        self.product, self.clock = product, clock
        line = SimulatedLine(product, n=None, seed=seed, defect_rate=defect_rate, station=station)
        self._parts = iter(line)
        self._lock = threading.Lock()
        self.recorded = 0

    def step(self) -> str:
        """Inspect and record the next part; returns its id."""
        with self._lock:  # one part at a time, whoever's page ticks
            observation = next(self._parts)
            _, standard = self.library.active_standard(self.product)
            if self.models.mm_per_px is None:
                self.models.mm_per_px = observation.frames[0].mm_per_px
            result = self.models.inspector(standard).inspect(observation)
            now = datetime.fromtimestamp(self.clock(), UTC)
            part_id = observation.part_id
            self.store.record(
                part_id,
                observation.station,
                result,
                images=[frame.image for frame in observation.frames],
                captured_at=now,
                decided_at=now,
                product=self.product,
            )
            self.recorded += 1
            return part_id
