"""yolo-incep: InceptionNeXt blocks for Ultralytics YOLO, aimed at small-object detection.

Kept import-light: yolo_incep.pth imports this package at every interpreter start-up.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ("__version__", "load_backbone_weights")


def __getattr__(name: str):
    if name == "load_backbone_weights":
        from .weights import load_backbone_weights

        return load_backbone_weights
    raise AttributeError(f"module 'yolo_incep' has no attribute {name!r}")
