"""Pixel-box geometry shared by the data tools (file helpers live in yolo_incep/files.py)."""

from __future__ import annotations

SMALL_AREA = 32 * 32  # COCO's "small" objects: area under 32x32 px

Box = tuple[float, float, float, float]  # a box in pixels: (x1, y1, x2, y2)


def clip_box(box: Box, width: float, height: float) -> Box:
    """The part of `box` inside the image [0, width] x [0, height] (may have zero area)."""
    x1, y1, x2, y2 = box
    return (min(max(x1, 0.0), width), min(max(y1, 0.0), height),
            min(max(x2, 0.0), width), min(max(y2, 0.0), height))


def box_area(box: Box) -> float:
    """Area of an (x1, y1, x2, y2) box; zero when degenerate."""
    return max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)
