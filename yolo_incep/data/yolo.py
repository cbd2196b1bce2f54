"""YOLO dataset files, read and written in one place: images, label files, ignore sidecars, data.yaml, splits.

The layout is Ultralytics': `ROOT/images/<split>/<stem>.<ext>`, the label at the image path with its last `images`
folder replaced by `labels` and the suffix by `.txt` (Ultralytics' img2label_paths); our ignore sidecars follow the
same rule with `ignore`. Label rows are `class cx cy w h`, sidecar rows `cx cy w h`, normalised to the image; a
missing file means no rows. Everything is checked as Ultralytics checks it when it builds its label cache, so what
passes here is what it trains on, and every error names the file (and line) at fault.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..files import atomic_write_bytes
from .common import Box

# Ultralytics' image suffixes
IMAGE_SUFFIXES = (".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm", ".heic")
MIN_SIDE = 10  # Ultralytics drops images under 10 px a side
KINDS = ("images", "labels", "ignore")  # the folders of a dataset root, each with one subfolder per split
NOT_SPLITS = {"names", "nc", "path", "download", "yaml_file", "channels"}  # data.yaml keys that are not splits

Labelled = tuple[int, Box]  # a labelled pixel box: (class id, box)


# ---- paths and images -------------------------------------------------------------------------------------------

def label_path(image: Path, kind: str = "labels") -> Path:
    """The label file (kind 'labels') or ignore sidecar (kind 'ignore') of an image, by Ultralytics' rule."""
    parts = list(image.parts)
    if "images" not in parts[:-1]:
        raise InputError(f"{image}: image path has no 'images' folder, so it has no YOLO {kind} path")
    i = len(parts) - 2 - parts[-2::-1].index("images")  # the last 'images' folder, never the file name
    parts[i] = kind
    return Path(*parts).with_suffix(".txt")


def _one_label_each(images: list[Path]) -> list[Path]:
    """`images`, unless two files share one label file (same folder and stem): an InputError naming both."""
    seen: dict[Path, Path] = {}
    for p in images:
        if seen.setdefault(p.with_suffix(""), p) != p:
            raise InputError(f"{seen[p.with_suffix('')]} and {p} share one label file ({p.stem}.txt): "
                             f"rename or remove one")
    return images


