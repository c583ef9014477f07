"""FolderSource on a real folder: settle on an injected clock, move never delete, restarts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf

from inspection.capture import CaptureError
from inspection.capture.folder import CAPTURE_ERROR, FolderSource, is_ignored
from inspection.errors import UserError
from inspection.pipeline import Inspector
from inspection.types import Verdict

SETTLE = 1.0


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def png_bytes(rgb: tuple[int, int, int], size: int = 32) -> bytes:
    image = np.zeros((size, size, 3), np.uint8)
    image[:] = rgb[::-1]  # BGR for OpenCV
    image[4:8, 4:20] = 0  # some structure, so the PNG is not trivially small
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


@pytest.fixture
def line(tmp_path: Path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    clock = Clock()
    source = FolderSource(
        inbox, tmp_path / "done", tmp_path / "failed", settle_s=SETTLE, clock=clock
    )
    return source, clock, tmp_path


def settle(source: FolderSource, clock: Clock) -> list:
    """Two scans ``SETTLE`` apart (and a little): what a settled inbox yields."""
    first = source.poll()
    clock.advance(SETTLE + 0.01)
    return first + source.poll()


def handed_on(source: FolderSource, clock: Clock):
    """The one part of a settled inbox that never decodes, handed on as a capture error
    once ``unreadable_after_s`` has passed."""
    settle(source, clock)
    clock.advance(source.unreadable_after_s)
    (observation,) = source.poll()
    return observation


def test_a_file_is_taken_only_once_completely_written(line):
    source, clock, root = line
    data = png_bytes((200, 30, 10))
    path = root / "inbox" / "P-001.png"
    path.write_bytes(data[: len(data) // 2])  # the writer is halfway
    assert source.poll() == []
    clock.advance(SETTLE + 0.5)
    assert source.poll() == []  # unchanged for settle_s, but does not decode yet: wait
    path.write_bytes(data)  # the rest arrives
    clock.advance(0.1)
    assert source.poll() == []  # changed: settle starts again
    clock.advance(SETTLE / 2)
    assert source.poll() == []
    clock.advance(SETTLE / 2 + 0.01)
    (obs,) = source.poll()
    assert obs.part_id == "P-001" and obs.station == "station-1"
    image = obs.frames[0].image
    assert image.shape == (32, 32, 3) and tuple(image[20, 20]) == (200, 30, 10)  # RGB
    assert CAPTURE_ERROR not in obs.metadata
    assert source.pending == ("P-001",)
    clock.advance(SETTLE * 5)
    assert source.poll() == []  # handed out once
    moved = source.ack("P-001", ok=True)
    assert moved == root / "done" / "P-001.png" and moved.read_bytes() == data
    assert not path.exists() and source.pending == ()
    with pytest.raises(UserError, match="not pending"):
        source.ack("P-001", ok=True)


def test_names_being_written_are_ignored_until_renamed(line):
    source, clock, root = line
    inbox = root / "inbox"
    for name in (".hidden.png", "a.png.partial", "b.png.tmp", "c.PNG.PARTIAL"):
        (inbox / name).write_bytes(png_bytes((1, 2, 3)))
        assert is_ignored(name)
    assert not is_ignored("a.png")
    assert settle(source, clock) == []
    clock.advance(100)
    assert source.poll() == []
    os.rename(inbox / "a.png.partial", inbox / "a.png")
    assert [o.part_id for o in settle(source, clock)] == ["a"]


def test_a_sidecar_names_the_part_and_brings_audio_faults_unchanged(line):
    source, clock, root = line
    inbox = root / "inbox"
    samples = np.full(1600, 0.1, np.float32)
    samples[5] = np.nan
    sf.write(inbox / "tap-7.wav", samples, 16_000, subtype="FLOAT")
    sidecar = {
        "part_id": "SN-7",
        "product": "bracket",
        "mm_per_px": 0.25,
        "audio": "tap-7.wav",
        "reference_rgb": [200, 30, 10],
    }
    (inbox / "img7.json").write_text(json.dumps(sidecar))
    (inbox / "img7.png").write_bytes(png_bytes((200, 30, 10)))
    (obs,) = settle(source, clock)
    assert obs.part_id == "SN-7" and obs.product == "bracket"
    assert obs.frames[0].mm_per_px == 0.25
    assert obs.metadata["reference_rgb"] == [200, 30, 10]
    assert obs.audio is not None and len(obs.audio.samples) == 1600
    assert np.isnan(obs.audio.samples[5]) and np.isnan(obs.audio.samples).sum() == 1
    source.ack("SN-7", ok=False, reason="REJECT: scratch 4.1.1")
    failed = root / "failed"
    assert sorted(p.name for p in failed.iterdir()) == [
        "img7.json",
        "img7.png",
        "img7.png.reason.txt",
        "tap-7.wav",
    ]
    assert (failed / "img7.png.reason.txt").read_text() == "REJECT: scratch 4.1.1\n"
    assert list(inbox.iterdir()) == []


def test_name_collisions_get_a_suffix_and_nothing_is_overwritten(line):
    source, clock, root = line
    old = root / "done" / "P-9.png"
    old.write_bytes(b"an older part of the same name")
    (root / "inbox" / "P-9.png").write_bytes(png_bytes((5, 5, 5)))
    (obs,) = settle(source, clock)
    moved = source.ack(obs.part_id, ok=True)
    assert moved.name == "P-9-1.png"
    assert old.read_bytes() == b"an older part of the same name"
    assert moved.read_bytes() == png_bytes((5, 5, 5))


def test_a_corrupt_image_is_handed_on_as_a_capture_error(line):
    source, clock, root = line
    (root / "inbox" / "bad-1.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert settle(source, clock) == []  # perhaps still being written: wait
    clock.advance(source.unreadable_after_s)
    (obs,) = source.poll()
    assert obs.part_id == "bad-1" and obs.frames == ()  # no frames: REVIEW, never PASS
    assert "bad-1.png" in obs.metadata[CAPTURE_ERROR]
    source.ack("bad-1", ok=False, reason=obs.metadata[CAPTURE_ERROR])
    assert (root / "failed" / "bad-1.png").read_bytes().startswith(b"\x89PNG")


class NeverCalled:
    """A detector the decision must not reach: a part without frames has nothing to detect."""

    version = "never-called"

    def detect(self, image, audio=None):
        raise AssertionError("detect() called for a part without frames")


def test_the_line_decides_a_capture_error_review_never_pass(line, bracket_standard):
    source, clock, root = line
    (root / "inbox" / "bad-2.png").write_bytes(b"GIF89a truncated")
    obs = handed_on(source, clock)
    result = Inspector(NeverCalled(), bracket_standard).inspect(obs)
    assert result.verdict is Verdict.REVIEW and result.part_id == "bad-2"
    assert "no frames" in " ".join(result.reasons)


def test_a_bad_sidecar_scale_is_a_capture_error_with_the_part_id(line):
    source, clock, root = line
    inbox = root / "inbox"
    (inbox / "x.json").write_text(json.dumps({"part_id": "SN-X", "mm_per_px": -1}))
    (inbox / "x.png").write_bytes(png_bytes((9, 9, 9)))
    obs = handed_on(source, clock)
    assert obs.part_id == "SN-X" and obs.frames == ()
    assert "mm_per_px" in obs.metadata[CAPTURE_ERROR]


def test_an_audio_path_outside_the_inbox_is_refused(line):
    source, clock, root = line
    (root / "secret.wav").write_bytes(b"x")
    inbox = root / "inbox"
    (inbox / "y.json").write_text(json.dumps({"audio": "../secret.wav"}))
    (inbox / "y.png").write_bytes(png_bytes((9, 9, 9)))
    obs = handed_on(source, clock)
    assert obs.frames == () and "must be a file name in the inbox" in obs.metadata[CAPTURE_ERROR]
    source.ack("y", ok=False)
    assert (root / "secret.wav").exists()


def test_one_part_id_at_a_time(line):
    source, clock, root = line
    inbox = root / "inbox"
    for name in ("a", "b"):
        (inbox / f"{name}.json").write_text(json.dumps({"part_id": "SAME"}))
        (inbox / f"{name}.png").write_bytes(png_bytes((1, 1, 1)))
    (first,) = settle(source, clock)
    assert first.metadata["source_path"].endswith("a.png")
    source.ack("SAME", ok=True)
    (second,) = source.poll()
    assert second.part_id == "SAME" and second.metadata["source_path"].endswith("b.png")


def test_a_restart_retakes_unacknowledged_parts_and_never_moved_ones(line):
    source, clock, root = line
    inbox = root / "inbox"
    for i in range(3):
        (inbox / f"R-{i}.png").write_bytes(png_bytes((i, i, i)))
    assert [o.part_id for o in settle(source, clock)] == ["R-0", "R-1", "R-2"]
    source.ack("R-0", ok=True)
    # R-1's move was cut short by a crash: linked into done/, still in the inbox.
    os.link(inbox / "R-1.png", root / "done" / "R-1.png")
    # R-2 was handed out, never acknowledged. Restart:
    restarted = FolderSource(inbox, root / "done", root / "failed", settle_s=SETTLE, clock=clock)
    assert [o.part_id for o in settle(restarted, clock)] == ["R-2"]
    assert sorted(p.name for p in inbox.iterdir()) == ["R-2.png"]
    assert sorted(p.name for p in (root / "done").iterdir()) == ["R-0.png", "R-1.png"]


def test_iteration_yields_parts_until_closed(tmp_path: Path):
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "it-1.png").write_bytes(png_bytes((7, 7, 7)))
    source = FolderSource(inbox, tmp_path / "d", tmp_path / "f", settle_s=0.0, poll_s=0.01)
    for obs in source:
        assert obs.part_id == "it-1"
        source.close()
    assert source.pending == ("it-1",)


def test_the_inbox_must_exist(tmp_path: Path):
    with pytest.raises(UserError, match="not a folder"):
        FolderSource(tmp_path / "missing", tmp_path / "d", tmp_path / "f")


def test_an_unreadable_inbox_is_a_capture_error_and_polling_resumes(line):
    source, clock, root = line
    inbox = root / "inbox"
    (inbox / "k.png").write_bytes(png_bytes((3, 3, 3)))
    source.poll()
    inbox.rename(root / "unmounted")
    with pytest.raises(CaptureError, match="cannot be read"):
        source.poll()
    assert "cannot be read" in (source.last_error or "")
    (root / "unmounted").rename(inbox)
    clock.advance(SETTLE + 0.01)
    assert [o.part_id for o in source.poll()] == ["k"]


def test_two_parts_naming_one_audio_file_are_both_acknowledged(line):
    source, clock, root = line
    inbox = root / "inbox"
    sf.write(inbox / "shared.wav", np.zeros(160, np.float32), 16_000)
    for name in ("m", "n"):
        (inbox / f"{name}.json").write_text(json.dumps({"audio": "shared.wav"}))
        (inbox / f"{name}.png").write_bytes(png_bytes((4, 4, 4)))
    parts = settle(source, clock)
    assert [o.part_id for o in parts] == ["m", "n"] and all(o.audio for o in parts)
    source.ack("m", ok=True)
    source.ack("n", ok=True)
    assert sorted(p.name for p in (root / "done").iterdir()) == [
        "m.json",
        "m.png",
        "n.json",
        "n.png",
        "shared.wav",
    ]


def test_a_profilers_height_map_beside_the_image_comes_with_its_part(line):
    source, clock, root = line
    inbox = root / "inbox"
    pit = np.zeros((32, 32), np.float32)
    pit[10:14, 10:14] = -0.25
    assert cv2.imwrite(str(inbox / "P-9.height.tiff"), pit)
    (inbox / "P-9.png").write_bytes(png_bytes((90, 90, 90)))
    (obs,) = settle(source, clock)  # one part: the height map is not a part of its own
    assert obs.part_id == "P-9"
    assert np.array_equal(obs.frames[0].height_map, pit)
    source.ack("P-9", ok=True)
    assert sorted(p.name for p in (root / "done").iterdir()) == ["P-9.height.tiff", "P-9.png"]
    assert list(inbox.iterdir()) == []
    # one of another size than its photograph: the part is handed on as a capture error
    assert cv2.imwrite(str(inbox / "P-10.height.tiff"), pit[:16])
    (inbox / "P-10.png").write_bytes(png_bytes((90, 90, 90)))
    bad = handed_on(source, clock)
    assert bad.frames == () and "height map is 32x16 px" in bad.metadata[CAPTURE_ERROR]
    source.ack("P-10", ok=False)
    assert {"P-10.png", "P-10.height.tiff"} <= {p.name for p in (root / "failed").iterdir()}


def test_a_3d_cameras_integer_height_map_reads_in_mm_through_the_sources_encoding(
    tmp_path: Path,
):
    """Counts beside the image, read through the station's encoding; without one the
    part is handed on as a capture error naming what is missing, never decided."""
    from inspection.io import HeightEncoding

    counts = np.full((32, 32), 5000, np.uint16)
    counts[10:14, 10:14] = 4750  # a pit 0.25 mm deep at 1 µm a count
    counts[0, 0] = 0  # a point the camera missed
    with_encoding = HeightEncoding(0.001, invalid=0)
    for name, encoding, suffix in (
        ("with", with_encoding, ".height.tiff"),
        ("png", with_encoding, ".height.png"),  # 16-bit PNG, as 3D cameras save depth
        ("without", None, ".height.tiff"),
    ):
        inbox = tmp_path / name
        inbox.mkdir()
        clock = Clock()
        source = FolderSource(
            inbox,
            inbox / "done",
            inbox / "failed",
            settle_s=SETTLE,
            clock=clock,
            height_encoding=encoding,
        )
        assert cv2.imwrite(str(inbox / f"P-1{suffix}"), counts)
        (inbox / "P-1.png").write_bytes(png_bytes((90, 90, 90)))
        if encoding is not None:
            (obs,) = settle(source, clock)  # one part: the map is not a part of its own
            height = obs.frames[0].height_map
            assert np.isnan(height[0, 0]) and height[1, 1] == pytest.approx(5.0)
            assert height[11, 11] - height[1, 1] == pytest.approx(-0.25)
            source.ack("P-1", ok=True)
            assert sorted(p.name for p in (inbox / "done").iterdir()) == [f"P-1{suffix}", "P-1.png"]
        else:
            bad = handed_on(source, clock)
            assert (
                bad.frames == () and "needs the profiler's z scale" in bad.metadata[CAPTURE_ERROR]
            )
