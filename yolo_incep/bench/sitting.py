"""`yolo-incep bench --budget gpu`: the whole grid in one timed sitting on one GPU, every run with the same steps
(docs/design.md, "The GPU sitting").

    yolo-incep bench --budget gpu --out $OUT              # on the lent machine: at most --minutes (8.5), 4 files
    yolo-incep bench --budget gpu --from $OUT --out DIR   # with the VisDrone sample: the report with intervals
    yolo-incep bench --budget gpu --rehearse --out DIR    # here, on the CPU: the same path in about a minute

The GPU speed is measured (gpu_speed.py) while the data are prepared; then the runs train at once as processes
(supervisor.py), as many as the machine allows (resources.py), timed in their first epoch and given one number of
epochs (steps.py). From its first second the sitting writes into --out: log.txt (as things happen), bench.json (at
every change: plan, each run's state and steps), kept_runs.zip (each run's kept files, as it finishes) and
gpu_speed.json.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sys
import threading
import time
import traceback
import zipfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from .. import recipe
from ..errors import InputError
from ..files import atomic_write_bytes
from . import machine, resources
from .gpu_speed import PAIRS
from .grids import GridArm, arm_record, run_name, runs_of
from .supervisor import Job, Supervisor, TextLog
from .steps import PLAN, Timing, read_progress

OUT_FILES = ("log.txt", "bench.json", "kept_runs.zip", "gpu_speed.json")  # at most LENT.files_back come back


@dataclass(frozen=True)
class Sitting:
    """The clock of one sitting and its bounds."""

    minutes: float  # from start to the last file written
    reserve_s: float  # after training: last validation, checkpoint, val-frame predictions
    pack_s: float  # the last seconds: stop what still runs and write the files
    speed_s: float  # the GPU speed measurement before the grid, at most
    first_step_s: float  # a run without its first step this long after it started is stuck
    stall_s: float  # a training run without a new step for this long is stuck
    calibration_skip: int  # steps every run takes before the timing starts (autotuning, first batches)
    calibration_s: float  # how long the timing lasts, at least
    poll_s: float  # the parent's loop
    report_s: float  # how often a run reports its step
    print_s: float  # how often a run prints a progress line (into log.txt)
    status_s: float  # how often bench.json is rewritten while runs train
    stop_s: float  # SIGTERM to SIGKILL when runs are stopped
    plan_margin: float = 0.85  # share of the time left that the planned steps may fill at the measured speed


SITTINGS = {
    "gpu": Sitting(minutes=8.5, reserve_s=100, pack_s=15, speed_s=120, first_step_s=150, stall_s=90,
                   calibration_skip=10, calibration_s=20, poll_s=0.5, report_s=1, print_s=20, status_s=5, stop_s=5),
    "rehearsal": Sitting(minutes=1.5, reserve_s=15, pack_s=5, speed_s=60, first_step_s=60, stall_s=15,
                         calibration_skip=2, calibration_s=1, poll_s=0.2, report_s=0.2, print_s=5, status_s=1,
                         stop_s=3),
}


def rehearsal_budget(budget: recipe.Budget) -> recipe.Budget:
    """The GPU budget shrunk for a 2-core CPU: the same path with tiny images, batches and epochs."""
    return replace(budget, imgsz=64, epochs=3, batch=4, nbs=4, device="cpu", amp=False, workers=0, cache="ram",
                   compare_imgsz=128, slice=0)


class Stopped(Exception):
    """SIGTERM or SIGINT reached the parent."""


@contextlib.contextmanager
def _stop_signals():
    """SIGTERM and SIGINT raise Stopped once (the stop itself is not interrupted again)."""
    def handler(signum, frame):
        for s in (signal.SIGTERM, signal.SIGINT):
            signal.signal(s, signal.SIG_IGN)
        raise Stopped(signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class Status:
    """bench.json in the output folder, rewritten atomically at every change."""

    def __init__(self, path: Path, record: dict):
        self.path, self.record = path, record
        self.write()

    def write(self, **fields) -> None:
        self.record |= fields
        atomic_write_bytes(self.path, json.dumps(self.record, indent=1))

    def run(self, name: str, **fields) -> None:
        next(r for r in self.record["runs"] if r["name"] == name).update(fields)


class _Sitting:
    """One sitting's state: what the parent knows, and the files it writes as it learns it."""

    def __init__(self, ws, grid, args, budget_name: str):
        self.ws, self.args = ws, args
        self.sitting = SITTINGS["rehearsal" if args.rehearse else "gpu"]
        if args.minutes is not None:
            self.sitting = replace(self.sitting, minutes=args.minutes)
        self.t0 = time.time()
        self.deadline = self.t0 + self.sitting.minutes * 60
        self.out = Path(args.out)
        self.control = ws.root / "sitting"
        self.log = TextLog(self.out / "log.txt", self.t0)
        self.runs = {run_name(a.name, s): (a, s) for a, s in runs_of(grid)}
        self.sup = Supervisor(ws.root / "sitting.pids", self.log,
                              stream_limit=machine.LENT.file_bytes // (4 * max(1, len(self.runs))))
        self.plan: dict = {}
        self.timing = Timing(self.sitting.calibration_skip, self.sitting.calibration_s, self.sitting.plan_margin)
        self.reasons: dict[str, tuple[str, str]] = {}  # (status, why) of the runs the parent stopped
        self.finished: set[str] = set()
        (self.out / "kept_runs.zip").unlink(missing_ok=True)  # an earlier sitting's runs are not this one's
        (self.out / "gpu_speed.json").unlink(missing_ok=True)
        command = ["yolo-incep", "bench", "--budget", budget_name] + (["--rehearse"] if args.rehearse else [])
        self.status = Status(self.out / "bench.json", {
            "state": "starting", "command": " ".join(command), "budget": budget_name, "rehearsal": bool(args.rehearse),
            "minutes": self.sitting.minutes, "settings": recipe.budget_dict(ws.budget), "device": ws.budget.device,
            "arms": [a.describe() | {"seeds": [s for b, s in self.runs.values() if b is a]} for a in grid],
            "plan": {}, "runs": [{"name": n, "arm": a.name, "seed": s, "status": "planned"}
                                 for n, (a, s) in self.runs.items()],
            "seconds": 0})

    def elapsed(self) -> float:
        return round(time.time() - self.t0, 1)

    # ---- the phases

    def start(self) -> Path:
        """Stop an earlier sitting's survivors; measure the GPU speed while the data are prepared; plan the runs."""
        s, ws = self.sitting, self.ws
        found = Supervisor.stop_orphans(self.sup.pid_file)
        if found:
            self.log(f"stopped what an earlier sitting left running: {', '.join(found)}")
        self.log(f"sitting of {s.minutes:g} min on {ws.budget.device}: {len(self.runs)} runs; files in {self.out}")
        _fresh(self.control, ws.out / "runs")
        if s.speed_s and not self.args.no_speed:
            self._start_speed()
        self.status.write(state="preparing data")
        data = _in_thread(lambda: self._prepare(), self._supervise_speed)
        self.log(f"data ready: {data}")
        while "speed" in self.sup.running():
            self._supervise_speed()
            time.sleep(s.poll_s)
        self._supervise_speed()
        return data

    def _prepare(self) -> Path:
        from .runs import label_caches

        data = self.ws.prepare()
        machine.no_downloads(lambda line: None)
        label_caches(data)
        return data

    def _start_speed(self) -> None:
        argv = [sys.executable, "-m", "yolo_incep.bench.gpu_speed", "--out", str(self.out / "gpu_speed.json"),
                "--quiet"]
        # the rehearsal measures one pair: the code path, in seconds
        argv += ["--rehearse", "--pair", *PAIRS[0]] if self.args.rehearse else ["--device", self.ws.budget.device]
        env = os.environ | {"PYTHONUNBUFFERED": "1", "YOLO_OFFLINE": "1"}
        self.sup.start(Job("speed", argv, env, self.control / "speed.log"))
        self.status.write(state="measuring GPU speed", speed={"status": "running", "file": "gpu_speed.json"})
        self.log(f"speed: measuring training and inference speed of stock and Inception models "
                 f"(at most {self.sitting.speed_s:g} s)")

    def _supervise_speed(self) -> None:
        self.sup.stream()
        speed, job = self.status.record.get("speed", {}), self.sup.jobs.get("speed")
        if speed.get("status") != "running":
            return
        rc = job.proc.poll()
        if rc is None and time.time() - job.started > self.sitting.speed_s:
            self.sup.stop(["speed"], self.sitting.stop_s)  # gpu_speed.json keeps the pairs it measured
            speed["status"] = f"stopped after {self.sitting.speed_s:g} s"
        elif rc is not None:
            speed["status"] = "done" if rc == 0 else f"failed (status {rc})"
        else:
            return
        self.log(f"speed: {speed['status']}" + (f"; its last lines:\n{self.sup.tail('speed')}" if rc else ""))
        self.status.write(speed=speed | {"seconds": round(time.time() - job.started, 1)})

    def launch(self, data: Path) -> None:
        """Plan the runs on what this machine offers, then start them."""
        ws, s = self.ws, self.sitting
        gpu = ws.budget.device != "cpu"
        found = resources.measure(ws.root, ws.budget.device)
        from ..data.yolo import load_data_yaml

        images = len(load_data_yaml(data, "train")[0])
        p = resources.plan(found, len(self.runs), ws.budget.batch, ws.budget.imgsz, ws.budget.workers,
                           ws.budget.cache, images, gpu)
        self.log(f"plan: {resources.plan_line(found, p)}")
        if p.cache == "disk":
            from .runs import label_caches

            label_caches(data, disk=True)
        for name in list(self.runs)[p.runs:]:
            self.status.run(name, status="not started", reason="; ".join(p.notes))
            self.finished.add(name)
        budget = replace(ws.budget, workers=p.workers, cache=p.cache)
        config = {"budget": asdict(budget), "data": str(data), "root": str(ws.root), "kept": str(ws.out),
                  "control": str(self.control), "deadline": self.deadline - s.pack_s, "report_s": s.report_s,
                  "print_s": s.print_s,
                  "runs": {n: {"arm": arm_record(a), "seed": seed} for n, (a, seed) in self.runs.items()}}
        atomic_write_bytes(self.control / "config.json", json.dumps(config, indent=1))
        threads = str(p.threads)
        env = os.environ | {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, recipe.THREADS_ENV: threads,
                            "YOLO_OFFLINE": "1", "YOLO_VERBOSE": "False", "PYTHONUNBUFFERED": "1",
                            "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
        self.status.write(state="training", machine=found.describe(), resources=p.describe(),
                          settings=recipe.budget_dict(budget))
        for name in list(self.runs)[:p.runs]:
            argv = [sys.executable, "-m", "yolo_incep.bench.worker", str(self.control / "config.json"), name]
            self.sup.start(Job(name, argv, env, self.control / f"{name}.log"))
            self.status.run(name, status="starting")
        self.log(f"started {p.runs} runs")

    def train(self) -> None:
        """Watch the runs until each has finished or been stopped: time them, plan, enforce every bound."""
        s = self.sitting
        last_status = 0.0
        while True:
            self.sup.stream()
            for name in [n for n in self.sup.jobs if n in self.runs and n not in self.finished]:
                rc = self.sup.returncode(name)
                if rc is not None:
                    self._finish(name, rc)
            live = [n for n in self.runs if n not in self.finished]
            if not live:
                return
            now = time.time()
            progress = {n: read_progress(self.control, n) for n in live}
            for name, g in progress.items():
                started = self.sup.jobs[name].started
                if not g.get("step") and now - started > s.first_step_s:
                    self._stop([name], f"no training step within {s.first_step_s:g} s of its start")
                elif g.get("state") == "train" and now - g.get("seen", now) > s.stall_s:
                    self._stop([name], f"no new step for {s.stall_s:g} s (at step {g.get('step', 0)})")
            if not self.plan:
                self._plan({n: g for n, g in progress.items() if n not in self.finished})
            if now > self.deadline - s.pack_s:
                self._stop([n for n in self.runs if n not in self.finished],
                           f"still running at the sitting's end ({s.minutes:g} min)", "stopped")
            if now - last_status > s.status_s:
                last_status = now
                for name, g in progress.items():
                    if name not in self.finished and g:
                        self.status.run(name, status=g.get("state"), step=g.get("step", 0))
                self.status.write(seconds=self.elapsed())
            time.sleep(s.poll_s)

    def _plan(self, progress: dict) -> None:
        """Once every live run is timed, fix the epochs for all and tell them (PLAN)."""
        s, now = self.sitting, time.time()
        plan = self.timing.plan(progress, self.deadline - s.reserve_s - now, self.ws.budget.epochs, now)
        if plan is None:
            return
        self.plan = plan | {"planned_at_s": self.elapsed(), "train_by_s": round(self.deadline - s.reserve_s - self.t0,
                                                                                 1)}
        atomic_write_bytes(self.control / PLAN, json.dumps(self.plan))
        slowest = max(plan["step_s"], key=plan["step_s"].get)
        self.log(f"plan: slowest run {slowest} at {plan['step_s'][slowest]:.2f} s a step -> {plan['epochs']} "
                 f"epoch(s), {plan['steps']} steps for every run")
        self.status.write(plan=self.plan)

    def _stop(self, names: list[str], reason: str, status: str = "failed") -> None:
        """Stop runs together: 'failed' when stuck, 'stopped' when the sitting ends first."""
        for name in names:
            self.reasons[name] = (status, reason)
        self.sup.stop(names, self.sitting.stop_s)
        for name in names:
            self._finish(name, self.sup.returncode(name))

    def _finish(self, name: str, rc: int | None) -> None:
        """Record a run that ended: its kept files into the archive, or why it failed and its log's last lines."""
        self.finished.add(name)
        arm, seed = self.runs[name]
        done = self.ws.kept(arm, seed) / "done.json"
        g = read_progress(self.control, name)
        if rc == 0 and done.is_file() and name not in self.reasons:
            record = json.loads(done.read_text())
            equal = not self.plan or record["steps"] == self.plan["steps"]
            self.status.run(name, **record, status="done" if equal else "unequal")
            self._pack()
            self.log(f"{name}: done, {record['steps']} steps" + ("" if equal else
                                                                  f", not the plan's {self.plan['steps']}"))
        else:
            status, reason = self.reasons.get(name) or ("failed", g.get("error") or (
                f"killed by {signal.Signals(-rc).name}" if rc is not None and rc < 0 else f"exited with status {rc}"))
            self.status.run(name, status=status, step=g.get("step", 0), reason=reason)
            self.log(f"{name}: {status} at step {g.get('step', 0)}: {reason}; the last lines of its log:\n"
                     + "\n".join(f"    {line}" for line in self.sup.tail(name).splitlines()))
        self.status.write(seconds=self.elapsed())

    def _pack(self) -> None:
        """kept_runs.zip of every finished run, rewritten whole (atomically) as each one finishes."""
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for r in self.status.record["runs"]:
                if r["status"] in ("done", "unequal"):
                    arm, seed = self.runs[r["name"]]
                    for f in sorted(self.ws.kept(arm, seed).iterdir()):
                        z.write(f, f"runs/{r['name']}/{f.name}")
        atomic_write_bytes(self.out / "kept_runs.zip", buf.getvalue())

    def end(self, state: str) -> int:
        """Stop whatever still runs; the last bench.json; sizes checked. 0 when every run is kept."""
        left = [n for n in self.runs if n in self.sup.jobs and n not in self.finished]
        for name in [n for n in left if self.sup.returncode(n) is not None]:  # it ended by itself meanwhile
            self._finish(name, self.sup.returncode(name))
        self._stop([n for n in left if n not in self.finished], f"the sitting {state}", "stopped")
        self.sup.stop_all(self.sitting.stop_s)  # the speed measurement, if it still runs
        if self.status.record.get("speed", {}).get("status") == "running":
            self.status.record["speed"]["status"] = f"stopped: the sitting {state}"
        self.sup.stream()
        self.sup.close()
        from .report import versions

        runs = self.status.record["runs"]
        kept = sum(r["status"] == "done" for r in runs)
        self.status.write(state=state, seconds=self.elapsed(), versions=versions())
        self.log(f"{state} in {self.elapsed():.0f} s: {kept} of {len(runs)} runs kept in {self.out}")
        for f in OUT_FILES:
            if (self.out / f).is_file() and (self.out / f).stat().st_size > machine.LENT.file_bytes:
                self.log(f"WARNING {self.out / f}: over the {machine.LENT.file_bytes // 2**20} MiB a file may have")
        self.log.close()
        return 0 if kept == len(runs) else 1


def run(ws, grid, args, budget_name: str) -> int:
    """Train every arm/seed of `grid` at once within the sitting; write OUT_FILES into `args.out` as it goes."""
    sitting = _Sitting(ws, grid, args, budget_name)
    with _stop_signals():
        try:
            data = sitting.start()
            sitting.launch(data)
            sitting.train()
        except Stopped as e:
            sitting.log(f"{e}: stopping the runs and writing what exists")
            sitting.end(f"stopped by {e}")
            return 128 + signal.Signals[str(e)].value
        except BaseException as e:
            trace = "" if isinstance(e, InputError) else f"\n{traceback.format_exc()}"
            sitting.log(f"failed: {type(e).__name__}: {e}{trace}")
            sitting.end("failed")
            raise
    return sitting.end("done")


def _in_thread(fn, wait_step):
    """fn() in a daemon thread while the main thread (which alone gets signals) calls wait_step() meanwhile."""
    result: dict = {}

    def target():
        try:
            result["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - raised again in the main thread
            result["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    while thread.is_alive():
        wait_step()
        thread.join(0.2)
    if "error" in result:
        raise result["error"]
    return result["value"]


def _fresh(control: Path, kept: Path) -> None:
    """Empty control and kept-runs folders (scratch of this sitting's --work): a sitting never reads the progress,
    plan or runs of an earlier one."""
    import shutil

    for folder in (control, kept):
        if folder.exists():
            shutil.rmtree(folder)
    (control / "progress").mkdir(parents=True)


# ---------------------------------------------------------------- the report from a sitting's files (--from)

def read_sitting(src: Path, out: Path) -> tuple[dict, dict[str, bytes]]:
    """A sitting's bench.json and the kept files of its archive ('runs/NAME/FILE' -> bytes; none if it has none)."""
    if out.resolve() == src.resolve() or out.resolve().is_relative_to(src.resolve()):
        raise InputError(f"--out {out}: is the --from folder {src} or inside it: the sitting's own files would be "
                         "overwritten; choose another folder")
    bench_file, zip_file = src / "bench.json", src / "kept_runs.zip"
    if not bench_file.is_file():
        raise InputError(f"--from {src}: no bench.json (the folder `bench --budget gpu` writes: "
                         f"{', '.join(OUT_FILES)})")
    try:
        bench = json.loads(bench_file.read_text())
        sitting_budget(bench), sitting_arms(bench), dict(bench["plan"])  # what a report needs
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"{bench_file}: not a sitting's bench.json ({type(e).__name__}: {e})") from None
    files = {}
    if zip_file.is_file():
        try:
            with zipfile.ZipFile(zip_file) as z:
                names = [n for n in z.namelist() if not n.endswith("/")]
                if any(Path(n).is_absolute() or ".." in Path(n).parts or len(Path(n).parts) != 3
                       or not n.startswith("runs/") for n in names):
                    raise InputError(f"{zip_file}: holds paths other than runs/NAME/FILE: not a kept-runs archive")
                files = {n: z.read(n) for n in names}
        except (zipfile.BadZipFile, OSError) as e:
            raise InputError(f"{zip_file}: unreadable ({type(e).__name__}: {e})") from None
    return bench, files


def report_from(src: Path, ws, device: str, command: str) -> int:
    """Compare the runs a sitting finished, from its files alone, into `ws.out`; its bench.json gains a 'report'
    section and otherwise says what the sitting recorded (plan, device, arms, settings), not the current budget."""
    from ..files import folder_lock
    from .report import evaluate, versions

    bench, files = read_sitting(src, ws.out)
    steps = bench["plan"].get("steps")
    records, left_out = [], []
    for name in sorted({n.split("/")[1] for n in files}):
        try:
            record = json.loads(files.get(f"runs/{name}/done.json", b"{}"))
        except ValueError:
            record = {}
        if not record or (steps and record.get("steps") != steps):
            left_out.append(f"{name} ({record.get('steps', 'no')} steps, not the plan's {steps})")
        else:
            records.append(record)
    if left_out:
        print(f"bench: left out of the comparison: {', '.join(left_out)}", file=sys.stderr)
    if not records:
        raise InputError(f"--from {src}: no finished run with the plan's steps (the sitting's state: "
                         f"{bench.get('state')!r}); nothing to compare")
    kept = {n: data for n, data in files.items() if n.split("/")[1] in {run_name(r["arm"], r["seed"])
                                                                        for r in records}}
    _refuse_other_runs(ws.out, kept)
    for name, data in kept.items():
        atomic_write_bytes(ws.out / name, data)
    ws.budget = replace(sitting_budget(bench), device=device)  # the sitting's own settings, the report's device
    grid = sitting_arms(bench)
    with folder_lock(ws.root, wait=True):
        ws.frames_only()
    with folder_lock(ws.root / "compare", wait=False):
        compare_s = evaluate(ws, grid, records)
    report = {"command": command, "from": str(src), "runs": [run_name(r["arm"], r["seed"])
                                                              for r in records],
              "left_out": left_out, "compare_s": compare_s, "versions": versions()}
    atomic_write_bytes(ws.out / "bench.json", json.dumps(bench | {"report": report}, indent=1))
    return 0


def sitting_budget(bench: dict) -> recipe.Budget:
    """The budget a sitting trained with, from its bench.json's settings."""
    return recipe.Budget(**{k: v for k, v in bench["settings"].items() if k != "recipe"})


def sitting_arms(bench: dict) -> tuple[GridArm, ...]:
    """The arms a sitting trained, from its bench.json."""
    return tuple(GridArm(a["name"], a["model"], tuple(a["seeds"]), a.get("versus")) for a in bench["arms"])


def _refuse_other_runs(out: Path, files: dict[str, bytes]) -> None:
    """`--from` into a report folder that already keeps runs: only the very same files (the same sitting again)."""
    held = {str(p.relative_to(out)): p for p in (out / "runs").rglob("*") if p.is_file()} if (out / "runs").is_dir() \
        else {}
    other = sorted(n for n, p in held.items() if files.get(n) != p.read_bytes())
    if other:
        raise InputError(f"--out {out}: keeps runs of another sitting ({other[0]}, {len(other)} files); choose "
                         "another folder, so that the two never mix")
