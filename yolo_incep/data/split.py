"""Sequence-aware train/val split: VisDrone frames of one sequence are near-duplicates, so whole sequences go to val.

`yolo-incep split ROOT --val-fraction F --seed S` re-splits the images of ROOT's train and val splits together
(the same seed always gives the same split, and a rerun moves nothing). Labels and sidecars are checked first, as
`tile` checks them. Moving many files cannot be atomic: while they move, the dataset carries data/journal.py's marker
and its data.yaml lies aside, so an interrupted run is refused by every reader and finished by its rerun.
The official VisDrone val split is already sequence-disjoint from train: this is for data that has none.
ROOT/data.yaml is the user's: it is left as written, except for a `val: images/val` line added when it has no val.
A data.yaml whose train or val points elsewhere (a tile output's untiled val, say) is refused, not rewritten.
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
from collections.abc import Iterable
from pathlib import Path

from ..errors import InputError
from ..files import check_writable, folder_lock, remove_stale_temps
from .journal import Journal
from .yolo import KINDS, add_split, label_path, list_images, read_annotated, read_data_yaml, split_dirs


def sequence_id(stem: str) -> str:
    """VisDrone file names are '<sequence>_<frame>_d_<index>': the sequence is the first field."""
    return stem.split("_", 1)[0]


def check_fraction(val_fraction: float) -> None:
    """A val fraction must leave both splits non-empty."""
    if not 0.0 < val_fraction < 1.0:
        raise InputError(f"--val-fraction must be between 0 and 1 (exclusive), got {val_fraction}")


def split_by_sequence(stems: Iterable[str], val_fraction: float, seed: int = 0) -> set[str]:
    """The stems that go to val: whole sequences, shuffled by `seed`, until they hold `val_fraction` of the images."""
    check_fraction(val_fraction)
    by_sequence: dict[str, list[str]] = {}
    for stem in sorted(set(stems)):
        by_sequence.setdefault(sequence_id(stem), []).append(stem)
    if len(by_sequence) < 2:
        raise InputError(f"a sequence split needs at least 2 sequences, found {len(by_sequence)}")
    order = sorted(by_sequence)
    random.Random(seed).shuffle(order)
    target = val_fraction * sum(len(v) for v in by_sequence.values())
    val: set[str] = set()
    for seq in order[:-1]:  # the last sequence always stays in train
        if len(val) >= target:
            break
        val.update(by_sequence[seq])
    return val


def _files_of(root: Path, split: str, stem: str, image: Path | None) -> list[Path]:
    """The label, ignore sidecar and image of one stem in one split, those that exist, the image last."""
    # the image moves last: a rerun after an interruption still finds it, with whatever is left beside it
    place = image or root / "images" / split / f"{stem}.txt"  # any suffix: the label rule replaces it
    return [p for p in (label_path(place), label_path(place, "ignore"), image) if p is not None and p.exists()]


def _check_entries(root: Path) -> tuple[list[str], int]:
    """The splits ROOT/data.yaml lacks and its class count; an InputError when its path: is another folder (a copy
    of a dataset) or train or val points anywhere but ROOT/images/<split>."""
    cfg = read_data_yaml(root / "data.yaml", writer="split")
    if cfg.root.resolve() != root.resolve():
        raise InputError(f"{cfg.file}: path: {cfg.config.get('path')!r} is {cfg.root.resolve()}, not this dataset's "
                         f"folder {root.resolve()} (a copy keeps its original's path:); set 'path: {root.resolve()}' "
                         f"or remove the path: line")
    lacking = []
    for s in ("train", "val"):
        if s not in cfg.config:
            lacking.append(s)
        elif (entry := cfg.entry(s)) is None or entry.resolve() != (root / "images" / s).resolve():
            hint = (" (a tile output refers to its source's untiled val: split the source, then tile it again)"
                    if s == "val" else "")
            raise InputError(f"{cfg.file}: {s} is {cfg.config[s]!r}, not images/{s}, so a split by sequence would not "
                             f"be what it trains on{hint}; set '{s}: images/{s}' or remove the line to split anyway")
    return lacking, len(cfg.names)


def command(root: Path, val_fraction: float, seed: int) -> str:
    """The `yolo-incep split` command line of these settings (what an interrupted run asks to rerun)."""
    return shlex.join(["yolo-incep", "split", str(root), "--val-fraction", f"{val_fraction:g}", "--seed", str(seed)])


def resplit(root: Path, val_fraction: float, seed: int = 0) -> dict[str, int]:
    """Move ROOT's train+val images (with labels and sidecars) so that val holds whole sequences; counts per split."""
    check_fraction(val_fraction)
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder")
    with folder_lock(root):  # one writer: two splits at once would move one image into both splits
        journal = Journal(root, "split", command(root, val_fraction, seed))  # data.yaml back, if a run left it aside
        if not (root / "data.yaml").is_file():
            raise InputError(f"{root / 'data.yaml'}: no such file")
        return _resplit(root, val_fraction, seed, journal)


def _resplit(root: Path, val_fraction: float, seed: int, journal: Journal) -> dict[str, int]:
    lacking, nc = _check_entries(root)
    if "train" not in split_dirs(root):
        raise InputError(f"{root}: no images/train split to split")
    splits = ("train", "val")
    check_writable([root, *(root / kind / s for kind in KINDS for s in splits)])  # before moving anything
    remove_stale_temps([root])  # a killed run's half-written data.yaml
    images = {s: list_images(root / "images" / s) for s in splits}  # listed once, not once per file
    for s in splits:  # every image, label and sidecar checked, as tile checks them, before anything moves
        for path in images[s].values():
            read_annotated(path, nc)
    stems = set(images["train"]) | set(images["val"])
    val = split_by_sequence(stems, val_fraction, seed)
    moves = [(f, root / f.parent.parent.name / target / f.name)
             for stem in sorted(stems) for target in ["val" if stem in val else "train"]
             for source in splits if source != target
             for f in _files_of(root, source, stem, images[source].get(stem))]
    for f, dest in moves:  # labels move with their image; a rerun completes an interrupted move
        journal.begin()  # the first time: the marker, and data.yaml aside until every file has moved
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(f, dest)
    journal.restore()
    for s in lacking:
        add_split(root / "data.yaml", s, f"images/{s}")
    journal.done()
    return {s: len(list_images(root / "images" / s)) for s in splits}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `yolo-incep split`."""
    parser.add_argument("root", type=Path, help="converted dataset root (images/, labels/, ignore/, data.yaml)")
    parser.add_argument("--val-fraction", type=float, required=True, help="share of images for val, e.g. 0.2")
    parser.add_argument("--seed", type=int, default=0, help="shuffle seed for the sequence order (default 0)")


def run(args: argparse.Namespace) -> int:
    """Re-split ROOT by sequence and print the image counts."""
    counts = resplit(args.root, args.val_fraction, args.seed)
    print(f"split {args.root} by sequence (seed {args.seed}): " + ", ".join(f"{k} {v} images" for k, v in counts.items()))
    return 0
