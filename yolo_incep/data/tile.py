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
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..files import atomic_write_bytes, check_writable, folder_lock, remove_stale_temps
from .common import Box, box_area, clip_box
from .journal import Journal
from .yolo import (
    KINDS,
    MIN_SIDE,
    Annotated,
    DataYaml,
    Labelled,
    foreign_files,
    format_labels,
    format_regions,
    label_path,
    list_images,
    open_image,
    read_annotated,
    read_data_yaml,
    refuse_inside_dataset,
    split_dirs,
    split_folders,
    write_data_yaml,
    write_sidecar,
)

MAX_TILES = 1000  # per image, unless --max-tiles says otherwise: an 8K frame at the default 640/0.2 makes 135

Window = tuple[int, int, int, int]  # x0, y0, x1, y1 in image pixels


def _starts(length: int, size: int, step: int) -> list[int]:
    if length <= size:
        return [0]
    starts = list(range(0, length - size, step))
    return starts + [length - size]  # flush with the far edge


def _step(size: int, overlap: float) -> int:
    """The distance between neighbouring tiles; bad --size or --overlap is an InputError."""
    if size < MIN_SIDE:
        raise InputError(f"--size must be at least {MIN_SIDE} px (Ultralytics drops smaller images), got {size}")
    if not 0.0 <= overlap < 1.0:
        raise InputError(f"--overlap must be in [0, 1), got {overlap}")
    return max(1, round(size * (1 - overlap)))


def tile_count(width: int, height: int, size: int = 640, overlap: float = 0.2) -> int:
    """How many tiles tile_windows gives, without listing them."""
    step = _step(size, overlap)
    return len(_starts(width, size, step)) * len(_starts(height, size, step))


def tile_windows(width: int, height: int, size: int = 640, overlap: float = 0.2) -> list[Window]:
    """Tiles covering a `width` x `height` image, row by row."""
    step = _step(size, overlap)
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
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join([f"tiled {self.images} images into {self.tiles} tiles: {self.boxes} boxes, "
                          f"{self.cut} box parts below the visibility threshold moved to ignore sidecars", *self.notes])


@dataclass
class _Source:
    """One image to tile, checked and with its annotations read before anything is written."""

    split: str
    image: Annotated
    windows: list[Window]

    @property
    def path(self) -> Path:
        return self.image.path


