"""`bench --budget gpu`, rehearsed on the CPU: one sitting, concurrent runs with equal steps, files that travel back,
only the GPU machine's packages; then the report from those files alone. Plus the lock-step and stop rule."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from yolo_incep import gpu_kit, sprint
from yolo_incep.files import atomic_write_bytes

SAMPLE = Path(os.environ.get("YOLO_INCEP_VISDRONE_SAMPLE")
              or Path(__file__).resolve().parents[2] / "shared/data/visdrone2019-det-sample")


@pytest.fixture(scope="module")
def small_sample(tmp_path_factory) -> Path:
    """13 real sample frames of 11 sequences, linked into a VisDrone-layout source (a sitting in about a minute)."""
    if not SAMPLE.is_dir():
        pytest.skip(f"VisDrone sample not found at {SAMPLE}")
    src = SAMPLE / "VisDrone2019-DET-train"
    root = tmp_path_factory.mktemp("small_sample")
    for sub in ("images", "annotations"):
        (root / "VisDrone2019-DET-train" / sub).mkdir(parents=True)
    for image in sorted((src / "images").glob("*.jpg"))[:40:3]:
        os.symlink(image, root / "VisDrone2019-DET-train/images" / image.name)
        os.symlink(src / "annotations" / f"{image.stem}.txt", root / "VisDrone2019-DET-train/annotations"
                   / f"{image.stem}.txt")
    return root


@pytest.mark.slow
def test_rehearsal_writes_the_sitting_files_and_they_give_the_report(small_sample, tmp_path, fresh_env):
    env = fresh_env | {"YOLO_INCEP_VISDRONE_SAMPLE": str(small_sample)}
    env.pop(gpu_kit.BLOCK_ENV, None)  # --rehearse sets it itself
    out = tmp_path / "out"
    t = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "yolo_incep.cli", "bench", "--budget", "gpu", "--rehearse",
                           "--work", str(tmp_path / "work"), "--out", str(out)], env=env, capture_output=True,
                          text=True, timeout=300)
    seconds = time.monotonic() - t
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert seconds < 180, seconds
    files = sorted(p for p in out.rglob("*") if p.is_file() and not p.name.startswith("."))
    assert [p.name for p in files] == sorted(sprint.OUT_FILES)  # at most 8 files come back from the device tool
    assert all(p.stat().st_size <= sprint.FILE_LIMIT for p in files)
    bench = json.loads((out / "bench.json").read_text())
    runs = bench["runs"]
    assert [r["arm"] for r in runs] == ["yolov8n", "yolov8n-incep"] and not any(r.get("failed") for r in runs)
    assert {r["steps"] for r in runs} == {bench["plan"]["steps"]} and bench["plan"]["steps"] > 0  # equal work
    assert all(r["images_seen"] == r["steps"] * bench["settings"]["batch"] for r in runs)
    with zipfile.ZipFile(out / "kept_runs.zip") as z:
        assert {"runs/yolov8n-s0/predictions.json.xz", "runs/yolov8n-incep-s0/steps.jsonl.xz"} <= set(z.namelist())
    log = (out / "log.txt").read_text()
    assert "Traceback" not in log and "polars" not in log
    # the report, anywhere, from the files alone (no checkpoint, no GPU)
    from yolo_incep import cli

    old = os.environ.get("YOLO_INCEP_VISDRONE_SAMPLE")
    os.environ["YOLO_INCEP_VISDRONE_SAMPLE"] = str(small_sample)
    try:
        assert cli.main(["bench", "--budget", "gpu", "--from", str(out), "--work", str(tmp_path / "w2"),
                         "--out", str(tmp_path / "report")]) == 0
        other = tmp_path / "other/runs/yolov8n-s0/done.json"  # a folder keeping another sitting's runs: refused
        other.parent.mkdir(parents=True)
        other.write_text("{}")
        assert cli.main(["bench", "--budget", "gpu", "--from", str(out), "--work", str(tmp_path / "w2"),
                         "--out", str(tmp_path / "other")]) == 2
        assert other.read_text() == "{}" and not (tmp_path / "other/runs/yolov8n-incep-s0").exists()
    finally:
        os.environ.pop("YOLO_INCEP_VISDRONE_SAMPLE") if old is None else os.environ.update(
            YOLO_INCEP_VISDRONE_SAMPLE=old)
    report = json.loads((tmp_path / "report/report.json").read_text())
    assert [a["name"] for a in report["arms"]] == ["yolov8n", "yolov8n-incep"]
    assert report["arms"][1]["delta"]["AP_small@500"]["ci95"] is not None


def test_the_rehearsal_block_refuses_what_the_gpu_machine_lacks(fresh_env):
    blocked = gpu_kit.blocked_modules()
    assert {"polars", "sahi", "faster_coco_eval", "openvino"} <= blocked
    assert not {"torch", "ultralytics", "cv2", "numpy", "pycocotools", "thop", "yaml", "PIL"} & blocked
    code = ("from yolo_incep import gpu_kit; gpu_kit.block_if_rehearsing()\n"
            "import ultralytics, cv2, pycocotools\n"
            "try:\n    import polars\nexcept ModuleNotFoundError as e:\n    print('refused:', e)")
    proc = subprocess.run([sys.executable, "-c", code], env=fresh_env | {gpu_kit.BLOCK_ENV: "1"},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "refused: No module named 'polars' (not on the GPU machine" in proc.stdout


def test_wheels_are_pinned_and_polars_does_not_travel():
    assert all("==" in w for w in gpu_kit.WHEELS)
    assert not any(w.startswith("polars") for w in gpu_kit.WHEELS)
    assert gpu_kit.normalize("ultralytics_thop") == "ultralytics-thop" == gpu_kit.normalize("Ultralytics.Thop")


def test_lock_step_keeps_runs_together_and_stop_is_one_step_for_all(tmp_path):
    (tmp_path / "progress").mkdir()
    trainers = {n: type("Trainer", (), {"stop": False})() for n in ("a", "b")}
    ctl = {n: sprint._Control(tmp_path, n) for n in trainers}
    for n in trainers:
        sprint._report(tmp_path, n, state="train", step=0)

    def train(n):  # a trainer's loop: a batch, the callback, until told to stop
        while not trainers[n].stop:
            ctl[n].batch_end(trainers[n])

    ahead = threading.Thread(target=train, args=("a",), daemon=True)
    ahead.start()
    ahead.join(timeout=2)
    assert ahead.is_alive() and ctl["a"].step == sprint.LEAD + 1  # waits for b, at most LEAD steps past b's 0
    for _ in range(10):
        ctl["b"].batch_end(trainers["b"])
    time.sleep(0.5)
    assert ctl["b"].step == 10 and 10 < ctl["a"].step <= 10 + sprint.LEAD + 1
    # time is short: the parent names the furthest step of any run, which every run can still reach
    stop = max(g["step"] for g in sprint._progress(tmp_path).values())
    atomic_write_bytes(tmp_path / "stop.json", json.dumps({"step": stop}))
    ahead.join(timeout=5)
    train("b")
    assert not ahead.is_alive() and ctl["a"].step == ctl["b"].step == stop
