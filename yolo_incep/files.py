"""Files written safely: atomic writes, copies that never write through to the source, stale temp files,
writability checks, and one writer per output folder (or file)."""

from __future__ import annotations

import contextlib
import filecmp
import glob
import os
import re
import shlex
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from .errors import InputError

try:
    import fcntl
except ImportError:  # Windows: no flock and no clones; copies are plain and outputs are not locked there
    fcntl = None

TEMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # our temp files: '.<name>.<8 random chars>.tmp' beside <name>
LOCK_NAME = ".yolo-incep.lock"  # inside a locked folder; a dot file, so no command counts it as another run's output
_FICLONE = 0x40049409  # Linux ioctl: make a file share another's blocks copy-on-write (btrfs, XFS, bcachefs)
_held: dict[Path, int] = {}  # lock files this process holds, with their nesting depth (demo -> compare, bench -> tile)


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


def atomic_write_bytes(path: Path, data: bytes | str, on_change: Callable[[], None] | None = None) -> bool:
    """Write `data` (str as UTF-8) atomically; skip (return False) when the file already holds it. `on_change` is
    called before the file changes (a dataset writer's Journal.begin)."""
    data = data.encode("utf-8") if isinstance(data, str) else data
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return False
    if on_change is not None:
        on_change()
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return True


def _clone_or_copy(src: Path, dst: Path) -> None:
    """Copy `src` to the new file `dst`: a copy-on-write clone where the filesystem has them (instant, no space)."""
    if fcntl is not None:
        with open(src, "rb") as s, open(dst, "wb") as d:
            try:
                fcntl.ioctl(d.fileno(), _FICLONE, s.fileno())
                return
            except OSError:  # ext4, tmpfs, another filesystem, not Linux: a plain copy
                pass
    shutil.copyfile(src, dst)


def copy_file(src: Path, dst: Path, link: bool = False, on_change: Callable[[], None] | None = None) -> None:
    """Make `dst` hold the bytes of `src`, atomically and idempotently.

    By default a copy (copy-on-write clone where possible): an in-place edit of `dst` (an editor, an EXIF-stripping
    script) can never reach `src`. With `link`, a hard link (else a copy): no space used, but the two names are one
    file, so an in-place edit of either edits both. A link left by an earlier `link` run is replaced by a copy.
    `on_change` is called before `dst` changes.
    """
    if dst.exists():
        same = os.path.samefile(src, dst)
        if same if link else (not same and not dst.is_symlink() and filecmp.cmp(src, dst, shallow=False)):
            return
    if on_change is not None:
        on_change()
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}.tmp")  # a name TEMP matches, as mkstemp's do
    try:
        if link:
            try:
                os.link(src, tmp)
            except OSError:  # another filesystem, or links not allowed
                _clone_or_copy(src, tmp)
        else:
            _clone_or_copy(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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


# ---- one writer per output ----------------------------------------------------------------------------------------
# flock, not a pid file: the kernel drops the lock when its process ends, however it ends (SIGKILL too; a forked
# child, e.g. a dataloader worker, keeps it until it exits as well), so a killed run never leaves its folder stuck
# and no stale pid is mistaken for a live run. The file only tells the next run whom it waits for.

def this_command() -> str:
    """This process's command line, as the other run's error message shows it."""
    return shlex.join([Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]])


def _holder(fd: int) -> str:
    """'pid N: COMMAND' of the process holding the lock file open as `fd`, as far as it has written it yet."""
    text = os.pread(fd, 4096, 0).decode("utf-8", errors="replace")
    pid, _, command = text.partition("\n")
    return f"pid {pid}: {command.strip()}" if pid.strip().isdigit() else "a run that is just starting"


def _open_locked(lock: Path, shown: str, command: str, wait: bool) -> int:
    """Open and flock `lock` (created if needed); an InputError naming `shown` and the holder when it is taken."""
    while True:
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileNotFoundError:  # another run removed its emptied folder in between: make it again
            continue
        except (FileExistsError, NotADirectoryError):
            raise InputError(f"{shown}: not a writable folder (a file is in the way)") from None
        except OSError as e:
            raise InputError(f"{shown}: cannot write there ({e.strerror}); nothing was changed") from None
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = _holder(fd)
            if not wait:
                os.close(fd)
                raise InputError(f"{shown}: in use by another run ({other}); wait for it to end or choose another "
                                 f"output") from None
            print(f"waiting for {shown}: in use by another run ({other})", file=sys.stderr, flush=True)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
        try:  # the holder may have removed the file before letting go: a lock on a removed file locks nothing
            current = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n{command}\n".encode())  # at offset 0: nothing was written or read yet
            return fd
        os.close(fd)


@contextlib.contextmanager
def _locked(lock: Path, folder: Path, shown: str, command: str | None, wait: bool) -> Iterator[Path]:
    lock = lock.absolute()
    if lock in _held:  # this process holds it already (a command calling another): one writer still
        _held[lock] += 1
        try:
            yield folder
        finally:
            _held[lock] -= 1
        return
    created = []  # folders made for the lock, removed again when the run leaves them empty (bad input: no trace)
    d = lock.parent
    while not d.exists() and d != d.parent:
        created.append(d)
        d = d.parent
    fd = _open_locked(lock, shown, command or this_command(), wait)
    _held[lock] = 1
    try:
        yield folder
    finally:
        del _held[lock]
        lock.unlink(missing_ok=True)  # while still held: whoever opened the old file sees it gone and retries
        os.close(fd)
        for d in created:
            try:
                d.rmdir()
            except OSError:  # not empty: the run's output, or another run's lock
                break


def folder_lock(folder: Path, command: str | None = None, wait: bool = False, flag: str = ""):
    """Hold `folder` (created if needed) as this run's output: a second run fails at once with an InputError
    naming the folder (after `flag`, e.g. '--out') and this run's pid and `command` (default: this process's
    command line), or with `wait` waits for it. The lock file `LOCK_NAME` inside goes when the run ends; folders
    made for it go too when the run leaves them empty."""
    folder = Path(folder)
    shown = f"{flag} {folder}".strip()
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{shown}: exists and is not a folder")
    return _locked(folder / LOCK_NAME, folder, shown, command, wait)


def path_lock(path: Path, command: str | None = None, wait: bool = False, flag: str = ""):
    """As folder_lock, for an output file or a folder that is removed and rebuilt: the lock file lies beside it
    (`.NAME.lock`), so writers of other files in the same folder (the working directory) do not wait for it."""
    path = Path(path)
    return _locked(path.parent / f".{path.name}.lock", path, f"{flag} {path}".strip(), command, wait)
