"""VisDrone2019-DET -> YOLO labels, keeping ignored regions in a sidecar (`yolo-incep convert visdrone SRC DST`).

SRC is a folder holding one or more `VisDrone2019-DET-<split>/{images,annotations}` folders (as unzipped from the
official release), or one such folder itself. Annotation rows are
`x,y,w,h,score,category,truncation,occlusion` in pixels. A row becomes a training box (class = category - 1) when
its category is 1..10 and its score is not 0. Every other row (category 0 "ignored region", category 11 "others",
score 0) is something the official toolkit does not count in evaluation: it goes to the ignore sidecar
`DST/ignore/<split>/<stem>.txt` (one `cx cy w h` per line, normalised, 6 decimals; no file when there is none).
Boxes are clipped to the image (size read from the image); zero-area results are dropped and counted.

The whole source is parsed before anything is written, every file is written atomically and only when its content
changes, and images are copied (copy-on-write clones where the filesystem has them; hard links only with --link, as
an in-place edit of a linked image would edit the source): a rerun changes nothing. A rerun without --val-fraction
keeps the val split an earlier run carved out of train (tile outputs may point at it). One run at a time per DST.
An interrupted run leaves data/journal.py's marker (refused by readers, finished by a rerun); a split folder it
creates appears whole, by one rename.
"""

from __future__ import annotations

import argparse
import math
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..files import atomic_write_bytes, check_writable, copy_file, folder_lock, remove_stale_temps
from .common import SMALL_AREA, Box, box_area, clip_box
from .journal import Journal, NewSplits
from .split import check_fraction, split_by_sequence
from .yolo import (
    KINDS,
    Labelled,
    foreign_files,
    format_labels,
    format_regions,
    image_size,
    label_path,
    list_images,
    refuse_inside_dataset,
    split_dirs,
    split_folders,
    split_order,
    write_data_yaml,
    write_sidecar,
)

NAMES = ["pedestrian", "people", "bicycle", "car", "van", "truck", "tricycle", "awning-tricycle", "bus", "motor"]
IGNORED_REGION, OTHERS = 0, 11
SPLIT_NAMES = {"test-dev": "test"}  # official folder suffix -> split name, where they differ
_SOURCE = re.compile(r"VisDrone\d*-DET-(?P<split>.+)$")


@dataclass
class ImageAnnotations:
    """One annotation file, converted to pixel boxes clipped to its image."""

    boxes: list[Labelled] = field(default_factory=list)
    ignored: list[Box] = field(default_factory=list)
    regions: int = 0  # category-0 rows among `ignored` (the rest are 'others' or score-0 objects)
    zero_area: int = 0
    skipped: int = 0  # malformed rows skipped under skip_bad


