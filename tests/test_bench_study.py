"""`yolo-incep bench --data`: a study of your own on made data, in this process, spread over device slots (each run
its own process) and as Ray tasks; equal steps, kept runs, a report with a delta and its interval; bad input refused
in one line before anything trains."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from yolo_incep import recipe
from yolo_incep.bench import runs, study
from yolo_incep.bench.supervisor import Job, Supervisor, TextLog
from yolo_incep.files import path_lock

TINY = ("--seeds", "0", "--epochs", "1", "--imgsz", "64", "--batch", "8")  # 16 train images: 2 steps a run
PAIR = ("--models", "yolov8n.yaml", "yolov8n-incep.yaml")


def study_args(data: Path, tmp_path: Path, *extra) -> list:
    return ["bench", "--data", data, *PAIR, *TINY, "--out", tmp_path / "out", "--work", tmp_path / "work", *extra]


def bench(out: Path) -> dict:
    return json.loads((out / "bench.json").read_text())


def delta(out: Path) -> dict:
    """The second model's AP_small@500 difference to the baseline in report.json."""
    report = json.loads((out / "report.json").read_text())
    return report["arms"][1]["delta"]["AP_small@500"]


def test_jobs_run_on_their_slots_one_at_a_time_and_a_failure_ends_only_its_own(tmp_path):
    """The scheduling of device slots, with fake slots and jobs: never two jobs on one slot, never more at once than
    slots, every job run in order, a failed job heard of and the queue going on."""
    record = tmp_path / "record.jsonl"
    code = ("import json, sys, time; t = time.time(); time.sleep(0.3); "
            f"open({str(record)!r}, 'a').write(json.dumps([sys.argv[1], sys.argv[2], t, time.time()]) + '\\n'); "
            "sys.exit(3 if sys.argv[1] == 'c' else 0)")
    sup = Supervisor(tmp_path / "pids", TextLog(tmp_path / "log.txt", time.time()), 10_000)
    ended = {}
    def job(name: str, slot: str) -> Job:
        return Job(name, [sys.executable, "-c", code, name, slot], {}, tmp_path / f"{name}.log")

    sup.run_on_slots(list("abcde"), ["gpu0", "gpu1"], job, lambda name, rc: ended.setdefault(name, rc), poll_s=0.05)
    assert ended == {"a": 0, "b": 0, "c": 3, "d": 0, "e": 0}
    rows = [json.loads(line) for line in record.read_text().splitlines()]
    assert sorted(r[0] for r in rows) == list("abcde")
    for slot in ("gpu0", "gpu1"):
        spans = sorted((start, end) for _, s, start, end in rows if s == slot)
        assert all(b[0] >= a[1] for a, b in zip(spans, spans[1:]))  # one job at a time on each slot
    assert not (tmp_path / "pids").exists()  # nothing left to find


def test_a_budget_in_steps_is_whole_epochs_of_one_step_a_batch():
    data = study.Dataset(Path("d.yaml"), ["a"], train_images=100)  # 7 steps an epoch at batch 16
    budget = study.budget(data, 320, 16, None, 20, "cpu")
    assert (budget.epochs, budget.nbs, budget.tile, budget.compare_imgsz) == (3, 16, 0, 320)
    assert recipe.optimizer_steps(100, budget) == 21
    assert study.budget(data, 320, 16, None, 2, "0").epochs == 1  # at least one epoch
    assert study.budget(data, 320, 16, 5, None, "0").amp  # a GPU trains with AMP


@pytest.mark.slow
def test_a_study_on_made_data_trains_both_models_and_reports_a_delta_with_its_interval(synthetic_data, tmp_path,
                                                                                       run_cli):
    rc, _, err = run_cli(*study_args(synthetic_data, tmp_path))  # the command, tiny: here on the CPU
    assert rc == 0, err
    out = tmp_path / "out"
    written = bench(out)
    assert written["steps"]["planned"] == written["steps"]["taken"] == 2 and not written["steps"]["left_out"]
    assert [(r["arm"], r["batches"]) for r in written["runs"]] == [("yolov8n", 2), ("yolov8n-incep", 2)]
    assert written["settings"]["nbs"] == written["settings"]["batch"] == 8 and written["data"] == str(synthetic_data)
    assert delta(out)["ci95"] is not None and len(delta(out)["ci95"]) == 2
    done = out / "runs/yolov8n-s0/done.json"
    mtime = done.stat().st_mtime_ns
    rc, _, err = run_cli(*study_args(synthetic_data, tmp_path, "--no-compare"))
    assert rc == 0 and done.stat().st_mtime_ns == mtime  # a kept run is not trained again


def test_a_run_failing_in_this_process_is_named_and_the_others_go_on(synthetic_data, tmp_path, run_cli, monkeypatch):
    trained = []

    def train_run(ws, arm, seed, *args, **kwargs):
        trained.append(arm.name)
        if arm.name == "yolov8n":
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return {"arm": arm.name, "seed": seed, "batches": 2}

    monkeypatch.setattr(runs, "train_run", train_run)
    rc, _, err = run_cli(*study_args(synthetic_data, tmp_path, "--device", "cpu", "--no-compare"))
    assert rc == 1 and trained == ["yolov8n", "yolov8n-incep"]
    assert "bench: yolov8n-s0: failed (RuntimeError: CUDA error: an illegal memory access" in err


