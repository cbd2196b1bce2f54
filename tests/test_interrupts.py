"""Every writing command interrupted at several points, by SIGINT, SIGTERM and SIGKILL (issue 33): the dataset is as
before or as after, or it carries the journal's marker, has no data.yaml for `yolo train`, is refused by every
command that reads it with the command to rerun, and that command finishes it. Outputs of one file are old or new.

The interruption is a real signal the child process sends itself just before its Nth change of a file (os.replace,
os.rename or os.unlink: every write of ours ends in one), so no test hook lives in the package.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_bad_input import visdrone_source
from yolo_incep.data.journal import MARKER

KILLER = """
import atexit, os, signal, sys
n, sig = int(sys.argv[1]), getattr(signal, sys.argv[2])
# a process started in the background by a non-interactive shell (CI, `cmd &`) inherits SIGINT ignored, and Python
# then installs no KeyboardInterrupt handler: restore Ctrl-C's, as a terminal user has it
signal.signal(signal.SIGINT, signal.default_int_handler)
count = [0]
def wrap(fn):
    def change(*args, **kwargs):
        count[0] += 1
        if count[0] == n:
            os.kill(os.getpid(), sig)
        return fn(*args, **kwargs)
    return change
os.replace, os.rename, os.unlink = wrap(os.replace), wrap(os.rename), wrap(os.unlink)
atexit.register(lambda: print(f"changes: {count[0]}", file=sys.stderr))
from yolo_incep.cli import main
sys.exit(main(sys.argv[3:]))
"""
SIGNALS = {"SIGINT": 130, "SIGTERM": 143, "SIGKILL": -9}


def cli(argv: list, env: dict, kill_at: int = 0, sig: str = "SIGKILL") -> tuple[int, str, int]:
    """Run `yolo-incep ARGV` in a child killed by `sig` at its `kill_at`-th change (0: never); (rc, stderr, changes)."""
    proc = subprocess.run([sys.executable, "-c", KILLER, str(kill_at), sig, *map(str, argv)], env=env,
                          capture_output=True, text=True, timeout=300)
    changes = [int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("changes: ")]
    return proc.returncode, proc.stderr, changes[0] if changes else -1


def visible(root: Path) -> dict[str, str]:
    """sha256 of every file a reader sees (none under a dot-named folder or file: locks, temp files, staging)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)}


