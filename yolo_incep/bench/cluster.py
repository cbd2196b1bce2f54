"""A study's runs as Ray tasks (`--ray auto|local|ADDRESS`; `pip install 'yolo-incep[ray]'`), each with its share of
a GPU (`--runs-per-gpu`: fractional GPUs) or one CPU, in a fresh worker process of its own (max_calls=1).

Every task runs the driver's own code: the package travels as Ray's runtime environment (py_modules), ahead of any
installed copy on the path, and where the package is installed its start-up hook (yolo_incep.pth) activates the
plugin; elsewhere the task activates it itself. The dataset must lie at the same path on every node (a shared
filesystem); a task trains in its node's temp folder and returns its kept files (predictions, step log, record),
which the driver writes into --out as each task ends. A failed task is named and the others go on.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from .. import _bootstrap  # noqa: F401  (our layers, where the package is not installed on a node)
from ..errors import InputError, one_line

MODES = "auto (the cluster `ray start` or RAY_ADDRESS names), local (a Ray instance of this machine's own), an address"


def connect(address: str):
    """The ray module, connected to `address` (see MODES); an InputError when Ray is missing or unreachable. Returns
    (ray, whether this call started it)."""
    try:
        import ray
    except ImportError:
        raise InputError("--ray: Ray is not installed: pip install 'yolo-incep[ray]'") from None
    if ray.is_initialized():  # a program that embeds the study connected already, with its own runtime environment
        return ray, False
    import yolo_incep

    job = {"py_modules": [str(Path(yolo_incep.__file__).parent)]}  # Ray uploads a folder for a whole job only
    # the runs' own output stays in each node's Ray logs (/tmp/ray/session_latest/logs): dozens of interleaved
    # trainings would bury the driver's lines, which name each run's end and any failure
    try:
        if address == "local":
            ray.init(include_dashboard=False, runtime_env=job, log_to_driver=False)
        else:
            ray.init(address=address, runtime_env=job, log_to_driver=False)
    except Exception as e:  # noqa: BLE001 - any failure to connect is the address's, named with it
        raise InputError(f"--ray {address}: no Ray cluster there ({one_line(e)}); expected {MODES}") from None
    return ray, True


def shares(ray, device: str | None, runs_per_gpu: int) -> dict:
    """Each task's Ray resources: a 1/runs_per_gpu share of a GPU (with --device cpu, or on a cluster without GPUs:
    one CPU)."""
    if runs_per_gpu < 1:
        raise InputError(f"--runs-per-gpu {runs_per_gpu}: must be 1 or more")
    if device not in (None, "cpu"):
        raise InputError(f"--device {device}: with --ray, Ray assigns the GPUs; leave --device out, or --device cpu")
    gpus = ray.cluster_resources().get("GPU", 0)
    if device == "cpu" or not gpus:
        return {"num_cpus": 1, "num_gpus": 0}
    return {"num_cpus": 1, "num_gpus": 1 / runs_per_gpu}


def train(ray, ws, runs: list, data: Path, resources: dict, key: str, log) -> tuple[dict[str, dict], dict[str, str]]:
    """Submit every run of `runs` ((arm, seed) pairs) as a task; write each one's kept files into ws.out as it
    ends. Returns the records of the runs kept and why each other run failed; `log(line)` tells the progress."""
    from .grids import run_name
    from .runs import store_kept
    from .worker import study_config

    config = study_config(ws, data, runs, key)
    env = {"env_vars": {"YOLO_INCEP_THREADS": str(resources["num_cpus"])}}  # torch's threads: the task's CPUs
    task = ray.remote(max_calls=1)(_task).options(**resources, runtime_env=env)
    pending = {task.remote(config, run_name(a.name, seed)): (a, seed) for a, seed in runs}
    gpu = f"{resources['num_gpus']:g} GPU" if resources["num_gpus"] else "1 CPU"
    log(f"submitted {len(pending)} runs to Ray, {gpu} each")
    done: dict[str, dict] = {}
    failed: dict[str, str] = {}
    try:
        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
            arm, seed = pending.pop(ref)
            name = run_name(arm.name, seed)
            try:
                result = ray.get(ref)
            except Exception as e:  # noqa: BLE001 - the task's failure, reported; the others go on
                failed[name] = one_line(getattr(e, "cause", None) or e)
                log(f"{name}: failed ({failed[name]})")
                continue
            store_kept(ws.kept(arm, seed), result["files"])
            done[name] = result["record"]
            log(f"{name}: done on {result['record']['host']}, {result['record']['batches']} optimizer steps")
    finally:
        for ref in pending:  # Ctrl-C or an error here: no task trains on for nobody
            ray.cancel(ref, force=True)
    return done, failed


def _task(config: dict, name: str) -> dict:
    """One run in a Ray worker: trained in this node's temp folder, its kept files returned as bytes."""
    from .worker import study_run

    root = Path(tempfile.gettempdir()) / f"yolo-incep-ray-{config['key']}"
    config = config | {"root": str(root), "kept": str(root / "kept")}
    record = study_run(config, name)
    folder = root / "kept" / "runs" / name
    return {"record": record,
            "files": {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}}