@pytest.mark.slow
def test_runs_spread_over_device_slots_each_in_its_own_process_and_a_failed_one_is_named(synthetic_data, tmp_path,
                                                                                       run_cli):
    from ultralytics import YOLO

    YOLO("yolov8n.yaml").save(tmp_path / "base.pt")  # a checkpoint to fine-tune from
    argv = ["bench", "--data", synthetic_data, "--models", f"base={tmp_path / 'base.pt'}", "yolov8n-incep.yaml", *TINY,
            "--out", tmp_path / "out", "--work", tmp_path / "work", "--device", "cpu", "--runs-per-gpu", "2"]
    with path_lock(tmp_path / "work/runs/yolov8n-incep-s0"):  # another process trains that run: it fails, named
        rc, _, err = run_cli(*argv)
    assert rc == 1, err
    out = tmp_path / "out"
    written = bench(out)
    assert [(r["arm"], r["model"]) for r in written["runs"]] == [("base", str(tmp_path / "base.pt"))]
    assert list(written["failed"]) == ["yolov8n-incep-s0"] and "in use" in written["failed"]["yolov8n-incep-s0"]
    log = (tmp_path / "work/study/log.txt").read_text()
    assert "base-s0: started on the CPU" in log and "yolov8n-incep-s0: failed" in log
    done = out / "runs/base-s0/done.json"
    mtime = done.stat().st_mtime_ns
    rc, _, err = run_cli(*argv)  # the rerun trains only what is missing
    assert rc == 0, err
    assert done.stat().st_mtime_ns == mtime and not bench(out)["failed"]
    assert delta(out)["ci95"] is not None


@pytest.mark.slow
def test_the_ray_path_runs_two_tiny_runs_on_a_local_instance(synthetic_data, tmp_path, run_cli):
    ray = pytest.importorskip("ray")
    rc, _, err = run_cli(*study_args(synthetic_data, tmp_path, "--ray", "local", "--device", "cpu"))
    assert rc == 0, err
    assert not ray.is_initialized()  # the instance it started is gone
    out = tmp_path / "out"
    written = bench(out)
    assert [(r["arm"], r["batches"]) for r in written["runs"]] == [("yolov8n", 2), ("yolov8n-incep", 2)]
    for name in ("yolov8n-s0", "yolov8n-incep-s0"):  # the kept files came back from the tasks
        kept = out / "runs" / name
        assert sorted(p.name for p in kept.iterdir()) == ["done.json", "predictions.json.xz", "steps.jsonl.xz"]
        assert "yolo-incep-ray-" in json.loads((kept / "done.json").read_text())["checkpoint"]  # the node's scratch
    assert delta(out)["ci95"] is not None


def _no_val(tmp_path: Path, synthetic_data: Path) -> Path:
    data = tmp_path / "no_val.yaml"
    data.write_text(f"path: {synthetic_data.parent}\ntrain: images/train\nnames: [a, b, c]\n")
    return data


@pytest.mark.parametrize("case, message", [
    ("unknown-model", "model nope.yaml: does not build"),
    ("missing-checkpoint", "model missing.pt: does not load (FileNotFoundError: no such file (nothing is downloaded))"),
    ("no-val-split", "no 'val' split: a study trains on 'train' and scores on 'val'"),
    ("no-such-device", "--device 7: no such device on this machine"),
    ("no-ray", "--ray: Ray is not installed: pip install 'yolo-incep[ray]'"),
    ("no-budget", "give the budget, --epochs N or --steps N"),
    ("versus-unknown", "--versus incep=stock: incep is not one of --models"),
    ("models-without-data", "--models: only for a study of your own, with --data"),
])
def test_bad_input_is_one_line_before_anything_trains(synthetic_data, tmp_path, run_cli, monkeypatch, case, message):
    monkeypatch.setattr(runs, "train_run", lambda *a, **k: pytest.fail("trained"))
    monkeypatch.setattr(runs.Workspace, "prepare", lambda self: pytest.fail("prepared data"))
    data, models, extra = synthetic_data, ["yolov8n.yaml"], ["--epochs", "1"]
    if case == "unknown-model":
        models = ["nope.yaml", "yolov8n.yaml"]
    elif case == "missing-checkpoint":
        models = ["missing.pt"]
    elif case == "no-val-split":
        data = _no_val(tmp_path, synthetic_data)
    elif case == "no-such-device":
        extra += ["--device", "7"]
    elif case == "no-ray":
        monkeypatch.setitem(sys.modules, "ray", None)  # as where it is not installed: its import fails
        extra += ["--ray", "auto"]
    elif case == "no-budget":
        extra = []
    elif case == "versus-unknown":
        extra += ["--versus", "incep=stock"]
    argv = ["bench", "--data", data, "--models", *models, *extra, "--out", tmp_path / "out"]
    if case == "models-without-data":
        argv = ["bench", "--models", "yolov8n.yaml", "--out", tmp_path / "out"]
    rc, _, err = run_cli(*argv)
    assert rc == 2 and err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()
