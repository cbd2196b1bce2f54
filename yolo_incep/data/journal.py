"""Changes of a dataset that take many steps (convert, split, tile, demo's data): what an interrupted one leaves.

A run that moves or writes many files cannot make them all appear at once. Before its first change it writes the
marker `ROOT/.yolo-incep-unfinished.json` (its kind and the command that finishes it) and moves `ROOT/data.yaml`
aside, and it undoes both only after its last change. So, however it ends (Ctrl-C, SIGTERM, SIGKILL, a full disk),
a half-changed dataset has no data.yaml for `yolo train` to read, and every command of ours that reads it refuses it
with the command to rerun; a rerun of the same kind finishes it. A run that changes nothing writes no marker.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..errors import InputError
from ..files import atomic_write_bytes

MARKER = ".yolo-incep-unfinished.json"
STASH = ".yolo-incep-unfinished.data.yaml"  # data.yaml while the change runs (split's is the user's own: kept as is)
PAST = {"convert": "converted", "split": "split", "tile": "tiled", "demo": "written"}


def _read(root: Path) -> dict | None:
    """The marker of an unfinished change in ROOT, or None."""
    try:
        doc = json.loads((root / MARKER).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):  # a marker is written atomically: unreadable means someone else's file
        doc = {}
    return doc if isinstance(doc, dict) else {}


def check_finished(root: Path, allow: str | None = None) -> None:
    """An InputError naming the command to rerun when an interrupted change left ROOT half-changed (a change of the
    kind `allow` may go on: it is the writer about to finish it)."""
    doc = _read(Path(root))
    if doc is None or (allow is not None and doc.get("kind") == allow):
        return
    kind = str(doc.get("kind", "a yolo-incep command"))
    raise InputError(f"{root}: an interrupted `{kind}` left this dataset half {PAST.get(kind, 'changed')}; rerun "
                     f"it to finish: {doc.get('command', '(the command is unknown)')}")


class Journal:
    """One writer's change of ROOT (hold ROOT's folder_lock around it): `begin` before the first change, `done`
    after the last. Opening it refuses a change of another kind left unfinished, and takes over one of its own."""

    def __init__(self, root: Path, kind: str, command: str):
        self.root, self.kind, self.command = Path(root), kind, command
        check_finished(self.root, allow=kind)
        self.started = _read(self.root) is not None  # an interrupted run of ours: this one finishes it
        self.restore()  # the writer reads data.yaml as it was; `begin` puts it aside again

    @property
    def data_yaml(self) -> Path:
        return self.root / "data.yaml"

    def begin(self) -> None:
        """Before a change: the marker, then data.yaml aside (nothing trains on the dataset until `done`)."""
        if not self.started:
            atomic_write_bytes(self.root / MARKER, json.dumps({"kind": self.kind, "command": self.command}) + "\n")
            self.started = True
        if self.data_yaml.is_file():
            os.replace(self.data_yaml, self.root / STASH)

    def restore(self) -> None:
        """data.yaml back from where `begin` put it, unless a new one was written meanwhile."""
        stash = self.root / STASH
        if stash.is_file():
            if self.data_yaml.exists():
                stash.unlink()
            else:
                os.replace(stash, self.data_yaml)

    def done(self) -> None:
        """After the last change (and a new data.yaml, if the writer writes one): data.yaml back, marker gone."""
        self.restore()
        (self.root / MARKER).unlink(missing_ok=True)
        self.started = False


class NewSplits:
    """The split folders a writer creates: written under a hidden name (`.<split>.partial`) and moved into place
    after every file, the images folder last, in one rename. Ultralytics runs a dataset YAML's `download:` step (our
    converter, for datasets/*.yaml) only while the val folder is missing: a half-converted val must never exist."""

    def __init__(self, root: Path, splits: list[str], journal: Journal):
        self.root, self.journal = Path(root), journal
        self.new = [s for s in sorted(splits, key=lambda s: s == "val") if not (self.root / "images" / s).exists()]
        staging = {self.staged(s) for s in self.new}
        for kind in ("images", "labels", "ignore"):  # a killed run's staging of a split this run does not create
            for folder in sorted((self.root / kind).glob(".*.partial")):
                if folder.name not in staging and folder.is_dir():
                    journal.begin()
                    shutil.rmtree(folder)

    @staticmethod
    def staged(split: str) -> str:
        return f".{split}.partial"

    def folder(self, split: str) -> Path:
        """Where the images of `split` are written (labels and sidecars: beside them, by the label-path rule)."""
        return self.root / "images" / (self.staged(split) if split in self.new else split)

    def finish(self) -> None:
        """Move every staged split into place, val last; each split's labels and sidecars before its images."""
        for split in self.new:
            for kind in ("labels", "ignore", "images"):
                staged, final = self.root / kind / self.staged(split), self.root / kind / split
                if not staged.is_dir():
                    continue
                if kind == "images":  # did not exist when the run began, and the run holds the folder's lock
                    os.rename(staged, final)
                    continue
                final.mkdir(exist_ok=True)  # labels of a split without images are read by nobody: merged by file
                for f in staged.iterdir():
                    os.replace(f, final / f.name)
                staged.rmdir()
