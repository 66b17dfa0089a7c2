"""Model Explorer extension: the workbench ONNX adapter (``main.py``), imported by the viewer server only."""
