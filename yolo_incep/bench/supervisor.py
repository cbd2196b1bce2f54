"""Processes of one sitting or study: started (all at once, or a queue of them on a few slots), their output streamed
into one log, stopped alone or together, and found again by a rerun when their parent died. Each starts in its own
session and process group (its loader workers with it; a Ctrl-C in the parent's terminal reaches only the parent),
is killed by the kernel when the parent dies (Linux), and is recorded with its start time in a pid file. Nothing
here knows what the processes do.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..files import atomic_write_bytes

_ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # terminal colours and line clears


class TextLog:
    """Lines appended and flushed to one file as they happen, each with the seconds since `t0`; `echo` also prints
    a line to stderr (the parent's own lines: what a terminal or the device tool's output shows)."""

    def __init__(self, path: Path, t0: float, fresh: bool = True):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.t0 = path, t0
        self.file = open(path, "w" if fresh else "a", encoding="utf-8", errors="replace")

    def __call__(self, message: str, echo: bool = True) -> None:
        line = f"[{time.time() - self.t0:6.1f} s] {message}"
        self.file.write(line + "\n")
        self.file.flush()
        if echo:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        self.file.close()


@dataclass
class Job:
    """One process to supervise: its command, environment and own log file (stdout and stderr)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    started: float = 0.0
    proc: subprocess.Popen | None = field(default=None, repr=False)
    offset: int = 0  # bytes of its log streamed so far
    streamed: int = 0


def _parent_death_signal():
    """A pre-exec hook: the child is killed with SIGKILL when this process dies (Linux), and gives up at once if
    this process died before the hook ran."""
    parent = os.getpid()
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):  # not Linux: the pid file alone finds what survives
        prctl = None

    def hook() -> None:
        if prctl is not None:
            prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:
            os._exit(1)

    return hook