def _number(text: str, what: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{where}: {what} is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise InputError(f"{where}: {what} is not a finite number: {text!r}")
    return value


def parse_row(line: str, where: str) -> tuple[Box, float, int]:
    """One annotation row -> ((x1, y1, x2, y2), score, category); an InputError naming `where` when malformed."""
    fields = [f.strip() for f in line.strip().split(",")]
    if len(fields) == 9 and not fields[-1]:  # some releases end rows with a comma
        fields.pop()
    if len(fields) != 8:
        raise InputError(f"{where}: expected 8 comma-separated fields "
                         f"(x,y,w,h,score,category,truncation,occlusion), got {len(fields)}: {line.strip()!r}")
    names = ("x", "y", "w", "h", "score", "category", "truncation", "occlusion")
    x, y, w, h, score, category, _, _ = (_number(v, n, where) for v, n in zip(fields, names))
    if w < 0 or h < 0:
        raise InputError(f"{where}: negative box size w={fields[2]} h={fields[3]}")
    if category != int(category) or not IGNORED_REGION <= category <= OTHERS:
        raise InputError(f"{where}: unknown category {fields[5]!r} (VisDrone categories are 0..11)")
    return (x, y, x + w, y + h), score, int(category)


def check_extent(box: Box, width: int, height: int, where: str) -> None:
    """A box may stick out of its image (a truncated object), but not by more than the image's own size."""
    x1, y1, x2, y2 = box
    if x1 < -width or y1 < -height or x2 > 2 * width or y2 > 2 * height:
        raise InputError(f"{where}: box x={x1:g} y={y1:g} w={x2 - x1:g} h={y2 - y1:g} reaches far outside "
                         f"its {width}x{height} image")


def parse_annotations(text: str, source: str, width: int, height: int, skip_bad: bool = False) -> ImageAnnotations:
    """Convert one annotation file's text for an image of `width` x `height` px; errors name `source`:line."""
    out = ImageAnnotations()
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            box, score, category = parse_row(line, f"{source}:{n}")
            check_extent(box, width, height, f"{source}:{n}")
        except InputError:
            if not skip_bad:
                raise
            out.skipped += 1
            continue
        clipped = clip_box(box, width, height)
        if box_area(clipped) <= 0:
            out.zero_area += 1
        elif category in (IGNORED_REGION, OTHERS) or score == 0:
            out.ignored.append(clipped)
            out.regions += category == IGNORED_REGION
        else:
            out.boxes.append((category - 1, clipped))
    return out


@dataclass
class ConversionReport:
    """What a conversion did, printed as the summary."""

    images: dict[str, int] = field(default_factory=dict)
    boxes: list[int] = field(default_factory=lambda: [0] * len(NAMES))
    small: int = 0
    ignored: int = 0
    regions: int = 0
    zero_area: int = 0
    skipped_rows: int = 0
    unmatched: list[str] = field(default_factory=list)  # annotation without image, or image without annotation
    notes: list[str] = field(default_factory=list)

    def add(self, ann: ImageAnnotations) -> None:
        """Count one converted image's rows."""
        for c, b in ann.boxes:
            self.boxes[c] += 1
            self.small += box_area(b) < SMALL_AREA
        self.ignored += len(ann.ignored)
        self.regions += ann.regions
        self.zero_area += ann.zero_area
        self.skipped_rows += ann.skipped

    def __str__(self) -> str:
        total = sum(self.boxes)
        lines = ["images: " + ", ".join(f"{s} {n}" for s, n in self.images.items()) + f" (total {sum(self.images.values())})",
                 f"boxes: {total}"]
        lines += [f"  {i} {name:<16}{n}" for i, (name, n) in enumerate(zip(NAMES, self.boxes))]
        lines.append(f"boxes under 32x32 px (area): {self.small} ({100 * self.small / max(total, 1):.1f}%)")
        lines.append(f"ignored regions (sidecars): {self.ignored} "
                     f"({self.regions} category 0, {self.ignored - self.regions} 'others' or score-0 objects)")
        lines.append(f"zero-area boxes dropped after clipping: {self.zero_area}")
        if self.skipped_rows:
            lines.append(f"malformed rows skipped (--skip-bad): {self.skipped_rows}")
        if self.unmatched:
            lines.append(f"files skipped for a missing partner (--skip-bad): {len(self.unmatched)}")
            lines += [f"  {u}" for u in self.unmatched]
        return "\n".join(lines + self.notes)


def find_sources(src: Path) -> dict[str, Path]:
    """Split name -> folder with images/ and annotations/, from SRC or the VisDrone*-DET-* folders inside it."""
    if not src.is_dir():
        raise InputError(f"SRC {src}: no such directory")
    candidates = sorted(p for p in src.iterdir() if _SOURCE.match(p.name)) or [src]  # SRC may also be DST
    sources: dict[str, Path] = {}
    for folder in candidates:
        m = _SOURCE.match(folder.resolve().name)
        split = SPLIT_NAMES.get(m["split"], m["split"]) if m else "train"
        if (folder / "images").is_dir() and (folder / "annotations").is_dir():
            sources[split] = folder
    if not sources:
        raise InputError(f"SRC {src}: found no VisDrone2019-DET-<split>/ folder with images/ and annotations/")
    return sources


def _pairs(folder: Path, skip_bad: bool, report: ConversionReport) -> dict[str, tuple[Path, Path]]:
    """stem -> (image, annotation); an unmatched file is an error, or skipped and reported under skip_bad."""
    images = list_images(folder / "images")
    annotations = {p.stem: p for p in sorted((folder / "annotations").glob("*.txt"))}
    unmatched = [f"{annotations[s]}: no image" for s in sorted(annotations.keys() - images.keys())]
    unmatched += [f"{images[s]}: no annotation file" for s in sorted(images.keys() - annotations.keys())]
    if unmatched and not skip_bad:
        shown = "\n  ".join(unmatched[:10]) + ("\n  ..." if len(unmatched) > 10 else "")
        raise InputError(f"{len(unmatched)} file(s) without a partner (pass --skip-bad to skip them):\n  {shown}")
    report.unmatched += unmatched
    return {s: (images[s], annotations[s]) for s in sorted(images.keys() & annotations.keys())}


def _read_annotations(path: Path, width: int, height: int, skip_bad: bool) -> ImageAnnotations:
    text = path.read_bytes().decode("utf-8-sig", errors="replace")  # bad bytes become a malformed row, with its line
    return parse_annotations(text, str(path), width, height, skip_bad)


def convert_visdrone(src: Path | str, dst: Path | str, val_fraction: float = 0.0, seed: int = 0,
                     skip_bad: bool = False, overwrite: bool = False, link: bool = False,
                     log: Callable[[str], None] = print) -> ConversionReport:
    """Convert VisDrone SRC into the YOLO dataset DST (images/, labels/, ignore/, data.yaml); returns the summary.

    Images are copied (copy-on-write clones where the filesystem has them), or with `link` hard-linked."""
    src, dst = Path(src), Path(dst)
    sources = find_sources(src)
    check_destination(dst, sources)
    refuse_inside_dataset(dst, "DST")
    if val_fraction:
        check_fraction(val_fraction)
        if "val" in sources:
            raise InputError(f"SRC {src} already has a val split: drop --val-fraction (it carves val out of train)")
        if "train" not in sources:
            raise InputError(f"SRC {src} has no train split to carve --val-fraction out of")
    with folder_lock(dst, flag="DST"):  # one writer: two conversions at once would put one image in train and in val
        journal = Journal(dst, "convert", shlex.join([
            "yolo-incep", "convert", "visdrone", str(src), str(dst),
            *(["--val-fraction", f"{val_fraction:g}", "--seed", str(seed)] if val_fraction else []),
            *(["--skip-bad"] if skip_bad else []), *(["--overwrite"] if overwrite else []),
            *(["--link"] if link else [])]))
        return _convert(src, dst, sources, val_fraction, seed, skip_bad, overwrite, link, log, journal)


def check_destination(dst: Path, sources: dict[str, Path]) -> None:
    """DST must not be, or lie inside, a source folder, nor hold one in the folders it writes."""
    out = dst.resolve()
    for folder in sources.values():
        folder = folder.resolve()
        if out == folder or folder in out.parents or any(k in folder.parents for k in (out / k for k in KINDS)):
            raise InputError(f"DST {dst}: lies inside the source folder {folder} (or holds it): the conversion would "
                             f"write into the source data; choose a DST outside it (the folder holding the "
                             f"VisDrone2019-DET-* folders may be DST)")


def _convert(src: Path, dst: Path, sources: dict[str, Path], val_fraction: float, seed: int, skip_bad: bool,
             overwrite: bool, link: bool, log: Callable[[str], None], journal: Journal) -> ConversionReport:
    report = ConversionReport()
    earlier = {s: list_images(dst / "images" / s) for s in split_dirs(dst)} if (dst / "images").is_dir() else {}
    plan: list[tuple[str, Path, tuple[int, int], ImageAnnotations]] = []  # parse all before writing anything
    kept_val: set[str] = set()
    for source_split, folder in sources.items():
        pairs = _pairs(folder, skip_bad, report)
        val = set()
        if source_split == "train" and val_fraction:
            val = split_by_sequence(pairs, val_fraction, seed)
        elif source_split == "train" and "val" not in sources:  # a rerun keeps the val split an earlier run carved
            val = kept_val = set(earlier.get("val", {})) & set(pairs)
        for stem, (image, annotation) in pairs.items():
            size = image_size(image)
            plan.append(("val" if stem in val else source_split, image, size,
                         _read_annotations(annotation, *size, skip_bad)))
    if not plan:
        raise InputError(f"SRC {src}: no image with an annotation file to convert")
    plan.sort(key=lambda p: split_order(p[0]))
    splits = sorted({p[0] for p in plan}, key=split_order)
    # files of images this conversion does not have: removed only under `overwrite`, never mixed in silently
    foreign = foreign_files(dst, {image.stem for _, image, _, _ in plan})
    if foreign and not overwrite:
        raise InputError(f"DST {dst} holds {len(foreign)} file(s) of another conversion, e.g. {foreign[0]}: "
                         f"pass --overwrite to remove them, or choose another DST")
    folders = [dst, *split_folders(dst), *(dst / kind / s for kind in KINDS for s in splits)]
    check_writable(folders)  # before any change: a half-moved split must never happen
    remove_stale_temps(folders)
    for f in foreign:
        journal.begin()
        f.unlink()
    new = NewSplits(dst, splits, journal)
    for split, image, (width, height), ann in plan:
        target = new.folder(split) / image.name
        _remove_elsewhere(image.stem, split, earlier, journal)
        atomic_write_bytes(label_path(target), format_labels(ann.boxes, width, height), journal.begin)
        write_sidecar(label_path(target, "ignore"), format_regions(ann.ignored, width, height), journal.begin)
        copy_file(image, target, link, journal.begin)
        report.images[split] = report.images.get(split, 0) + 1
        report.add(ann)
    new.finish()
    write_data_yaml(dst, {s: f"images/{s}" for s in splits}, NAMES)
    journal.done()
    if foreign:
        report.notes.append(f"removed {len(foreign)} file(s) of an earlier conversion (--overwrite)")
    if kept_val:
        report.notes.append(f"kept the val split of an earlier run ({len(kept_val)} images carved out of train); "
                            f"pass --val-fraction, or run `yolo-incep split DST --val-fraction F`, to split anew")
    elif "val" not in splits:
        report.notes.append("no val split: pass --val-fraction, or run `yolo-incep split DST --val-fraction F`")
    if link:
        report.notes.append("images are hard links (--link): an in-place edit of an image in DST edits the source "
                            "image too; convert without --link for copies")
    log(str(report))
    return report


def _remove_elsewhere(stem: str, split: str, earlier: dict[str, dict[str, Path]], journal: Journal) -> None:
    """Drop files of `stem` left in another split by an earlier run with a different val split (the image last)."""
    for other, images in earlier.items():
        if other != split and stem in images:
            journal.begin()
            for kind in ("labels", "ignore"):
                label_path(images[stem], kind).unlink(missing_ok=True)
            images[stem].unlink(missing_ok=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `yolo-incep convert visdrone` (the format name is data/convert.py's)."""
    parser.add_argument("src", type=Path, help="VisDrone2019-DET-<split>/ folder, or a folder holding several")
    parser.add_argument("dst", type=Path, help="output YOLO dataset root")
    parser.add_argument("--val-fraction", type=float, default=0.0,
                        help="carve this share of train images out as val, by whole sequences (default: no carving)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sequence split (default 0)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip malformed rows and unmatched files (and report how many) instead of stopping")
    parser.add_argument("--overwrite", action="store_true",
                        help="remove files an earlier conversion left in DST for images this source does not have")
    parser.add_argument("--link", action="store_true",
                        help="hard-link images instead of copying them (no space, but an edit of either edits both)")


def run(args: argparse.Namespace) -> int:
    """Convert and print the summary."""
    convert_visdrone(args.src, args.dst, args.val_fraction, args.seed, args.skip_bad, args.overwrite,
                     args.link)
    return 0
