"""A simulated station with a 3D profiler: each frame carries its part's height map."""

from __future__ import annotations

import numpy as np
import pytest

from inspection.capture.simulator import SimulatedLine
from inspection.measure import depth_below_surface


def test_a_profiled_line_hands_each_frame_its_parts_height_map():
    line = SimulatedLine("tile", n=12, seed=1, defect_rate=1.0, profiler=True)
    dents = 0
    for observation, part in line.parts():
        (frame,) = observation.frames
        assert frame.height_map is not None and frame.height_map.dtype == np.float32
        assert frame.height_map.shape == frame.image.shape[:2]
        for defect in part.defects:
            if defect.defect_class == "dent":
                dents += 1
                depth = defect.attributes["depth_mm"]
                read = depth_below_surface(frame.height_map, defect.mask, frame.mm_per_px)
                assert read == pytest.approx(depth, abs=0.03)
    assert dents, "the line should show a dent to measure"
    plain = SimulatedLine("tile", n=2, seed=1, defect_rate=1.0)
    assert all(o.frames[0].height_map is None for o, _ in plain.parts())
    # the photographs are the same with or without the profiler
    profiled = SimulatedLine("tile", n=2, seed=1, defect_rate=1.0, profiler=True)
    pairs = zip(profiled.parts(), plain.parts(), strict=True)
    assert all(np.array_equal(a.frames[0].image, b.frames[0].image) for (a, _), (b, _) in pairs)


def test_the_stations_simulator_source_takes_the_profiler_option(tmp_path):
    from inspection.station.config import load_config
    from inspection.station.sources import build_source

    config = load_config(
        None,
        product="tile",
        model={"path": str(tmp_path / "m")},
        source={"kind": "simulator", "n": 2, "profiler": True},
    )
    observations = list(build_source(config))
    assert len(observations) == 2
    assert all(o.frames[0].height_map is not None for o in observations)


def test_the_profilers_depressions_are_the_dents_of_the_part():
    """On the simulated line's height maps every dent is a depression and nothing else
    is (the belt, the other defects and the profiler's noise are not)."""
    from inspection.measure import depressions

    dents = found = 0
    line = SimulatedLine("tile", n=16, seed=3, defect_rate=0.8, profiler=True)
    for observation, part in line.parts():
        (frame,) = observation.frames
        footprints = depressions(frame.height_map, frame.mm_per_px)
        masks = [d.mask for d in part.defects if d.defect_class == "dent"]
        for footprint in footprints:
            assert any((footprint & mask).any() for mask in masks), part.part_id
        for mask in masks:
            dents += 1
            found += any((footprint & mask).any() for footprint in footprints)
    assert dents >= 3 and found == dents
