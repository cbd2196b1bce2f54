"""Overlapping tiles of a YOLO dataset (`yolo-incep tile SRC DST --size 640 --overlap 0.2`).

Training on tiles keeps small objects at native resolution instead of shrinking a 1920x1080 frame to the network
size. Tiles are `size` x `size` (smaller only when the image is), step `size * (1 - overlap)`, the last row and
column flush with the image edge, so every pixel is covered and no tile is padded. Tile files are named
`<stem>_<x0>_<y0>` so the VisDrone sequence id stays the first field (sequence-aware splits still work).

Labels: a box is kept in a tile, clipped to it, when at least `min_visibility` (default 0.5) of its area lies
inside; a box cut more than that is not a label there (a sliver teaches nothing), and its visible part goes to the
tile's ignore sidecar so that evaluation on tiles neither rewards nor punishes detections on it. With overlap >= the
object size, every object lies whole in some tile. Ignored regions are clipped to each tile they touch.
"""

from __future__ import annotations

import argparse
import io
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from .common import (
    Box,
    Labelled,
    atomic_write_bytes,
    box_area,
    clip_box,
    format_labels,
    format_regions,
    ignore_path,
    list_images,
    read_labels,
    read_names,
    read_regions,
    split_dirs,
    write_data_yaml,
    write_sidecar,
)

Window = tuple[int, int, int, int]  # x0, y0, x1, y1 in image pixels


def _starts(length: int, size: int, step: int) -> list[int]:
    if length <= size:
        return [0]
    starts = list(range(0, length - size, step))
    return starts + [length - size]  # flush with the far edge


def tile_windows(width: int, height: int, size: int = 640, overlap: float = 0.2) -> list[Window]:
    """Tiles covering a `width` x `height` image, row by row."""
    if size < 1:
        raise InputError(f"--size must be a positive number of pixels, got {size}")
    if not 0.0 <= overlap < 1.0:
        raise InputError(f"--overlap must be in [0, 1), got {overlap}")
    step = max(1, round(size * (1 - overlap)))
    return [(x, y, min(x + size, width), min(y + size, height))
            for y in _starts(height, size, step) for x in _starts(width, size, step)]


def _shift(box: Box, window: Window) -> Box:
    x0, y0 = window[0], window[1]
    return box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0


def crop_annotations(boxes: list[Labelled], regions: list[Box], window: Window,
                     min_visibility: float = 0.5) -> tuple[list[Labelled], list[Box], list[Box]]:
    """(labels, cut boxes, ignored regions) of one tile in tile pixels; see the module docstring for the rule."""
    w, h = window[2] - window[0], window[3] - window[1]
    labels, cut = [], []
    for c, box in boxes:
        inside = clip_box(_shift(box, window), w, h)
        visible = box_area(inside)
        if visible >= min_visibility * box_area(box) and visible > 0:
            labels.append((c, inside))
        elif visible > 0:
            cut.append(inside)
    clipped = (clip_box(_shift(r, window), w, h) for r in regions)
    return labels, cut, [r for r in clipped if box_area(r) > 0]


@dataclass
class TileReport:
    """Counts of one tiling run."""

    images: int = 0
    tiles: int = 0
    boxes: int = 0
    cut: int = 0  # boxes turned into ignored regions in some tile for being mostly outside it

    def __str__(self) -> str:
        return (f"tiled {self.images} images into {self.tiles} tiles: {self.boxes} boxes, "
                f"{self.cut} box parts below the visibility threshold moved to ignore sidecars")


def _encode(image, suffix: str) -> bytes:
    buf = io.BytesIO()
    if suffix.lower() in (".jpg", ".jpeg"):
        image.save(buf, format="JPEG", quality=95)  # near-lossless: tiles must not be worse than the source
    else:
        image.save(buf, format="PNG")  # lossless for every other source format
    return buf.getvalue()


def _tile_image(path: Path, label: Path, out_root: Path, split: str, size: int, overlap: float,
                min_visibility: float, report: TileReport) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path)
        image.load()
    except (OSError, UnidentifiedImageError) as e:
        raise InputError(f"{path}: cannot read image: {e}") from e
    with image:
        width, height = image.size
        boxes = read_labels(label, width, height)
        regions = read_regions(ignore_path(label), width, height)
        suffix = path.suffix if path.suffix.lower() in (".jpg", ".jpeg") else ".png"
        for window in tile_windows(width, height, size, overlap):
            labels, cut, ignored = crop_annotations(boxes, regions, window, min_visibility)
            name = f"{path.stem}_{window[0]}_{window[1]}"
            tw, th = window[2] - window[0], window[3] - window[1]
            atomic_write_bytes(out_root / "images" / split / f"{name}{suffix}", _encode(image.crop(window), suffix))
            atomic_write_bytes(out_root / "labels" / split / f"{name}.txt", format_labels(labels, tw, th))
            write_sidecar(out_root / "ignore" / split / f"{name}.txt", format_regions(cut + ignored, tw, th))
            report.tiles += 1
            report.boxes += len(labels)
            report.cut += len(cut)
    report.images += 1


def tile_dataset(src: Path | str, dst: Path | str, size: int = 640, overlap: float = 0.2, min_visibility: float = 0.5,
                 splits: list[str] | None = None) -> TileReport:
    """Tile the chosen splits (default: all) of the YOLO dataset SRC into DST; other splits stay SRC's, by path."""
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise InputError(f"DST {dst} must differ from SRC")
    if not 0.0 < min_visibility <= 1.0:
        raise InputError(f"--min-visibility must be in (0, 1], got {min_visibility}")
    tile_windows(1, 1, size, overlap)  # validates size and overlap before any work
    names = read_names(src)
    present = split_dirs(src)
    chosen = present if splits is None else splits
    if missing := sorted(set(chosen) - set(present)):
        raise InputError(f"SRC {src} has no split(s) {missing}; it has {present}")
    report = TileReport()
    for split in chosen:
        for path in list_images(src / "images" / split).values():
            label = src / "labels" / split / f"{path.stem}.txt"
            _tile_image(path, label, dst, split, size, overlap, min_visibility, report)
    entries = {s: f"images/{s}" if s in chosen else str((src / "images" / s).resolve()) for s in present}
    write_data_yaml(dst, entries, names)
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `yolo-incep tile`."""
    parser.add_argument("src", type=Path, help="YOLO dataset root (images/, labels/, optional ignore/, data.yaml)")
    parser.add_argument("dst", type=Path, help="output dataset root for the tiles")
    parser.add_argument("--size", type=int, default=640, help="tile side in pixels (default 640)")
    parser.add_argument("--overlap", type=float, default=0.2, help="share of a tile shared with its neighbour")
    parser.add_argument("--min-visibility", type=float, default=0.5,
                        help="keep a box in a tile when this share of its area is inside (default 0.5)")
    parser.add_argument("--splits", nargs="+", default=None,
                        help="splits to tile (default: all); the others are referenced from SRC untiled")


def run(args: argparse.Namespace) -> int:
    """Tile and print the counts."""
    print(tile_dataset(args.src, args.dst, args.size, args.overlap, args.min_visibility, args.splits))
    return 0
