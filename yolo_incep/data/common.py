"""Shared file helpers for the data tools: atomic writes, image links, YOLO label and ignore-sidecar IO, data.yaml."""

from __future__ import annotations

import contextlib
import filecmp
import glob
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import InputError

IMAGE_SUFFIXES = (".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm", ".heic")  # Ultralytics'
SMALL_AREA = 32 * 32  # COCO's "small" objects: area under 32x32 px

# A box in pixels: (x1, y1, x2, y2); a labelled box: (class id, box).
Box = tuple[float, float, float, float]
Labelled = tuple[int, Box]


def _umask() -> int:
    """The process umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temp path beside `path` to write; it replaces `path` on success and is removed on any failure (Ctrl-C too)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):  # left by a killed earlier write of `path`
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the result the usual permissions
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes | str) -> bool:
    """Write `data` (str as UTF-8) atomically; skip (return False) when the file already holds it."""
    data = data.encode("utf-8") if isinstance(data, str) else data
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return False
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return True


def link_image(src: Path, dst: Path) -> None:
    """Make `dst` show the image `src`: hardlink, else absolute symlink, else copy; idempotent and atomic."""
    if dst.exists() and (os.path.samefile(src, dst) or filecmp.cmp(src, dst, shallow=False)):
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(src, tmp)
        except OSError:  # another filesystem, or links not allowed
            try:
                os.symlink(src.resolve(), tmp)
            except OSError:
                shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def ignore_path(label_path: Path) -> Path:
    """The ignore sidecar of a label file: the last '/labels/' component replaced by '/ignore/'."""
    parts = list(label_path.parts)
    i = len(parts) - 1 - parts[::-1].index("labels", 1)  # the last 'labels' directory, never the file name
    parts[i] = "ignore"
    return Path(*parts)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the image header; an unreadable image is an InputError naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, UnidentifiedImageError) as e:
        raise InputError(f"{path}: cannot read image: {e}") from e


def list_images(directory: Path) -> dict[str, Path]:
    """Images directly inside `directory`, by file stem."""
    if not directory.is_dir():
        return {}
    return {p.stem: p for p in sorted(directory.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()}


def clip_box(box: Box, width: float, height: float) -> Box:
    """The part of `box` inside the image [0, width] x [0, height] (may have zero area)."""
    x1, y1, x2, y2 = box
    return (min(max(x1, 0.0), width), min(max(y1, 0.0), height),
            min(max(x2, 0.0), width), min(max(y2, 0.0), height))


def box_area(box: Box) -> float:
    """Area of an (x1, y1, x2, y2) box; zero when degenerate."""
    return max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)


def format_box(box: Box, width: float, height: float) -> str:
    """'cx cy w h' normalised to the image, 6 decimals: the YOLO label and ignore-sidecar convention."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    return f"{(x1 + w / 2) / width:.6f} {(y1 + h / 2) / height:.6f} {w / width:.6f} {h / height:.6f}"


def format_labels(boxes: list[Labelled], width: float, height: float) -> str:
    """A YOLO label file's text for pixel boxes."""
    return "".join(f"{c} {format_box(b, width, height)}\n" for c, b in boxes)


def format_regions(boxes: list[Box], width: float, height: float) -> str:
    """An ignore sidecar's text for pixel regions."""
    return "".join(f"{format_box(b, width, height)}\n" for b in boxes)


def _parse_normalised(fields: list[str], where: str) -> tuple[float, float, float, float]:
    try:
        cx, cy, w, h = (float(v) for v in fields)
    except ValueError:
        raise InputError(f"{where}: expected numbers, got {' '.join(fields)!r}") from None
    if not all(math.isfinite(v) for v in (cx, cy, w, h)) or w < 0 or h < 0:
        raise InputError(f"{where}: bad box {' '.join(fields)!r} (need finite numbers, w and h >= 0)")
    return cx, cy, w, h


def _to_pixels(cx: float, cy: float, w: float, h: float, width: float, height: float) -> Box:
    return ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)


def _fields(path: Path) -> Iterator[tuple[str, list[str]]]:
    """('file:line', fields) of every non-empty line of a label-style file; nothing for a missing file."""
    if not path.is_file():
        return
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if fields := line.split():
            yield f"{path}:{n}", fields


def read_labels(path: Path, width: float, height: float) -> list[Labelled]:
    """A YOLO label file as pixel boxes; a missing file means no boxes; a malformed line is an InputError (file:line)."""
    out = []
    for where, fields in _fields(path):
        if len(fields) != 5 or not fields[0].isdigit():
            raise InputError(f"{where}: expected 'class cx cy w h' with an integer class, got {' '.join(fields)!r}")
        out.append((int(fields[0]), _to_pixels(*_parse_normalised(fields[1:], where), width, height)))
    return out


def read_regions(path: Path, width: float, height: float) -> list[Box]:
    """An ignore sidecar as pixel boxes; a missing file means none; a malformed line is an InputError (file:line)."""
    out = []
    for where, fields in _fields(path):
        if len(fields) != 4:
            raise InputError(f"{where}: expected 'cx cy w h', got {' '.join(fields)!r}")
        out.append(_to_pixels(*_parse_normalised(fields, where), width, height))
    return out


def write_sidecar(path: Path, text: str) -> None:
    """Write an ignore sidecar, or remove a stale one when there are no regions (no regions = no file)."""
    if text:
        atomic_write_bytes(path, text)
    else:
        path.unlink(missing_ok=True)


def split_order(name: str) -> tuple[int, str]:
    """Sort key putting train, val, test first, as Ultralytics' data YAMLs list them."""
    return {"train": 0, "val": 1, "test": 2}.get(name, 3), name


def write_data_yaml(root: Path, splits: dict[str, str], names: list[str]) -> Path:
    """Write ROOT/data.yaml for Ultralytics: absolute path, one entry per split, class names by id."""
    import yaml

    ordered = {k: splits[k] for k in sorted(splits, key=split_order)}
    data = {"path": str(root.resolve()), **ordered, "names": dict(enumerate(names))}
    path = root / "data.yaml"
    atomic_write_bytes(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


def read_names(root: Path) -> list[str]:
    """Class names from ROOT/data.yaml (list or {id: name}); an InputError when it is missing or unreadable."""
    import yaml

    path = root / "data.yaml"
    try:
        names = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("names")
    except (OSError, yaml.YAMLError, AttributeError) as e:
        raise InputError(f"{path}: cannot read class names: {e}") from e
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    if not isinstance(names, list) or not names:
        raise InputError(f"{path}: no 'names' list")
    return [str(n) for n in names]


def split_dirs(root: Path) -> list[str]:
    """Names of the splits of a YOLO dataset root (the directories under ROOT/images)."""
    images = root / "images"
    if not images.is_dir():
        raise InputError(f"{root}: not a YOLO dataset (no images/ directory)")
    return sorted(p.name for p in images.iterdir() if p.is_dir())