def kill_points(total: int) -> list[tuple[int, str]]:
    """Where to interrupt a run of `total` changes: first, second, middle, last, each signal at least once."""
    points = sorted({1, 2, max(1, total // 2), max(1, total // 2 + 1), total})
    sigs = ["SIGKILL", "SIGINT", "SIGTERM"]
    return [(n, sigs[i % 3]) for i, n in enumerate(points)] + [(total, "SIGKILL"), (max(1, total // 2), "SIGINT")]


def check_interrupted(root: Path, before: dict, after: dict, argv: list, env: dict, run_cli, reader: list) -> str:
    """An interrupted writer's dataset ROOT: 'before', 'after' or 'journal' (marked, refused, finished by a rerun)."""
    state = visible(root)
    if not (root / MARKER).exists():
        assert state in (before, after), "a dataset neither as before nor as after, and no journal says so"
        return "before" if state == before else "after"
    assert not (root / "data.yaml").exists()  # nothing trains on it: `yolo train data=ROOT/data.yaml` finds none
    if not any(k.startswith("images/val/") for k in before):  # a new split folder appears whole (Ultralytics runs a
        # dataset YAML's download step, our converter, only while val is missing)
        val = {k: v for k, v in state.items() if k.startswith("images/val/")}
        assert val in ({}, {k: v for k, v in after.items() if k.startswith("images/val/")})
    rc, _, err = run_cli(*reader)
    assert rc == 2 and "an interrupted" in err and len(err.strip().splitlines()) == 1, err
    command = json.loads((root / MARKER).read_text())["command"]
    assert command in err and shlex.split(command)[:2] == ["yolo-incep", argv[0]]
    rc, err, _ = cli(shlex.split(command)[1:], env)  # the command the error names finishes it
    assert rc == 0, err
    assert visible(root) == after and not (root / MARKER).exists()
    return "journal"


def interrupt_everywhere(root: Path, env: dict, run_cli, make_before, argv: list, reader: list) -> None:
    """Run the writer whole once (its change count, 'after'), then from 'before' again, interrupted at each point."""
    make_before(root)
    before = visible(root)
    rc, err, total = cli(argv, env)
    assert rc == 0 and total > 3, err
    after = visible(root)
    seen = []
    for n, sig in kill_points(total):
        shutil.rmtree(root, ignore_errors=True)
        make_before(root)
        rc, err, _ = cli(argv, env, n, sig)
        assert rc == SIGNALS[sig] and "Traceback" not in err, (n, sig, err)
        seen.append(check_interrupted(root, before, after, argv, env, run_cli, reader))
    assert "journal" in seen, seen  # some kill fell inside the change: refused, then finished by its rerun


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return visdrone_source(tmp_path_factory.mktemp("interrupts") / "src", sequences=4, frames=3)


def converted(source: Path, root: Path, *args) -> None:
    from yolo_incep.data.visdrone import convert_visdrone

    convert_visdrone(source, root, *args, log=lambda _: None)


def test_convert_interrupted_anywhere_is_whole_or_refused(source, tmp_path, fresh_env, run_cli):
    root = tmp_path / "ds"
    interrupt_everywhere(root, fresh_env, run_cli, lambda r: None,
                         ["convert", "visdrone", source, root, "--val-fraction", "0.5", "--seed", "1"],
                         ["tile", root, tmp_path / "tiles", "--size", "32"])


def test_a_reconversion_interrupted_anywhere_is_whole_or_refused(source, tmp_path, fresh_env, run_cli):
    root = tmp_path / "ds"  # another val split of the same source: images move between existing splits
    interrupt_everywhere(root, fresh_env, run_cli, lambda r: converted(source, r, 0.5, 1),
                         ["convert", "visdrone", source, root, "--val-fraction", "0.5", "--seed", "2"],
                         ["split", root, "--val-fraction", "0.5"])


def test_split_interrupted_anywhere_is_whole_or_refused(source, tmp_path, fresh_env, run_cli):
    root = tmp_path / "ds"
    interrupt_everywhere(root, fresh_env, run_cli, lambda r: converted(source, r, 0.5, 1),
                         ["split", root, "--val-fraction", "0.5", "--seed", "2"],
                         ["convert", "visdrone", source, root])


def test_tile_interrupted_anywhere_is_whole_or_refused(source, tmp_path, fresh_env, run_cli):
    src, root = tmp_path / "ds", tmp_path / "tiles"
    converted(source, src, 0.5, 1)
    def before(r: Path) -> None:  # an earlier tiling of another size: --overwrite replaces it
        from yolo_incep.data.tile import tile_dataset

        tile_dataset(src, r, size=40)
    interrupt_everywhere(root, fresh_env, run_cli, before, ["tile", src, root, "--size", "32", "--overwrite"],
                         ["compare", "yolov8n.yaml", "--data", root / "data.yaml", "--out", tmp_path / "cmp"])


def test_demo_interrupted_while_writing_its_data_is_refused(tmp_path, fresh_env, run_cli):
    from yolo_incep.demo import make_synthetic_dataset

    out = tmp_path / "demo"
    make_synthetic_dataset(out / "data", imgsz=32, seed=0)  # an earlier demo's data, of another seed
    rc, err, _ = cli(["demo", "--out", out, "--imgsz", "32", "--seed", "1"], fresh_env, 20, "SIGKILL")
    assert rc == -9, err
    assert (out / "data" / MARKER).is_file() and not (out / "data/data.yaml").exists()
    rc, _, err = run_cli("compare", "yolov8n.yaml", "--data", out / "data/data.yaml", "--out", tmp_path / "cmp")
    assert rc == 2 and "an interrupted `demo` left this dataset half written; rerun it to finish: yolo-incep demo" \
        in err, err


def test_compare_interrupted_never_leaves_two_runs_in_its_folder(data, tmp_path, fresh_env, run_cli):
    from yolo_incep.eval import coco, predictions

    images, _ = coco.load_data_yaml(data, "val")
    files = {}
    for k, name in enumerate("abc"):
        files[name] = tmp_path / f"{name}.json.gz"
        dets = [{"image_id": i, "category_id": 1, "bbox": [4.0 + k, 4.0, 20.0, 20.0], "score": 0.9}
                for i in range(1, len(images) + 1)]
        predictions.write(files[name], dets, images, {"slice": 0})
    out = tmp_path / "out"
    common = ["--data", data, "--out", out, "--resamples", "5"]

    def runs() -> set[str]:
        rows = {p.name[len("predictions_"):-len(".json")] for p in out.glob("predictions_*.json")}
        if (out / "report.json").is_file():
            rows |= {m["name"] for m in json.loads((out / "report.json").read_text())["models"]}
        return rows

    # 1, 2: removing the earlier run's files; 12: writing the new one's (SIGTERM: clean-up runs, SIGKILL not)
    for n, sig in [(1, "SIGKILL"), (2, "SIGKILL"), (12, "SIGTERM")]:
        assert run_cli("compare", f"a={files['a']}", f"b={files['b']}", *common)[0] == 0 and runs() == {"a", "b"}
        rc, err, _ = cli(["compare", f"c={files['c']}", *common], fresh_env, n, sig)
        assert rc == SIGNALS[sig] and "Traceback" not in err, err
        assert runs() in ({"a", "b"}, {"a"}, {"b"}, set(), {"c"}), (n, sig, runs())  # one run's files, never two
    assert run_cli("compare", f"c={files['c']}", *common)[0] == 0 and runs() == {"c"}


def test_single_file_outputs_interrupted_are_old_or_new(tmp_path, fresh_env, run_cli):
    import timm
    import torch

    ckpt = tmp_path / "atto.pth"
    torch.save(timm.create_model("inception_next_atto", pretrained=False).state_dict(), ckpt)
    for argv, out in [(["swap", "yolov8n.yaml", "-o"], tmp_path / "m.yaml"),
                      (["load-weights", "yolov8n-inceptionnext.yaml", ckpt, "-o"], tmp_path / "m.pt")]:
        out.write_bytes(b"an earlier output")
        rc, err, _ = cli([*argv, out], fresh_env, 1, "SIGKILL")  # just before its one replace
        assert rc == -9 and out.read_bytes() == b"an earlier output", err
        rc, _, err = run_cli(*argv, out)
        assert rc == 0 and out.read_bytes() != b"an earlier output", err
        assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(f".{out.name}")]  # its temp file too
