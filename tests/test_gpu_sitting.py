"""`bench --budget gpu` rehearsed on the CPU through the sitting's own code path, on a made-up VisDrone-layout
source: equal steps, files written as things happen, the lent machine's packages only, no network, four faults."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import psutil
import pytest

from helpers import make_visdrone_source
from yolo_incep import cli, recipe
from yolo_incep.bench import machine, resources, sitting
from yolo_incep.bench.supervisor import Job, Supervisor, TextLog
from yolo_incep.bench.steps import FAULT_ENV, Timing
from yolo_incep.data.prepare import SAMPLE_ENV


PAIR = ("--no-speed", "--arms", "yolov8n", "yolov8n-incep", "--seeds", "0")  # the rehearsal's 2 runs, no speed


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    """20 frames of 5 sequences: 16 train frames (32 tiles, 8 steps an epoch at batch 4), 4 val frames."""
    return make_visdrone_source(tmp_path_factory.mktemp("visdrone"))


def start(env: dict, sample: Path, work: Path, out: Path, *extra: str, fault: str = "") -> subprocess.Popen:
    """A rehearsal sitting in its own process, as `yolo-incep bench` runs on the lent machine."""
    env = env | {SAMPLE_ENV: str(sample), FAULT_ENV: fault}
    env.pop(machine.REHEARSAL_ENV, None)  # --rehearse sets it itself
    argv = [sys.executable, "-m", "yolo_incep.cli", "bench", "--budget", "gpu", "--rehearse", "--work", str(work),
            "--out", str(out), *extra]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def bench_json(out: Path) -> dict:
    """The sitting's bench.json as it is now ({} before its first write): rewritten atomically, never half."""
    try:
        return json.loads((out / "bench.json").read_text())
    except FileNotFoundError:
        return {}


def wait_for(condition, proc: subprocess.Popen, timeout: float = 180) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < end, "timed out"
        time.sleep(0.1)


def sitting_processes(folder: Path) -> list[psutil.Process]:
    """Live processes of the sittings under a test's folder: every command line naming it (parent, runs, speed)."""
    return [p for p in psutil.process_iter(["cmdline", "status"]) if p.info["status"] != psutil.STATUS_ZOMBIE
            and any(str(folder) in a for a in p.info["cmdline"] or ())]


def assert_none_left(folder: Path) -> None:
    end = time.monotonic() + 5
    while sitting_processes(folder) and time.monotonic() < end:
        time.sleep(0.1)
    assert not sitting_processes(folder), [p.info["cmdline"] for p in sitting_processes(folder)]


def runs_by_name(out: Path) -> dict[str, dict]:
    return {r["name"]: r for r in bench_json(out)["runs"]}


def kept(out: Path) -> set[str]:
    with zipfile.ZipFile(out / "kept_runs.zip") as z:
        return {n.split("/")[1] for n in z.namelist()}


