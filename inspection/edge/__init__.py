"""The edge: torch-free runtime of an exported bundle (numpy, OpenCV, ONNX Runtime).

Nothing under this package imports torch; ``tests/edge`` proves it in a fresh process.
"""
