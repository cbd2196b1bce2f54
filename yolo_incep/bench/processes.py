"""A study's runs spread over this machine's devices (`--device 0,1,2,3`, several runs on each with
`--runs-per-gpu`), each run in its own process (worker.py, started and watched by supervisor.py, pinned to its GPU by
CUDA_VISIBLE_DEVICES): a run that fails is named with its log's last lines, and the others go on.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from .. import recipe
from ..files import atomic_write_bytes, folder_lock
from .grids import run_name
from .supervisor import Job, Supervisor, TextLog
from .worker import study_config

STREAM_BYTES = 2**20  # of each run's output into the study's log.txt (the rest stays in the run's own log)


def train(ws, runs: list, data: Path, slots: list[str], key: str) -> tuple[dict[str, dict], dict[str, str]]:
    """Train `runs` ((arm, seed) pairs) on `slots` (study.slots); returns the records of the runs kept and why
    each other run failed. The study's log, the runs' own logs and the pid file a rerun reads lie in
    `ws.root`/study."""
    folder = ws.root / "study"
    with folder_lock(folder):  # a second study in this scratch is refused: its rerun would stop this one's runs
        return _train(ws, runs, data, slots, key, folder)


def _train(ws, runs: list, data: Path, slots: list[str], key: str, folder: Path):
    config = folder / "config.json"
    atomic_write_bytes(config, json.dumps(study_config(ws, data, runs, key), indent=1))
    log = TextLog(folder / "log.txt", time.time(), fresh=False)
    sup = Supervisor(folder / "pids", log, STREAM_BYTES)
    found = Supervisor.stop_orphans(sup.pid_file)
    if found:
        log(f"stopped what an earlier study left running: {', '.join(found)}")
    threads = str(max(1, (os.cpu_count() or 1) // len(slots)))  # CPU runs share the cores
    by_name = {run_name(a.name, seed): (a, seed) for a, seed in runs}
    done: dict[str, dict] = {}
    failed: dict[str, str] = {}
    log(f"{len(runs)} runs on {len(slots)} slots ({', '.join(slots)}); the study's log: {log.path}")

    def make_job(name: str, slot: str) -> Job:
        env = os.environ | {"PYTHONUNBUFFERED": "1", recipe.THREADS_ENV: threads}
        if slot != "cpu":
            env["CUDA_VISIBLE_DEVICES"] = slot  # device 0 of the run is this GPU
        log(f"{name}: started on {'the CPU' if slot == 'cpu' else f'GPU {slot}'}")
        return Job(name, [sys.executable, "-m", "yolo_incep.bench.worker", str(config), name], env,
                   folder / "logs" / f"{name}.log")

    def ended(name: str, rc: int) -> None:
        arm, seed = by_name[name]
        record = ws.kept(arm, seed) / "done.json"
        if rc == 0 and record.is_file():
            done[name] = json.loads(record.read_text())
            log(f"{name}: done, {done[name]['batches']} optimizer steps")
            return
        tail = sup.tail(name)
        said = [line for line in tail.splitlines() if line.startswith(f"{name}: error: ")]
        failed[name] = (said[-1].removeprefix(f"{name}: error: ") if said else
                        f"killed by {signal.Signals(-rc).name}" if rc < 0 else f"exited with status {rc}")
        log(f"{name}: failed ({failed[name]}); the last lines of its log ({sup.jobs[name].log}):\n"
            + "\n".join(f"    {line}" for line in tail.splitlines()))

    try:
        sup.run_on_slots(list(by_name), slots, make_job, ended)
    finally:
        log.close()
    return done, failed
