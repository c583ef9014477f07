"""Capture devices: cameras, microphones and part sources (real, folder, simulated)."""

from inspection.capture.base import Camera, CaptureError, Microphone, PartSource

__all__ = ["Camera", "CaptureError", "Microphone", "PartSource"]
