"""The capture backends run on an edge box without torch."""

from __future__ import annotations

from edge_guard import run_without_torch


def test_capture_backends_import_without_torch():
    done = run_without_torch(
        """
        import numpy as np
        from inspection.capture.audio import FileMicrophone, SoundDeviceMicrophone
        from inspection.capture.folder import FolderSource
        from inspection.capture.opencv import OpenCVCamera
        from inspection.capture.trigger import MotionTrigger

        trigger = MotionTrigger(min_area=10)
        assert not trigger.update(np.zeros((20, 20), np.uint8))
        """
    )
    assert done.returncode == 0, done.stderr
