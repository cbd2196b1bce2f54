"""Bad input and concurrent runs, command by command (issue 27): a table of (command, input, exit code, message),
every input's checksum unchanged and nothing written; and for every writing command a second run into an output
in use by another process (a real one, holding the lock as a run does) fails at once, naming the folder and the run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from helpers import run_process
from yolo_incep.data.yolo import load_data_yaml
from yolo_incep.files import LOCK_NAME

BAD_ROW = {"nc": 2, "backbone": [[-1, 1, "Conv", [16, 3, 2]], [-1, 3, "C2f", ["abc", True]]],
           "head": [[[-1], 1, "Detect", ["nc"]]]}


def checksums(*paths: Path) -> dict[str, str]:
    """sha256 of every file under `paths` (files or folders), by path."""
    files = [f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*"))) if f.is_file()]
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def visdrone_source(root: Path, sequences: int = 3, frames: int = 2) -> Path:
    """A tiny VisDrone2019-DET-train/ (64x48 px frames, one car and one ignored region each); returns `root`."""
    src = root / "VisDrone2019-DET-train"
    (src / "images").mkdir(parents=True)
    (src / "annotations").mkdir()
    rng = np.random.default_rng(0)
    for s in range(1, sequences + 1):
        for f in range(1, frames + 1):
            stem = f"{s:07d}_{f:05d}_d_0000001"
            cv2.imwrite(str(src / "images" / f"{stem}.jpg"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
            (src / "annotations" / f"{stem}.txt").write_text("5,6,12,10,1,4,0,0\n30,20,8,8,0,0,0,0\n")
    return root


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> dict[str, Path]:
    """Inputs of the table: a VisDrone source, its conversion (split 50/50), a model YAML with a bad row argument."""
    from yolo_incep.data.visdrone import convert_visdrone

    root = tmp_path_factory.mktemp("bad_input")
    src = visdrone_source(root / "src")
    convert_visdrone(src, root / "yolo", val_fraction=0.5, seed=0, log=lambda _: None)
    (root / "bad.yaml").write_text(yaml.safe_dump(BAD_ROW, sort_keys=False))
    incep = {**BAD_ROW, "backbone": [BAD_ROW["backbone"][0], [-1, 3, "C2fIncep", ["abc", True]]]}
    (root / "bad-incep.yaml").write_text(yaml.safe_dump(incep, sort_keys=False))
    typo = {**BAD_ROW, "backbone": [*BAD_ROW["backbone"][:1], [-1, 1, "C2fIncep", [32, True]],
                                    [-1, 1, "C3k2Incepp", [32, False]]]}
    (root / "typo-incep.yaml").write_text(yaml.safe_dump(typo, sort_keys=False))
    paths = {"root": root, "src": src, "split": src / "VisDrone2019-DET-train", "yolo": root / "yolo",
             "bad": root / "bad.yaml", "bad_incep": root / "bad-incep.yaml", "typo": root / "typo-incep.yaml",
             "out": root / "out"}
    label = sorted((root / "yolo/labels/train").iterdir())[0].name
    for name, row in BAD_LABELS.items():  # copies of the dataset with one bad label row: its own path: each
        paths[name] = _variant(root / "yolo", root / name)
        with open(paths[name] / "labels/train" / label, "a") as f:
            f.write(row + "\n")
    paths["empty_train"] = _variant(root / "yolo", root / "empty_train")
    for kind in ("images", "labels", "ignore"):
        for f in (paths["empty_train"] / kind / "train").iterdir():
            f.unlink()
    shutil.copytree(root / "yolo", root / "copied")  # `cp -r`: its data.yaml's path: is still the original's
    paths["copied"] = root / "copied"
    images, _ = load_data_yaml(root / "yolo/data.yaml", "val")
    (root / "plain").mkdir()
    (root / "plain/results.json").write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4],
                                                         "score": 0.5}]))  # no frame names, no gt.json beside it
    for field, value in (("slice", "abc"), ("params", "lots")):
        paths[f"info_{field}"] = root / f"info-{field}.json"
        doc = {"info": {field: value}, "images": [{"id": i, "file_name": p.name} for i, p in enumerate(images, 1)],
               "annotations": []}
        paths[f"info_{field}"].write_text(json.dumps(doc))
    return paths


BAD_LABELS = {"label_4_fields": "0 0.5 0.5 0.1", "label_class_99": "99 0.5 0.5 0.1 0.1",
              "label_outside": "0 1.5 0.5 0.1 0.1"}


def _variant(yolo: Path, root: Path) -> Path:
    """A copy of the converted dataset `yolo` at `root`, its data.yaml pointing at `root`."""
    shutil.copytree(yolo, root)
    (root / "data.yaml").write_text((yolo / "data.yaml").read_text().replace(str(yolo.resolve()), str(root.resolve())))
    return root


# (id, argv with {names} from ws, exit code, message fragment); every row's inputs are the whole ws folder
CASES = [
    ("swap-row-arg", ["swap", "{bad}", "-o", "{out}/x.yaml"], 2,
     "bad.yaml: layer row 1 (C2fIncep): bad arguments ['abc', True]"),
    ("swap-row-arg-of-ours", ["swap", "{bad_incep}", "-o", "{out}/x.yaml"], 2,
     "bad-incep.yaml: layer row 1 (C2fIncep): bad arguments ['abc', True]"),
    ("swap-shadows-zoo", ["swap", "yolov8n.yaml", "-o", "{out}/yolov8n-incep.yaml"], 2,
     "--output {out}/yolov8n-incep.yaml: is the name of yolo-incep's zoo model"),
    ("swap-shadows-stock", ["swap", "yolov8n.yaml", "-o", "{out}/yolov8s.yaml"], 2,
     "is the name of Ultralytics' model"),
    ("compare-imgsz-memory", ["compare", "yolov8n.yaml", "--data", "{yolo}/data.yaml", "--imgsz", "100000",
                              "--out", "{out}"], 2, "--imgsz 100000: 8 image(s) of 100000x100000 px need at least"),
    ("compare-conf-range", ["compare", "yolov8n.yaml", "--data", "{yolo}/data.yaml", "--conf", "2.0", "--out", "{out}"],
     2, "--conf 2.0: out of range (must be in [0, 1))"),
    ("demo-imgsz-memory", ["demo", "--imgsz", "100000", "--out", "{out}"], 2, "--imgsz 100000: 8 image(s)"),
    ("bench-sitting-minutes", ["bench", "--sitting-minutes", "-1", "--work", "{out}", "--out", "{out}/r"], 2,
     "--sitting-minutes -1: must be 0 (no limit) or more"),
    ("convert-dst-is-src", ["convert", "visdrone", "{split}", "{split}"], 2, "lies inside the source folder"),
    ("convert-dst-inside-src", ["convert", "visdrone", "{split}", "{split}/images/yolo"], 2,
     "lies inside the source folder"),
    ("convert-dst-inside-src-parent", ["convert", "visdrone", "{src}", "{split}/yolo"], 2,
     "lies inside the source folder"),
    # issue 33: outputs inside a dataset's folders
    ("compare-out-in-images", ["compare", "yolov8n.yaml", "--data", "{yolo}/data.yaml", "--out", "{yolo}/images/val"],
     2, "--out {yolo}/images/val: lies inside the dataset folder"),
    ("compare-out-in-labels", ["compare", "yolov8n.yaml", "--data", "{yolo}/data.yaml", "--out", "{yolo}/labels/val/r"],
     2, "--out {yolo}/labels/val/r: lies inside the dataset folder"),
    ("demo-out-in-images", ["demo", "--out", "{yolo}/images/train/demo"], 2, "lies inside the dataset folder"),
    ("tile-dst-in-labels", ["tile", "{yolo}", "{copied}/labels/x", "--size", "32"], 2,
     "DST {copied}/labels/x: lies inside the dataset folder"),
    ("convert-dst-in-images", ["convert", "visdrone", "{src}", "{yolo}/images/new"], 2,
     "DST {yolo}/images/new: lies inside the dataset folder"),
    # predictions bound to their frames, and their info typed
    ("compare-plain-results-without-gt", ["compare", "{root}/plain/results.json", "--data", "{yolo}/data.yaml",
                                          "--out", "{out}"], 2,
     "a plain results list names no images and no gt.json of compare's lies beside it"),
    ("compare-info-slice", ["compare", "{info_slice}", "--data", "{yolo}/data.yaml", "--out", "{out}"], 2,
     "info 'slice' must be a whole number >= 0 (0: whole images), got 'abc'"),
    ("compare-info-params", ["compare", "{info_params}", "--data", "{yolo}/data.yaml", "--out", "{out}"], 2,
     "info 'params' must be a whole number >= 0 or null, got 'lots'"),
    # labels checked by split as tile checks them; a source with an empty split; a copied dataset's path:
    ("split-label-4-fields", ["split", "{label_4_fields}", "--val-fraction", "0.5"], 2,
     "expected 5 numbers 'class cx cy w h', got '0 0.5 0.5 0.1'"),
    ("split-label-class-99", ["split", "{label_class_99}", "--val-fraction", "0.5"], 2,
     "class id 99 is outside names (0..9)"),
    ("split-label-outside", ["split", "{label_outside}", "--val-fraction", "0.5"], 2,
     "is not normalised to the image"),
    ("tile-label-class-99", ["tile", "{label_class_99}", "{out}", "--size", "32"], 2,
     "class id 99 is outside names (0..9)"),
    ("tile-empty-train", ["tile", "{empty_train}", "{out}", "--size", "32"], 2,
     "split(s) ['train'] hold no images, so there is nothing to tile there; choose --splits among ['val']"),
    ("split-copied-dataset", ["split", "{copied}", "--val-fraction", "0.5"], 2,
     "data.yaml: path: '{yolo}' is {yolo}, not this dataset's folder {copied} (a copy keeps its original's "
     "path:)"),
]
if not torch.backends.mps.is_available():
    CASES.append(("compare-device-mps", ["compare", "yolov8n.yaml", "--data", "{yolo}/data.yaml", "--device", "mps",
                                         "--out", "{out}"], 2, "--device mps: no such device on this machine"))
    CASES.append(("demo-device-mps", ["demo", "--device", "mps", "--out", "{out}"], 2,
                  "--device mps: no such device on this machine"))
if not torch.cuda.is_available():
    CASES.append(("demo-device-without-gpu", ["demo", "--device", "cuda:0", "--out", "{out}"], 2,
                  "--device cuda:0: no such device on this machine (torch sees 0 CUDA GPU(s)); use --device cpu"))
    CASES.append(("compare-device-without-gpu", ["compare", "yolov8n.yaml", "--data", "{yolo}/data.yaml", "--device",
                                                 "0", "--out", "{out}"], 2, "--device 0: no such device"))


@pytest.mark.parametrize("argv, code, fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(ws, run_cli, argv, code, fragment):
    names = {k: str(v) for k, v in ws.items()}
    before = checksums(ws["root"])
    rc, _, err = run_cli(*(a.format(**names) for a in argv))
    assert rc == code and fragment.format(**names) in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert checksums(ws["root"]) == before and not ws["out"].exists()


@pytest.mark.parametrize("model, message", [
    ("bad_incep", "bad-incep.yaml: layer row 1 (C2fIncep): bad arguments ['abc', True]"),
    ("typo", "typo-incep.yaml: layer row 2: unknown layer 'C3k2Incepp' (neither Ultralytics nor yolo_incep has it); "
             "did you mean 'C3k2Incep'"),
])
def test_stock_cli_names_file_and_row_in_one_line(ws, fresh_env, model, message):
    yolo = Path(sys.executable).parent / "yolo"
    proc = run_process([str(yolo), "train", f"model={ws[model]}", f"data={ws['yolo'] / 'data.yaml'}",
                        "epochs=1", "imgsz=32", "device=cpu"], fresh_env, ws["root"])
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(f"yolo: error: {ws['root']}/{message}"), \
        proc.stderr[-2000:]


def test_yolo_names_file_and_row_of_a_misspelled_layer_of_ours(ws, tmp_path):
    from ultralytics import YOLO

    from yolo_incep.errors import InputError

    with pytest.raises(InputError, match=r"typo-incep\.yaml: layer row 2: unknown layer 'C3k2Incepp'.*'C3k2Incep'"):
        YOLO(ws["typo"])
    stock = {**BAD_ROW, "backbone": [BAD_ROW["backbone"][0], [-1, 1, "C2ff", [32]]]}  # no row of ours: stock error
    (tmp_path / "stock-typo.yaml").write_text(yaml.safe_dump(stock, sort_keys=False))
    with pytest.raises(KeyError, match="C2ff"):
        YOLO(tmp_path / "stock-typo.yaml")


def test_device_mps_without_mps_is_refused_not_run_on_the_cpu():
    from yolo_incep.errors import InputError
    from yolo_incep.limits import check_device

    if torch.backends.mps.is_available():
        pytest.skip("this machine has Apple MPS")
    with pytest.raises(InputError, match="--device mps: no such device on this machine"):
        check_device("mps")


def test_dataset_yamls_are_found_by_name_and_ultralytics_own_stay_its_own():
    from ultralytics.data import utils

    from yolo_incep.data.yolo import read_data_yaml
    from yolo_incep.dataset_names import DATASET_YAMLS

    for name in ("VisDrone2019-DET.yaml", "visdrone-sample.yaml"):
        assert Path(utils.check_file(name)) == DATASET_YAMLS / name
        assert read_data_yaml(name).file == DATASET_YAMLS / name  # compare --data NAME too
    assert Path(utils.check_file("VisDrone.yaml")).parent.name == "datasets"  # Ultralytics' own, ignore regions lost
    assert "ultralytics" in Path(utils.check_file("VisDrone.yaml")).parts


def test_compare_replaces_an_earlier_run_and_refuses_to_remove_its_source(ws, tmp_path, run_cli):
    out = tmp_path / "cmp"
    out.mkdir()
    stale = out / "predictions_gone.json"
    stale.write_text("[]")
    (out / "gt.json").write_text(json.dumps({"images": []}))
    rc, _, err = run_cli("compare", stale, "--data", ws["yolo"] / "data.yaml", "--out", out)
    assert rc == 2 and f"--out {out}: holds the model source {stale}, which this run would remove" in err, err
    assert stale.is_file()
    rc, _, err = run_cli("compare", f"p={ws['root']}/plain/results.json", "--ids-by-position", "--data",
                         ws["yolo"] / "data.yaml", "--out", out, "--resamples", "5")
    assert rc == 0, err
    assert sorted(p.name for p in out.glob("predictions_*.json")) == ["predictions_p.json"]  # not the earlier run's


def test_swap_of_a_stock_name_says_it_is_not_the_zoo_model(tmp_path, run_cli):
    rc, out, err = run_cli("swap", "yolov8n.yaml", "-o", tmp_path / "mine.yaml")
    assert rc == 0, err
    assert "note: this is not the zoo's yolov8n-incep.yaml" in out and "YOLO('yolov8n-incep.yaml')" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.yaml"]  # no lock file left beside it


def test_converted_images_are_copies_an_edit_never_reaches_the_source(tmp_path, run_cli):
    src = visdrone_source(tmp_path / "src", sequences=1, frames=1)
    original = checksums(src)
    assert run_cli("convert", "visdrone", src, tmp_path / "dst")[0] == 0
    image = next((tmp_path / "dst/images/train").iterdir())
    with open(image, "r+b") as f:  # an in-place edit, as an editor or an EXIF-stripping script makes it
        f.write(b"edited")
    assert checksums(src) == original
    rc, out, _ = run_cli("convert", "visdrone", src, tmp_path / "linked", "--link")
    assert rc == 0 and "--link" in out and "edits the source" in out
    assert os.path.samefile(next((tmp_path / "linked/images/train").iterdir()), next(src.rglob("*.jpg")))


def test_convert_rerun_without_val_fraction_keeps_the_earlier_split(tmp_path, run_cli):
    src = visdrone_source(tmp_path / "src", sequences=4)
    dst = tmp_path / "dst"
    assert run_cli("convert", "visdrone", src, dst, "--val-fraction", "0.5", "--seed", "3")[0] == 0
    val = sorted(p.name for p in (dst / "images/val").iterdir())
    rc, out, err = run_cli("convert", "visdrone", src, dst)
    assert rc == 0, err
    assert sorted(p.name for p in (dst / "images/val").iterdir()) == val and val
    assert not {p.name for p in (dst / "images/train").iterdir()} & set(val)
    assert f"kept the val split of an earlier run ({len(val)} images" in out
    assert yaml.safe_load((dst / "data.yaml").read_text())["val"] == "images/val"


def test_compare_refuses_other_class_names_unless_mapped_by_index(data, tmp_path, run_cli, monkeypatch):
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    from yolo_incep.eval import compare

    yolo = YOLO("yolov8n.yaml")
    yolo.model = DetectionModel("yolov8n.yaml", nc=2, verbose=False)
    yolo.model.names = {0: "a", 1: "disc"}
    ckpt = tmp_path / "other-names.pt"
    yolo.save(ckpt)
    argv = ["compare", ckpt, "--data", data, "--imgsz", "64", "--latency-runs", "1", "--resamples", "10"]
    rc, _, err = run_cli(*argv, "--out", tmp_path / "o")
    assert rc == 2 and "class 1 is 'disc', the dataset's is 'b'" in err and "--map-classes-by-index" in err, err
    assert not (tmp_path / "o").exists()
    monkeypatch.setattr(compare, "predict", lambda *a, **k: [{"image_id": 1, "category_id": 2, "score": 0.5,
                                                         "bbox": [1.0, 1.0, 8.0, 8.0]}])
    rc, _, err = run_cli(*argv, "--out", tmp_path / "o", "--map-classes-by-index")
    assert rc == 0, err


# ---- one writer per output: a second run into an output in use by another process ------------------------------

HOLDER = """
import sys
from yolo_incep.files import {kind}
with {kind}(sys.argv[1], "yolo-incep test-holder"):
    print("held", flush=True)
    sys.stdin.read()