def _encode(image, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        image.save(buf, format="JPEG", quality=95)  # near-lossless: tiles must not be worse than the source
    else:
        if image.mode not in ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"):
            image = image.convert("RGB")  # e.g. CMYK: PNG cannot hold it, and Ultralytics reads it as RGB anyway
        image.save(buf, format="PNG")  # lossless for every other source format
    return buf.getvalue()


def _tile_image(source: _Source, out_root: Path, min_visibility: float, report: TileReport, journal: Journal) -> None:
    from PIL import ImageOps

    try:
        with open_image(source.path) as raw:
            fmt = "JPEG" if raw.format in ("JPEG", "MPO") else "PNG"  # by content: a PNG named .jpg stays lossless
            image = ImageOps.exif_transpose(raw)  # the orientation Ultralytics trains on, as image_size reports it
            image.load()
    except (OSError, ValueError) as e:  # the header and structure passed image_size; the pixel data did not
        raise InputError(f"{source.path}: unreadable image: {e}") from e
    suffix = source.path.suffix if fmt == "JPEG" else ".png"
    for window in source.windows:
        labels, cut, ignored = crop_annotations(source.image.boxes, source.image.regions, window, min_visibility)
        name = f"{source.path.stem}_{window[0]}_{window[1]}"
        tw, th = window[2] - window[0], window[3] - window[1]
        target = out_root / "images" / source.split / f"{name}{suffix}"
        atomic_write_bytes(target, _encode(image.crop(window), fmt), journal.begin)
        atomic_write_bytes(label_path(target), format_labels(labels, tw, th), journal.begin)
        write_sidecar(label_path(target, "ignore"), format_regions(cut + ignored, tw, th), journal.begin)
        report.tiles += 1
        report.boxes += len(labels)
        report.cut += len(cut)
    report.images += 1


def _inside(a: Path, b: Path) -> bool:
    """Whether `a` is `b` or lies inside it."""
    return a == b or b in a.parents


def tile_dataset(src: Path | str, dst: Path | str, size: int = 640, overlap: float = 0.2, min_visibility: float = 0.5,
                 splits: list[str] | None = None, max_tiles: int = MAX_TILES, overwrite: bool = False) -> TileReport:
    """Tile the chosen splits (default: all) of the YOLO dataset SRC into DST; other splits stay SRC's, by path."""
    # everything is checked before anything is written: arguments, images, labels, the tile count (`max_tiles` per
    # image), and files of an earlier run that this one would not write (removed only under `overwrite`: one
    # dataset never mixes two tilings)
    src, dst = Path(src), Path(dst)
    if _inside(dst.resolve(), src.resolve()) or _inside(src.resolve(), dst.resolve()):
        raise InputError(f"DST {dst} and SRC {src} must not lie inside one another: tiles would mix with the source")
    if not 0.0 < min_visibility <= 1.0:
        raise InputError(f"--min-visibility must be in (0, 1], got {min_visibility}")
    tile_windows(MIN_SIDE, MIN_SIDE, size, overlap)  # validates size and overlap before any work
    refuse_inside_dataset(dst, "DST")
    cfg = read_data_yaml(src / "data.yaml")
    present = split_dirs(src)
    chosen = present if splits is None else splits
    if missing := sorted(set(chosen) - set(present)):
        raise InputError(f"SRC {src} has no split(s) {missing}; it has {present}")
    if empty := [s for s in chosen if not list_images(src / "images" / s)]:
        raise InputError(f"SRC {src}: split(s) {empty} hold no images, so there is nothing to tile there; choose "
                         f"--splits among {[s for s in present if s not in empty]}")
    with folder_lock(dst, flag="DST"):  # one writer: two tilings at once would mix, or remove each other's temp files
        journal = Journal(dst, "tile", shlex.join(["yolo-incep", "tile", str(src), str(dst), "--size", str(size),
                                                   "--overlap", f"{overlap:g}", "--min-visibility",
                                                   f"{min_visibility:g}", "--splits", *chosen, "--max-tiles",
                                                   str(max_tiles), *(["--overwrite"] if overwrite else [])]))
        return _write_tiles(src, dst, cfg, chosen, present, size, overlap, min_visibility, max_tiles, overwrite,
                            journal)


def _write_tiles(src: Path, dst: Path, cfg: DataYaml, chosen: list[str], present: list[str], size: int,
                 overlap: float, min_visibility: float, max_tiles: int, overwrite: bool,
                 journal: Journal) -> TileReport:
    plan = _plan(src, chosen, size, overlap, max_tiles, len(cfg.names))
    foreign = foreign_files(dst, {f"{s.path.stem}_{w[0]}_{w[1]}" for s in plan for w in s.windows})
    if foreign and not overwrite:
        raise InputError(f"DST {dst} holds {len(foreign)} file(s) this tiling would not write (another --size, "
                         f"--overlap or source?), e.g. {foreign[0]}: pass --overwrite to remove them, or choose "
                         f"another DST")
    folders = [dst, *split_folders(dst), *(dst / kind / s for kind in KINDS for s in chosen)]
    check_writable(folders)
    remove_stale_temps(folders)
    for f in foreign:
        journal.begin()
        f.unlink()
    report = TileReport()
    for source in plan:
        _tile_image(source, dst, min_visibility, report, journal)
    entries = _entries(src, chosen, present, cfg)
    if "train" in entries and entries["val"] == entries["train"]:
        report.notes.append(f"SRC has no val split: val is {entries['val']} (a fit check, not a held-out score); "
                            f"`yolo-incep split {src} --val-fraction F` before tiling makes a real one")
    write_data_yaml(dst, entries, cfg.names)
    journal.done()
    if foreign:
        report.notes.append(f"removed {len(foreign)} file(s) of an earlier tiling (--overwrite)")
    return report


def _plan(src: Path, splits: list[str], size: int, overlap: float, max_tiles: int, nc: int) -> list[_Source]:
    """Every image of `splits` with its windows and annotations; a bad image, label or tile count is an InputError."""
    plan = []
    for split in splits:
        for path in list_images(src / "images" / split).values():
            image = read_annotated(path, nc)
            width, height = image.width, image.height
            if (n := tile_count(width, height, size, overlap)) > max_tiles:
                raise InputError(f"{path}: --size {size} --overlap {overlap} would cut this {width}x{height} image "
                                 f"into {n} tiles (more than --max-tiles {max_tiles}); nothing was written")
            plan.append(_Source(split, image, tile_windows(width, height, size, overlap)))
    return plan


def _entries(src: Path, chosen: list[str], present: list[str], cfg: DataYaml) -> dict[str, str | list[str]]:
    """The tile output's data.yaml splits: tiled ones local, the others SRC's by absolute path, always a val."""
    entries: dict[str, str | list[str]] = {s: f"images/{s}" for s in chosen}
    for s in ("train", "val", "test"):
        if s in entries:
            continue
        if s in present:
            entries[s] = str((src / "images" / s).resolve())
        elif isinstance(value := cfg.config.get(s), str):  # e.g. a tile output's own untiled val
            entries[s] = str((cfg.root / value).resolve())
        elif isinstance(value, list):
            entries[s] = [str((cfg.root / e).resolve()) for e in value]
    if "val" not in entries and "train" in entries:  # Ultralytics trains on nothing without a val entry
        entries["val"] = entries["train"]
    return entries


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
    parser.add_argument("--max-tiles", type=int, default=MAX_TILES,
                        help=f"refuse to cut any image into more tiles than this (default {MAX_TILES})")
    parser.add_argument("--overwrite", action="store_true",
                        help="remove files an earlier run left in DST that this one would not write")


def run(args: argparse.Namespace) -> int:
    """Tile and print the counts."""
    print(tile_dataset(args.src, args.dst, args.size, args.overlap, args.min_visibility, args.splits,
                       args.max_tiles, args.overwrite))
    return 0