@pytest.mark.slow
def test_a_killed_sitting_says_how_far_it_got_and_its_rerun_gives_the_report(sample, tmp_path, fresh_env,
                                                                            monkeypatch):
    work, out = tmp_path / "work", tmp_path / "out"
    scratch = ("--work", str(tmp_path / "report-work"))  # the report's, beside the test's other folders
    t = time.monotonic()
    # (d) SIGKILL of every process of the sitting while the runs train: the files say how far it got
    proc = start(fresh_env, sample, work, out, *PAIR)
    wait_for(lambda: bench_json(out).get("plan"), proc)
    for p in sitting_processes(tmp_path):  # the parent, its runs
        p.kill()
    proc.wait()
    assert_none_left(tmp_path)
    state = bench_json(out)
    assert state["state"] == "training" and state["plan"]["steps"] == 3 * 8
    assert {r["status"] for r in state["runs"]} <= {"starting", "train", "waiting", "finishing"}
    assert "plan: slowest run" in (out / "log.txt").read_text()
    assert not (out / "kept_runs.zip").exists()  # no run had finished: nothing to report
    rc = cli.main(["bench", "--budget", "gpu", "--from", str(out), "--out", str(tmp_path / "none"), *scratch])
    assert rc == 2 and not (tmp_path / "none" / "report.json").exists()

    # the rerun into the same folders: the whole rehearsal, the speed measurement first
    proc = start(fresh_env, sample, work, out)
    _, err = proc.communicate(timeout=300)
    seconds = time.monotonic() - t
    assert proc.returncode == 0, err[-3000:]
    assert seconds < 150, seconds
    assert_none_left(tmp_path)
    files = sorted(p.name for p in out.rglob("*") if p.is_file())
    assert files == sorted(sitting.OUT_FILES)  # and no lock file: at most 8 files come back from the lent machine
    assert all((out / f).stat().st_size <= machine.LENT.file_bytes for f in files)
    bench = bench_json(out)
    runs = bench["runs"]
    assert bench["state"] == "done" and [r["arm"] for r in runs] == ["yolov8n", "yolov8n-incep"]
    assert {r["status"] for r in runs} == {"done"}
    assert {r["steps"] for r in runs} == {bench["plan"]["steps"]} and bench["plan"]["steps"] > 0  # equal work
    assert all(r["images_seen"] == r["steps"] * bench["settings"]["batch"] for r in runs)
    assert kept(out) == {"yolov8n-s0", "yolov8n-incep-s0"}
    speed = json.loads((out / "gpu_speed.json").read_text())
    assert speed["complete"] and bench["speed"]["status"] == "done"
    log = (out / "log.txt").read_text()
    assert "Traceback" not in log and "polars" not in log
    assert machine.NETWORK_REFUSED not in log  # nothing of the sitting tried to open a connection
    assert "loader worker(s) each, cache ram" in log  # the plan of the machine's resources, in one line

    # the report, from the files alone (no checkpoint, no GPU), into a folder outside them
    for bad in (out, out / "report"):
        assert cli.main(["bench", "--budget", "gpu", "--from", str(out), "--out", str(bad), *scratch]) == 2
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == files
    report_dir = tmp_path / "report"
    monkeypatch.setenv(SAMPLE_ENV, str(sample))
    assert cli.main(["bench", "--budget", "gpu", "--from", str(out), "--out", str(report_dir), *scratch]) == 0
    other = tmp_path / "other/runs/yolov8n-s0/done.json"  # a folder keeping another sitting's runs: refused
    other.parent.mkdir(parents=True)
    other.write_text("{}")
    assert cli.main(["bench", "--budget", "gpu", "--from", str(out), "--out", str(other.parents[2]), *scratch]) == 2
    assert other.read_text() == "{}" and not (tmp_path / "other/runs/yolov8n-incep-s0").exists()
    report = json.loads((report_dir / "report.json").read_text())
    assert [a["name"] for a in report["arms"]] == ["yolov8n", "yolov8n-incep"]
    assert report["arms"][1]["delta"]["AP_small@500"]["ci95"] is not None
    written = json.loads((report_dir / "bench.json").read_text())  # what the sitting recorded, not today's budget
    assert {k: written[k] for k in ("plan", "settings", "arms", "device")} == \
        {k: bench[k] for k in ("plan", "settings", "arms", "device")}
    assert written["settings"]["imgsz"] == 64 and written["report"]["runs"] == ["yolov8n-incep-s0", "yolov8n-s0"]