"""


class Holder:
    """Another process holding `target` as a run does (folder_lock, or path_lock for a file), until stopped."""

    def __init__(self, target: Path, kind: str = "folder_lock"):
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER.format(kind=kind), str(target)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "held"

    def __enter__(self) -> Holder:
        return self

    def __exit__(self, *exc) -> None:  # it ends as a run ends: lock file and the folders made for it removed
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def assert_refused(result: tuple[int, str, str], shown: Path, holder: Holder) -> None:
    rc, _, err = result
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{shown}: in use by another run (pid {holder.proc.pid}: yolo-incep test-holder)" in err, err


# (id, argv, output that argv writes, lock kind); the holder takes the output first
WRITERS = [
    ("convert", ["convert", "visdrone", "{src}", "{yolo}", "--val-fraction", "0.5", "--seed", "3"], "{yolo}",
     "folder_lock"),
    ("split", ["split", "{yolo}", "--val-fraction", "0.5", "--seed", "3"], "{yolo}", "folder_lock"),
    ("tile", ["tile", "{yolo}", "{out}", "--size", "32"], "{out}", "folder_lock"),
    ("compare", ["compare", "yolov8n.yaml", "--data", "{yolo}/data.yaml", "--out", "{out}"], "{out}", "folder_lock"),
    ("demo", ["demo", "--out", "{out}"], "{out}", "folder_lock"),
    ("swap", ["swap", "yolov8n.yaml", "-o", "{out}/m.yaml"], "{out}/m.yaml", "path_lock"),
    ("load-weights", ["load-weights", "yolov8n-inceptionnext.yaml", "w.pth", "-o", "{out}/m.pt"], "{out}/m.pt",
     "path_lock"),
]


@pytest.mark.parametrize("argv, target, kind", [w[1:] for w in WRITERS], ids=[w[0] for w in WRITERS])
def test_a_second_run_into_an_output_in_use_fails_at_once(ws, run_cli, argv, target, kind):
    names = {k: str(v) for k, v in ws.items()}
    target = Path(target.format(**names))
    before = checksums(ws["root"])
    with Holder(target, kind) as holder:
        assert_refused(run_cli(*(a.format(**names) for a in argv)), target, holder)
        lock_file = target / LOCK_NAME if kind == "folder_lock" else target.parent / f".{target.name}.lock"
        assert checksums(ws["root"]) == {**before, **checksums(lock_file)}  # the holder's lock file, nothing else
    assert checksums(ws["root"]) == before and not ws["out"].exists()


def test_bench_refuses_an_arm_and_seed_another_process_trains(tmp_path, run_cli, monkeypatch):
    from yolo_incep.bench import runs

    monkeypatch.setattr(runs.Workspace, "prepare", lambda self: self.root / "data.yaml")
    monkeypatch.setattr(runs, "train_run", lambda *a, **k: pytest.fail("trained an arm held by another process"))
    run_dir = tmp_path / "work/runs/yolov8n-s0"
    with Holder(run_dir, "path_lock") as holder:
        assert_refused(run_cli("bench", "--work", tmp_path / "work", "--out", tmp_path / "report",
                               "--arms", "yolov8n", "--seeds", "0"), run_dir, holder)


def test_a_killed_runs_lock_is_not_stuck_nor_another_runs_file(ws, tmp_path, run_cli):
    dst = tmp_path / "tiles"
    holder = Holder(dst)
    holder.proc.send_signal(signal.SIGKILL)  # no clean-up at all: its lock file stays, naming a dead process
    holder.proc.wait()
    assert (dst / LOCK_NAME).is_file()
    rc, out, err = run_cli("tile", ws["yolo"], dst, "--size", "32")  # no --overwrite: the lock file is nobody's output
    assert rc == 0, err
    assert not (dst / LOCK_NAME).exists() and any((dst / "images/train").iterdir())


def test_two_real_runs_into_one_folder_never_both_write(ws, tmp_path, fresh_env):
    """Two `yolo-incep tile` processes started together into one DST, with different sizes: one writes, the other
    is refused (or, started after the first ended, finds its tiles and is refused for them): never a mix."""
    dst = tmp_path / "tiles"
    cli = Path(sys.executable).parent / "yolo-incep"
    procs = [subprocess.Popen([str(cli), "tile", str(ws["yolo"]), str(dst), "--size", size], env=fresh_env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for size in ("32", "40")]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _ in results) == [0, 2], results
    err = next(e for rc, e in results if rc == 2)
    assert "in use by another run" in err or "this tiling would not write" in err, err
    sizes = {cv2.imread(str(p)).shape[:2] for p in (dst / "images").rglob("*.jpg")}
    assert len({max(s) for s in sizes}) == 1, sizes  # tiles of one --size only


def test_demo_dataset_at_the_smallest_imgsz_is_drawn_not_a_traceback(tmp_path):
    from yolo_incep.demo import make_synthetic_dataset

    data = make_synthetic_dataset(tmp_path, n_train=3, n_val=1, imgsz=32)  # shapes up to 43 px did not fit before
    assert len(list((tmp_path / "labels/train").iterdir())) == 3 and data.is_file()


def test_the_suite_left_every_dataset_whole(ws, run_cli):
    """Last in this file: no command above left a dataset half-changed (a journal marker) or without data.yaml."""
    from yolo_incep.data.journal import MARKER

    datasets = [p.parent for p in ws["root"].rglob("data.yaml")] + [p.parent for p in ws["root"].rglob(MARKER)]
    assert datasets and not [d for d in datasets if (d / MARKER).exists() or not (d / "data.yaml").is_file()]