class Supervisor:
    """Start, stream, stop and record the processes of one sitting or study (`pid_file` lies in its scratch
    folder)."""

    def __init__(self, pid_file: Path, log: TextLog, stream_limit: int):
        self.pid_file, self.log, self.stream_limit = pid_file, log, stream_limit
        self.jobs: dict[str, Job] = {}

    # ---- an earlier sitting's survivors

    @staticmethod
    def stop_orphans(pid_file: Path, grace_s: float = 5) -> list[str]:
        """Kill every process an earlier sitting recorded in `pid_file` that still runs (each job's process group,
        loader workers included); returns what was found, as 'name (pid N, M processes)'."""
        import psutil

        try:
            recorded = json.loads(pid_file.read_text())["jobs"]
        except (OSError, ValueError, KeyError, TypeError):
            return []
        found, victims = [], []
        for name, job in recorded.items():
            group = [p for p in psutil.process_iter(["pid", "create_time"]) if _in_group(p, job)]
            if group:
                found.append(f"{name} (pid {job['pid']}, {len(group)} process(es))")
                victims += group
        for p in victims:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(victims, timeout=grace_s)
        pid_file.unlink(missing_ok=True)
        return found

    def _record(self) -> None:
        import psutil

        jobs = {}
        for name, job in self.jobs.items():
            with contextlib.suppress(psutil.Error):  # a job that exited already leaves nothing to find
                jobs[name] = {"pid": job.proc.pid, "created": psutil.Process(job.proc.pid).create_time()}
        atomic_write_bytes(self.pid_file, json.dumps({"parent": os.getpid(), "jobs": jobs}))

    # ---- starting, watching, stopping

    def start(self, job: Job) -> None:
        job.log.parent.mkdir(parents=True, exist_ok=True)
        with open(job.log, "wb") as f:
            job.proc = subprocess.Popen(job.argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env=job.env, start_new_session=True, preexec_fn=_parent_death_signal())
        job.started = time.time()
        self.jobs[job.name] = job
        self._record()

    def returncode(self, name: str) -> int | None:
        """None while the job runs."""
        return self.jobs[name].proc.poll()

    def running(self) -> list[str]:
        return [n for n, j in self.jobs.items() if j.proc.poll() is None]

    def stop(self, names, grace_s: float) -> None:
        """SIGTERM each job's process group, SIGKILL what is left after `grace_s`, and wait for the leaders."""
        jobs = [self.jobs[n] for n in names if self.jobs[n].proc.poll() is None]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for job in jobs:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(job.proc.pid, sig)  # the leader's pid is its group's id (start_new_session)
            end = time.time() + (grace_s if sig == signal.SIGTERM else 5)
            while time.time() < end and any(j.proc.poll() is None for j in jobs):
                time.sleep(0.05)
        self.stream()

    def run_on_slots(self, names: list[str], slots: list[str], make_job: Callable[[str, str], Job],
                     ended: Callable[[str, int], None], poll_s: float = 0.5, grace_s: float = 10) -> None:
        """Run the jobs `names` in their order, each on a free slot (an opaque label, e.g. a GPU's index; one job at
        a time on each, several slots may share a label), until every one has ended: `make_job(name, slot)` builds
        a job, `ended(name, returncode)` hears of each as it ends (a failure ends that job only). Whatever still
        runs when this is left early (an exception, Ctrl-C) is stopped."""
        queue, busy = list(names), {}  # slot position -> the job on it
        try:
            while queue or busy:
                self.stream()
                for slot, name in list(busy.items()):
                    rc = self.returncode(name)
                    if rc is not None:
                        del busy[slot]
                        self.stream()
                        ended(name, rc)
                for slot in range(len(slots)):
                    if queue and slot not in busy:
                        busy[slot] = name = queue.pop(0)
                        self.start(make_job(name, slots[slot]))
                if busy:
                    time.sleep(poll_s)
        finally:
            self.stop(list(busy.values()), grace_s)
            self.close()

    def stop_all(self, grace_s: float) -> None:
        self.stop(list(self.jobs), grace_s)

    def close(self) -> None:
        """Forget the pid file once nothing recorded in it runs."""
        if not self.running():
            self.pid_file.unlink(missing_ok=True)

    # ---- output

    def stream(self) -> None:
        """Append each job's new complete lines to the sitting's log as 'name| line' (a progress bar's carriage
        returns keep its last state); past `stream_limit` bytes a job's lines stay in its own log only."""
        for job in self.jobs.values():
            try:
                with open(job.log, "rb") as f:
                    f.seek(job.offset)
                    data = f.read()
            except OSError:
                continue
            complete = data.rpartition(b"\n")[0]
            if not complete and job.proc.poll() is None:
                continue
            if job.proc.poll() is not None:  # the job ended: its last unterminated line too
                complete = data
            job.offset += len(complete) + (len(complete) < len(data))
            for raw in complete.decode("utf-8", errors="replace").splitlines():
                line = _ESCAPES.sub("", raw.rpartition("\r")[2]).rstrip()
                if not line:
                    continue
                if job.streamed < self.stream_limit:
                    self.log(f"{job.name}| {line}", echo=False)
                elif job.streamed < self.stream_limit + len(line) + 1:
                    self.log(f"{job.name}| (further output only in {job.log})", echo=False)
                job.streamed += len(line) + 1

    def tail(self, name: str, lines: int = 15) -> str:
        """The last lines of a job's own log (what a failure is named with)."""
        try:
            text = self.jobs[name].log.read_bytes()[-20000:].decode("utf-8", errors="replace")
        except OSError:
            return ""
        kept = [_ESCAPES.sub("", ln.rpartition("\r")[2]).rstrip() for ln in text.splitlines()]
        return "\n".join([ln for ln in kept if ln][-lines:])


def _in_group(p, job: dict) -> bool:
    """Whether process `p` belongs to a recorded job: in its process group and started no earlier than it."""
    try:
        return os.getpgid(p.info["pid"]) == job["pid"] and p.info["create_time"] >= job["created"] - 1
    except (ProcessLookupError, PermissionError, KeyError, TypeError):
        return False