def list_images(directory: Path) -> dict[str, Path]:
    """Images directly inside `directory`, by file stem (none when it does not exist)."""
    if not directory.is_dir():
        return {}
    found = [p for p in sorted(directory.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    return {p.stem: p for p in _one_label_each(found)}


def split_folders(root: Path) -> list[Path]:
    """The ROOT/{images,labels,ignore}/<split> folders that exist."""
    return [p for kind in KINDS if (root / kind).is_dir() for p in sorted((root / kind).iterdir()) if p.is_dir()]


def foreign_files(root: Path, stems: set[str]) -> list[Path]:
    """Images and .txt files in ROOT's split folders whose stem is not in `stems`: another run's output."""
    return [p for folder in split_folders(root) for p in sorted(folder.iterdir())
            if p.suffix.lower() in (IMAGE_SUFFIXES if folder.parent.name == "images" else (".txt",))
            and not p.name.startswith(".") and p.stem not in stems]


def open_image(path: Path):
    """PIL's own Image.open(path), never Ultralytics' wrapper of it."""
    from PIL import Image

    # once imported, Ultralytics wraps Image.open to pip-install a HEIF plugin whenever PIL cannot identify a file:
    # a data tool must not install packages because a file is not an image

    patches = sys.modules.get("ultralytics.utils.patches")
    return getattr(patches, "_image_open", Image.open)(path)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) as Ultralytics decodes it (EXIF-rotated); an image it would drop is an InputError naming it."""
    from PIL import UnidentifiedImageError

    try:
        with open_image(path) as im:
            im.verify()  # chunk CRCs of a PNG, structure of others; JPEG data is checked by its end marker below
        with open_image(path) as im:  # a verified image is spent: reopen it for the header
            fmt, (width, height) = im.format, im.size
            if im.getexif().get(0x0112) in (5, 6, 7, 8):  # EXIF orientations that rotate by 90 degrees
                width, height = height, width
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        raise InputError(f"{path}: unreadable image: {e}") from e
    if fmt in ("JPEG", "MPO"):
        with open(path, "rb") as f:
            f.seek(-2, 2)
            if f.read() != b"\xff\xd9":
                raise InputError(f"{path}: truncated JPEG (no end marker); Ultralytics would rewrite or drop it")
    if min(width, height) < MIN_SIDE:
        raise InputError(f"{path}: image is {width}x{height} px; Ultralytics drops images under {MIN_SIDE} px a side")
    return width, height


@dataclass
class Annotated:
    """An image with its size (as Ultralytics decodes it), labels and ignored regions in pixels, all checked."""

    path: Path
    width: int
    height: int
    boxes: list[Labelled]
    regions: list[Box]


def read_annotated(image: Path, nc: int | None = None) -> Annotated:
    """An image and its label file and ignore sidecar, each checked (InputError naming the file, and line)."""
    width, height = image_size(image)
    return Annotated(image, width, height, read_labelled(label_path(image), width, height, nc),
                     to_corners(read_regions(label_path(image, "ignore")), width, height))


# ---- label files and ignore sidecars -----------------------------------------------------------------------------

def _rows(path: Path, columns: int, form: str) -> tuple[np.ndarray, list[str]]:
    """The rows of a label-style file with the 'file:line' of each; the one parser of YOLO label text."""
    rows, where = [], []
    if path.is_file():
        text = path.read_bytes().decode("utf-8-sig", errors="replace")  # a BOM is fine, as for Ultralytics
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = [float(v) for v in line.split()]
            except ValueError:
                row = []
            if len(row) != columns or not all(math.isfinite(v) for v in row):
                raise InputError(f"{path}:{n}: expected {columns} numbers '{form}', got {line.strip()!r}")
            box = row[-4:]
            if box[2] < 0 or box[3] < 0 or min(box) < -0.01 or max(box) > 1.01:  # Ultralytics' 1% tolerance
                raise InputError(f"{path}:{n}: box {line.split()[-4:]} is not normalised to the image "
                                 f"(cx cy w h in 0..1, w and h >= 0)")
            rows.append(row)
            where.append(f"{path}:{n}")
    return np.array(rows, dtype=float).reshape(-1, columns), where


def read_labels(path: Path, nc: int | None = None) -> np.ndarray:
    """A YOLO label file as rows `class cx cy w h` (normalised); class ids are whole numbers below `nc` (when given)."""
    rows, where = _rows(path, 5, "class cx cy w h")
    for c, w in zip(rows[:, 0].tolist(), where):
        if c != int(c) or c < 0 or (nc is not None and c >= nc):
            names = f"outside names (0..{nc - 1})" if nc is not None else "not a class index (0, 1, 2, ...)"
            raise InputError(f"{w}: class id {c:g} is {names}")
    return rows


def read_regions(path: Path) -> np.ndarray:
    """An ignore sidecar as rows `cx cy w h` (normalised)."""
    return _rows(path, 4, "cx cy w h")[0]


def to_corners(xywhn: np.ndarray, width: float, height: float) -> list[Box]:
    """Normalised `cx cy w h` rows as pixel (x1, y1, x2, y2) boxes."""
    return [((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
            for cx, cy, w, h in np.asarray(xywhn, dtype=float).reshape(-1, 4).tolist()]


def to_xywh(xywhn: np.ndarray, width: int, height: int) -> np.ndarray:
    """Normalised `cx cy w h` rows to pixel `x y w h` (top-left corner), COCO's box format."""
    b = np.asarray(xywhn, dtype=float).reshape(-1, 4) * np.array([width, height, width, height], dtype=float)
    return np.concatenate([b[:, :2] - b[:, 2:] / 2, b[:, 2:]], axis=1)


def read_labelled(path: Path, width: float, height: float, nc: int | None = None) -> list[Labelled]:
    """A YOLO label file as labelled pixel boxes."""
    rows = read_labels(path, nc)
    return list(zip((int(c) for c in rows[:, 0]), to_corners(rows[:, 1:], width, height)))


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


def write_sidecar(path: Path, text: str, on_change: Callable[[], None] | None = None) -> None:
    """Write an ignore sidecar, or remove a stale one when there are no regions (no regions = no file); `on_change`
    is called before the file changes."""
    if text:
        atomic_write_bytes(path, text, on_change)
    elif path.exists():
        if on_change is not None:
            on_change()
        path.unlink(missing_ok=True)


# ---- data.yaml and splits ----------------------------------------------------------------------------------------

@dataclass
class DataYaml:
    """An Ultralytics data YAML as read: its file, the parsed mapping, class names by id and the dataset root."""

    file: Path
    config: dict
    names: list[str]
    root: Path

    def entry(self, split: str) -> Path | None:
        """Where the single-folder entry of `split` points (None when absent or a list)."""
        value = self.config.get(split)
        return self.root / value if isinstance(value, str) else None

    def images(self, split: str) -> list[Path]:
        """Image paths of `split`: folders searched recursively, .txt files listing images, or a list of either."""
        if self.config.get(split) is None:
            splits = sorted(k for k in self.config if k not in NOT_SPLITS)
            raise InputError(f"{self.file}: no '{split}' split (has {splits})")
        entries = self.config[split] if isinstance(self.config[split], list) else [self.config[split]]
        images = [im.absolute() for e in entries for im in _images_of(self.root / e, f"{self.file}: {split}")]
        if not images:
            raise InputError(f"{self.file}: split '{split}' holds no images ({[str(self.root / e) for e in entries]})")
        return _one_label_each(images)


def read_data_yaml(data: Path | str, writer: str | None = None) -> DataYaml:
    """Read an Ultralytics data YAML; an InputError names the file when it is missing or has no usable names, or
    the command to rerun when an interrupted one left its dataset half-changed (unless that is `writer`'s kind,
    which finishes it)."""
    import yaml

    from .journal import check_finished

    data = Path(data)
    if not data.exists():  # a bare name of ours (VisDrone2019-DET.yaml), as `yolo train data=NAME` finds it
        from ..dataset_names import resolve_dataset_yaml

        data = Path(resolve_dataset_yaml(data))
    check_finished(data.parent, allow=writer)
    if not data.is_file():
        raise InputError(f"{data}: no such file")
    try:
        config = yaml.safe_load(data.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise InputError(f"{data}: not valid YAML: {e}") from e
    if not isinstance(config, dict) or not config.get("names"):
        raise InputError(f"{data}: a data YAML needs a 'names' mapping or list")
    names = config["names"]
    if isinstance(names, dict):
        if sorted(names) != list(range(len(names))):
            raise InputError(f"{data}: 'names' keys must be 0..{len(names) - 1}, got {sorted(names)}")
        names = [names[i] for i in range(len(names))]
    if not isinstance(names, list):
        raise InputError(f"{data}: 'names' must be a mapping or list, got {names!r}")
    root = Path(config.get("path") or data.parent)
    if not root.is_absolute() and not root.exists():  # as Ultralytics: in its datasets folder; else beside the YAML
        from ultralytics.utils import DATASETS_DIR

        root = DATASETS_DIR / root if (DATASETS_DIR / root).exists() else data.parent / root
    if root.resolve() != data.parent.resolve():
        check_finished(root, allow=writer)
    return DataYaml(data, config, [str(n) for n in names], root)


def load_data_yaml(data: Path | str, split: str) -> tuple[list[Path], list[str]]:
    """Image paths of `split` and class names from an Ultralytics data YAML."""
    cfg = read_data_yaml(data)
    return cfg.images(split), cfg.names


def _images_of(path: Path, where: str) -> list[Path]:
    """Images in a directory (recursively) or listed in a .txt file (paths relative to the file's folder)."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if path.suffix == ".txt" and path.is_file():
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        return [p if p.is_absolute() else (path.parent / p) for p in map(Path, lines)]
    raise InputError(f"{where}: {path} is neither a directory nor a .txt list of images")


def dataset_folders(cfg: DataYaml | None = None, out: Path | None = None) -> list[Path]:
    """Folders whose files a dataset reads as its own: the images, labels and ignore folders of `cfg`'s splits, and
    any folder named images, labels or ignore above `out` with a data.yaml beside it."""
    folders = []
    if out is not None:
        target = Path(out).resolve()
        folders += [a for a in (target, *target.parents) if a.name in KINDS and (a.parent / "data.yaml").is_file()]
    if cfg is not None:
        for key, value in cfg.config.items():
            entries = value if isinstance(value, list) else [value]
            if key in NOT_SPLITS or not all(isinstance(e, str) for e in entries):
                continue
            for path in ((cfg.root / e).resolve() for e in entries):
                if path.is_dir():  # a .txt list names images that lie elsewhere
                    folders.append(path)
                    if "images" in path.parts:
                        folders += [label_path(path / "x.jpg", kind).parent for kind in KINDS[1:]]
    return folders


def refuse_inside_dataset(out: Path, flag: str, cfg: DataYaml | None = None) -> None:
    """An InputError when the output folder `out` is or lies inside a folder a dataset reads (dataset_folders):
    an image or label file written there would be read as part of the dataset."""
    target = Path(out).resolve()
    for folder in dataset_folders(cfg, out):
        if target == folder or folder in target.parents:
            raise InputError(f"{flag} {out}: lies inside the dataset folder {folder}, so what it writes would be "
                             f"read as part of that dataset; choose a folder outside it")


def split_order(name: str) -> tuple[int, str]:
    """Sort key putting train, val, test first, as Ultralytics' data YAMLs list them."""
    return {"train": 0, "val": 1, "test": 2}.get(name, 3), name


def split_dirs(root: Path) -> list[str]:
    """Names of the splits of a YOLO dataset root (the directories under ROOT/images)."""
    images = root / "images"
    if not images.is_dir():
        raise InputError(f"{root}: not a YOLO dataset (no images/ directory)")
    return sorted(p.name for p in images.iterdir() if p.is_dir() and not p.name.startswith("."))


def write_data_yaml(root: Path, splits: dict[str, str], names: list[str]) -> Path:
    """Write ROOT/data.yaml for Ultralytics: absolute path, one entry per split, class names by id."""
    import yaml

    ordered = {k: splits[k] for k in sorted(splits, key=split_order)}
    data = {"path": str(root.resolve()), **ordered, "names": dict(enumerate(names))}
    path = root / "data.yaml"
    atomic_write_bytes(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


def add_split(data: Path, split: str, entry: str) -> None:
    """Add the line `split: entry` to a data YAML that lacks it, after the split before it; the rest stays as is."""
    text = data.read_text(encoding="utf-8")
    before = [s for s in ("train", "val", "test") if split_order(s) < split_order(split)]
    anchors = [m for s in before for m in re.finditer(rf"^{s}\s*:.*$", text, re.MULTILINE)]
    if anchors:  # right after the anchor line, before its line break
        end = max(m.end() for m in anchors)
        text = f"{text[:end]}\n{split}: {entry}{text[end:]}"
    else:
        sep = "\n" if text and not text.endswith("\n") else ""
        text = f"{text}{sep}{split}: {entry}\n"
    atomic_write_bytes(data, text)
