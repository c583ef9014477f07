"""Capture devices: cameras, microphones and part sources (real, folder, simulated).

The bases live here; each backend is imported from its own module, so that a station
loads only what it uses:

- :mod:`~inspection.capture.opencv`: ``OpenCVCamera`` (USB index, RTSP URL, video file)
- :mod:`~inspection.capture.folder`: ``FolderSource`` (a watched folder)
- :mod:`~inspection.capture.audio`: ``FileMicrophone``, ``SoundDeviceMicrophone``
- :mod:`~inspection.capture.trigger`: ``MotionTrigger`` (part present by frame difference)
- :mod:`~inspection.capture.simulator`: ``SimulatedLine`` (synthetic parts with audio)
"""

from inspection.capture.base import Camera, CaptureError, Microphone, PartSource

__all__ = ["Camera", "CaptureError", "Microphone", "PartSource"]