@pytest.mark.slow
@pytest.mark.parametrize("fault, reason, where", [
    ("kill:yolov8n-incep-s0:5", "killed by SIGKILL", "failed at step"),  # (a) killed during training
    ("hang:yolov8n-incep-s0:2", "no new step for 15 s (at step 2)", "hanging at step 2"),  # (b) stuck in epoch 1
], ids=["killed", "stuck"])
def test_a_run_killed_or_stuck_is_named_and_the_other_is_kept_complete(sample, tmp_path, fresh_env, fault, reason,
                                                                       where):
    work, out = tmp_path / "work", tmp_path / "out"
    proc = start(fresh_env, sample, work, out, *PAIR, fault=fault)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err[-3000:]  # not every run was kept
    assert_none_left(tmp_path)
    runs, bench = runs_by_name(out), bench_json(out)
    assert bench["state"] == "done" and runs["yolov8n-s0"]["status"] == "done"
    assert runs["yolov8n-s0"]["steps"] == bench["plan"]["steps"] == 3 * 8 and kept(out) == {"yolov8n-s0"}
    assert runs["yolov8n-incep-s0"]["status"] == "failed" and runs["yolov8n-incep-s0"]["reason"] == reason
    log = (out / "log.txt").read_text()
    assert "yolov8n-incep-s0: failed at step" in log and where in log  # named, with its log's last lines


@pytest.mark.slow
def test_sigterm_stops_the_runs_and_writes_what_exists_within_20_seconds(sample, tmp_path, fresh_env):
    work, out = tmp_path / "work", tmp_path / "out"
    # and yolov8n-incep-s0 runs out of memory at step 3: Ultralytics halves its batch, the run stops, named
    proc = start(fresh_env, sample, work, out, *PAIR, fault="oom:yolov8n-incep-s0:3")
    wait_for(lambda: bench_json(out).get("plan"), proc)  # about 60 % of this sitting's time
    t = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - t < 20 and proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert_none_left(tmp_path)
    state = bench_json(out)
    assert state["state"] == "stopped by SIGTERM"
    runs = runs_by_name(out)
    assert runs["yolov8n-incep-s0"]["status"] == "failed"
    assert "cut the batch from 4 to 2" in runs["yolov8n-incep-s0"]["reason"]
    assert (runs["yolov8n-s0"]["status"], runs["yolov8n-s0"]["reason"]) == ("stopped", "the sitting stopped by SIGTERM")
    assert "SIGTERM: stopping the runs" in (out / "log.txt").read_text()


def test_a_rerun_stops_what_an_earlier_sitting_left_running(tmp_path):
    pids = tmp_path / "sitting.pids"
    sup = Supervisor(pids, TextLog(tmp_path / "log.txt", time.time()), 10_000)
    child = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); " \
            "time.sleep(60)"  # a run and its loader worker
    sup.start(Job("run", [sys.executable, "-c", child], dict(os.environ), tmp_path / "run.log"))
    leader = sup.jobs["run"].proc.pid

    def group():
        return [p for p in psutil.process_iter() if _pgid(p.pid) == leader and p.status() != psutil.STATUS_ZOMBIE]

    end = time.monotonic() + 30
    while len(group()) < 2 and time.monotonic() < end:
        time.sleep(0.1)
    assert len(group()) == 2
    # the sitting that started them is gone without stopping them; the next one reads its pid file
    assert Supervisor.stop_orphans(pids) == [f"run (pid {leader}, 2 process(es))"]
    sup.jobs["run"].proc.wait(timeout=5)
    assert not group() and not pids.exists()
    assert Supervisor.stop_orphans(pids) == []  # nothing recorded, nothing stopped


