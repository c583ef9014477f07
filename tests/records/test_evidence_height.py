"""A frame's height map kept as evidence: after the images, one per frame, or none."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from inspection.io import read_height_map
from inspection.records.evidence import (
    EvidenceStore,
    encode_height_map,
    frame_evidence,
    frame_height_map,
)
from inspection.types import Frame


def _frame(value: int, height: float | None) -> Frame:
    image = np.full((8, 8, 3), value, np.uint8)
    relief = None if height is None else np.full((8, 8), height, np.float32)
    return Frame(image, height_map=relief)


def test_every_frames_height_map_follows_the_images_or_none_is_kept(tmp_path):
    store = EvidenceStore(tmp_path / "evidence")
    frames = [_frame(10, -0.5), _frame(20, 1.5)]
    files = [store.find(store.put(x)) for x in frame_evidence(frames)]
    assert [f.suffix for f in files] == [".png", ".png", ".tiff", ".tiff"]
    for i, frame in enumerate(frames):
        assert np.array_equal(read_height_map(frame_height_map(files, i)), frame.height_map)
    assert frame_height_map(files, 2) is None
    # no frame with a map: the images alone
    plain = frame_evidence([_frame(10, None), _frame(20, None)])
    assert len(plain) == 2 and all(isinstance(x, np.ndarray) for x in plain)


def test_a_frame_the_profiler_did_not_cover_keeps_its_place_and_no_map(tmp_path):
    """A station profiling one of its cameras: the other frames keep the placeholder, so
    that frame i's map is still entry n + i; each reads back as no map."""
    store = EvidenceStore(tmp_path / "evidence")
    frames = [_frame(10, None), _frame(20, 1.5), _frame(30, None)]
    kept = frame_evidence(frames)
    files = [store.find(store.put(x)) for x in kept]
    assert [f.suffix for f in files] == [".png"] * 3 + [".tiff"] * 3
    assert files[3] == files[5]  # one placeholder file, however many frames lack a map
    assert frame_height_map(files, 0) is None and frame_height_map(files, 2) is None
    assert np.array_equal(read_height_map(frame_height_map(files, 1)), frames[1].height_map)
    other = store.find(store.put(encode_height_map(np.full((8, 8), np.nan, np.float32))))
    assert frame_height_map([*files[:3], other, files[4], files[5]], 0) == other  # a real map
    # a map gone from the folder, or a record of images alone: no height map
    assert frame_height_map([files[0], files[1], None, files[3]], 0) is None
    assert frame_height_map(files[:2], 0) is None


def test_a_height_map_keeps_the_points_the_profiler_missed(tmp_path: Path):
    height = np.zeros((4, 6), np.float32)
    height[1, 2] = np.nan
    store = EvidenceStore(tmp_path)
    path = store.find(store.put(encode_height_map(height)))
    read = read_height_map(path)
    assert np.isnan(read[1, 2]) and np.array_equal(np.isnan(read), np.isnan(height))
