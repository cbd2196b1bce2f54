"""Shared file helpers: atomic writes, image links, writability checks, stale temp files; pixel-box geometry."""

from __future__ import annotations

import contextlib
import filecmp
import glob
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import InputError

SMALL_AREA = 32 * 32  # COCO's "small" objects: area under 32x32 px

Box = tuple[float, float, float, float]  # a box in pixels: (x1, y1, x2, y2)
TEMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # our temp files: '.<name>.<8 random chars>.tmp' beside <name>


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
    tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}.tmp")  # a name TEMP matches, as mkstemp's do
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


def clip_box(box: Box, width: float, height: float) -> Box:
    """The part of `box` inside the image [0, width] x [0, height] (may have zero area)."""
    x1, y1, x2, y2 = box
    return (min(max(x1, 0.0), width), min(max(y1, 0.0), height),
            min(max(x2, 0.0), width), min(max(y2, 0.0), height))


def box_area(box: Box) -> float:
    """Area of an (x1, y1, x2, y2) box; zero when degenerate."""
    return max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)


def remove_stale_temps(directories: Iterable[Path]) -> int:
    """Remove temp files a killed run of ours left in `directories` (the writers clean up after any other failure)."""
    removed = 0
    for d in directories:
        if d.is_dir():
            for p in d.iterdir():
                if TEMP.match(p.name) and (p.is_file() or p.is_symlink()):
                    p.unlink(missing_ok=True)
                    removed += 1
    return removed


def check_writable(paths: Iterable[Path]) -> None:
    """An InputError naming the first of `paths` (or its nearest existing parent) where no file can be created."""
    probed: set[Path] = set()
    for path in paths:
        d = Path(path).absolute()
        while not d.exists() and d != d.parent:
            d = d.parent
        if d in probed:
            continue
        probed.add(d)
        try:  # try it: permission bits, read-only mounts and immutable folders all show here, and root is no exception
            fd, tmp = tempfile.mkstemp(dir=d, prefix=".write-check.", suffix=".tmp")
            os.close(fd)
            os.unlink(tmp)
        except OSError as e:
            raise InputError(f"{d}: cannot write there ({e.strerror}); nothing was changed") from None