def test_a_runs_process_dies_with_its_parent(tmp_path):
    code = ("import sys, time; from pathlib import Path; from yolo_incep.bench.supervisor import Job, Supervisor, "
            "TextLog\n"
            "t = Path(sys.argv[1]); s = Supervisor(t / 'pids', TextLog(t / 'log.txt', time.time()), 1000)\n"
            "s.start(Job('run', [sys.executable, '-c', 'import time; time.sleep(60)'], {}, t / 'run.log'))\n"
            "print(s.jobs['run'].proc.pid, flush=True); time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              env=os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)})
    run = psutil.Process(int(parent.stdout.readline()))
    parent.kill()  # SIGKILL: no handler, no clean-up of its own
    parent.wait()
    run.wait(timeout=5)  # the kernel's parent-death signal


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def test_network_is_refused_at_once_and_named(fresh_env):
    code = ("import socket, time, urllib.request\n"
            "from yolo_incep.bench import machine\n"
            "machine.enter()\n"
            "t = time.monotonic()\n"
            "for url in ('http://192.0.2.1/x', 'https://example.com/x'):\n"
            "    try:\n        urllib.request.urlopen(url, timeout=30)\n"
            "    except OSError as e:\n        print('refused', type(e).__name__)\n"
            "a, b = socket.socketpair(); a.sendall(b'x'); assert b.recv(1) == b'x'  # local sockets still work\n"
            "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); c = socket.create_connection(s.getsockname())\n"
            "print(f'{time.monotonic() - t:.2f}')")
    proc = subprocess.run([sys.executable, "-c", code], env=fresh_env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.split()
    assert lines.count("refused") == 2 and float(lines[-1]) < 2
    assert f"{machine.NETWORK_REFUSED}: ('192.0.2.1', 80)" in proc.stderr
    assert f"{machine.NETWORK_REFUSED}: example.com" in proc.stderr


def test_ultralytics_downloads_are_skipped_with_the_reason(monkeypatch):
    import ultralytics.data.utils as data_utils
    import ultralytics.engine.trainer as trainer

    monkeypatch.setattr(trainer, "check_amp", trainer.check_amp)  # restored after the test
    monkeypatch.setattr(data_utils, "check_font", data_utils.check_font)
    said = []
    machine.no_downloads(said.append)
    assert trainer.check_amp(None) is True and "AMP check skipped" in said[0]
    assert data_utils.check_font("Arial.ttf") is None


@pytest.mark.parametrize("found, expected, why", [
    (dict(cores=16, shm=64, gpu=80), (12, 1, 0, "ram"), None),
    (dict(cores=16, shm=64, gpu=80, runs=6), (6, 2, 1, "ram"), None),
    (dict(cores=8), (8, 1, 0, "ram"), "12 runs on 8 cores"),
    (dict(cores=16, gpu=20), (6, 2, 1, "ram"), "GPU memory for 6 runs"),
    (dict(cores=16, runs=4, shm=0.064), (4, 4, 0, "ram"), "/dev/shm holds 0.06 GiB"),
    (dict(cores=16, ram=16), (12, 1, 0, "disk"), "RAM caches of 12 runs"),
    (dict(cores=16, ram=16, disk=1), (12, 1, 0, False), "cache False"),
])
def test_the_plan_follows_what_the_machine_reports(found, expected, why):
    GiB = resources.GiB
    m = resources.Machine(cores=found["cores"], ram_free=int(found.get("ram", 120) * GiB),
                          shm_free=int(found.get("shm", 64) * GiB), disk_free=int(found.get("disk", 50) * GiB),
                          gpu="H100", gpu_free=int(found.get("gpu", 80) * GiB))
    gpu = recipe.BUDGETS["gpu"]  # 4,732 train tiles of 320 px: 1.45 GB of cache a run
    p = resources.plan(m, found.get("runs", 12), gpu.batch, gpu.imgsz, gpu.workers, gpu.cache, 4732, gpu=True)
    assert (p.runs, p.threads, p.workers, p.cache) == expected
    assert (why is None and not p.notes) or any(why in n for n in p.notes), p.notes
    assert f"-> {p.runs} runs" in resources.plan_line(m, p)


def test_the_rehearsal_block_refuses_what_the_gpu_machine_lacks(fresh_env):
    blocked = machine.blocked_modules()
    assert {"polars", "sahi", "faster_coco_eval", "openvino"} <= blocked
    assert not {"torch", "ultralytics", "cv2", "numpy", "pycocotools", "thop", "yaml", "PIL"} & blocked
    code = ("from yolo_incep.bench import machine; machine.block_imports()\n"
            "import ultralytics, cv2, pycocotools\n"
            "try:\n    import polars\nexcept ModuleNotFoundError as e:\n    print('refused:', e)")
    proc = subprocess.run([sys.executable, "-c", code], env=fresh_env | {machine.REHEARSAL_ENV: "1"},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "refused: No module named 'polars' (not on the GPU machine" in proc.stdout


def test_wheels_are_pinned_and_polars_does_not_travel():
    assert all("==" in w for w in machine.LENT.wheels)
    assert not any(w.startswith("polars") for w in machine.LENT.wheels)
    assert machine.normalize("ultralytics_thop") == "ultralytics-thop" == machine.normalize("Ultralytics.Thop")
    assert len(sitting.OUT_FILES) <= machine.LENT.files_back


def test_the_timing_fixes_the_epochs_the_slowest_run_finishes():
    timing = Timing(skip=5, seconds=1, margin=1.0)
    run = {"state": "train", "steps_per_epoch": 10, "t0": 90.0}
    assert timing.plan({"a": run | {"step": 4, "t": 99.0}}, 100, 50, now=99.0) is None  # not 5 steps yet
    start = {"a": run | {"step": 10, "t": 100.0}, "b": run | {"step": 10, "t": 100.0},
             "c": run | {"state": "waiting", "step": 10, "t": 93.0}}  # c: at its epoch's end already
    assert timing.plan(start, 100, 50, now=100.0) is None  # the timing begins
    assert timing.plan({**start, "a": run | {"step": 20, "t": 102.0}}, 100, 50, now=100.5) is None  # b untimed
    now = {**start, "a": run | {"step": 20, "t": 102.0}, "b": run | {"step": 15, "t": 102.5}}
    plan = timing.plan(now, 100, 50, now=102.5)
    assert plan["step_s"] == {"a": 0.2, "b": 0.5, "c": 0.3}  # c over its whole first epoch: (93 - 90) / 10
    assert plan["epochs"] == 21 and plan["steps"] == 210  # b: 15 + 100 / 0.5 = 215 steps fit, 21 whole epochs
    assert Timing(5, 1, 1.0).plan({}, 100, 50, now=0) is None
    assert timing.plan(now, 100, 3, now=102.5)["epochs"] == 3 and timing.plan(now, 0, 50, now=102.5)["epochs"] == 1


def test_a_planned_run_gets_the_schedule_it_would_have_had_with_its_length_known(tmp_path):
    """Ultralytics' per-epoch loop with the budget's 100 epochs, the plan of 4 applied at the end of epoch 1: every
    epoch's learning rate equals that of a trainer started with 4 epochs."""
    import warnings
    from types import SimpleNamespace

    import torch
    from ultralytics.engine.trainer import BaseTrainer

    from yolo_incep.bench.steps import PLAN, Control

    def trainer(epochs: int):
        t = SimpleNamespace(args=SimpleNamespace(cos_lr=True, lrf=0.01, epochs=epochs), epochs=epochs, epoch=0,
                            optimizer=torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3),
                            device=torch.device("cpu"), batch_size=4)
        t._setup_scheduler = lambda: BaseTrainer._setup_scheduler(t)
        t._setup_scheduler()
        t.scheduler.last_epoch = -1  # as _setup_train leaves it for a fresh run
        return t

    def lrs(t, ctl=None) -> list[float]:
        out, epoch = [], 0
        while True:  # BaseTrainer._do_train's epoch loop, batches aside
            t.epoch = epoch
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t.scheduler.step()
            out.append(t.optimizer.param_groups[0]["lr"])
            if ctl is not None:
                ctl.epoch_end(t)
            if epoch + 1 >= t.epochs:
                return out
            epoch += 1

    (tmp_path / "progress").mkdir()
    (tmp_path / PLAN).write_text(json.dumps({"epochs": 4}))
    ctl = Control(tmp_path, "run", {"budget": {"batch": 4}, "report_s": 1, "print_s": 1, "deadline": time.time() + 60})
    ctl.state["steps_per_epoch"] = 10
    planned = lrs(trainer(100), ctl)
    assert planned == pytest.approx(lrs(trainer(4))) and len(planned) == 4
    assert planned[1] < planned[0] and planned != pytest.approx(lrs(trainer(100))[:4])
