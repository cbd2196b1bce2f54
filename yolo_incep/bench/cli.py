"""`yolo-incep bench`: models x seeds trained with the same optimizer steps, then compared with intervals.

    yolo-incep bench --data D.yaml --models yolov8n.yaml yolov8n-incep.yaml --seeds 0 1 2 --epochs 50   # a study
    yolo-incep bench --data D.yaml --models ... --epochs 50 --device 0,1,2,3 --runs-per-gpu 2   # spread over GPUs
    yolo-incep bench --data D.yaml --models ... --epochs 50 --ray auto                         # as Ray tasks
    yolo-incep bench --preset cpu      # the VisDrone CPU grid (resumable, several sittings)
    yolo-incep bench --preset gpu      # the VisDrone GPU grid in one timed sitting (sitting.py)

Every arm/seed is a run (runs.py), kept in the report folder (`--out`) once finished and skipped from then on; one
device trains the runs one after another in this process (`--sitting-minutes` ends a sitting cleanly after an
epoch), several devices each in its own process (processes.py), Ray as tasks (cluster.py). A study of your own is
made by study.py; the presets are the VisDrone grids (grids.py). The lab (experiments/) registers its own grids and
budgets (grids.register_grid, recipe.register_budget) and runs this command. docs/bench.md says more.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

from .. import recipe
from ..errors import InputError, one_line
from ..files import atomic_write_bytes, folder_lock, path_lock
from . import grids
from .grids import run_name, runs_of
from .runs import Workspace

DEFAULT_WORK = Path("runs/bench_small")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    own = parser.add_argument_group("a study of your own: any data, any models, the same optimizer steps for all")
    own.add_argument("--data", default=None, help="any YOLO data YAML with train and val splits (ignore/ sidecars "
                                                   "kept in scoring); its val split scores every run")
    own.add_argument("--models", nargs="+", default=None, metavar="[NAME=]MODEL",
                     help="model YAMLs, or checkpoints (.pt) to fine-tune from; the first is the baseline")
    own.add_argument("--epochs", type=int, default=None, help="the budget in epochs ...")
    own.add_argument("--steps", type=int, default=None,
                     help="... or in optimizer steps (nbs = batch: one batch is one step), as the nearest whole epochs")
    own.add_argument("--imgsz", type=int, default=None, help="train and score image size (default: 640)")
    own.add_argument("--batch", type=int, default=None, help="images a step (default: 16)")
    own.add_argument("--versus", action="append", default=[], metavar="ARM=REF",
                     help="also the paired difference of model ARM to model REF (repeatable)")
    parser.add_argument("--preset", "--budget", dest="budget", choices=sorted(recipe.BUDGETS), default=None,
                        help="a VisDrone grid and its budget, instead of --data (default without --data: smoke)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None,
                        help="with --data, each model's seeds (default: 0); with a preset, only these of its "
                             "seeds (two processes can train one arm's seeds)")
    parser.add_argument("--device", default=None,
                        help="cpu, 0, or GPUs 0,1,2,3 (the runs spread over them, each in its own process); default: "
                             "the preset's, else the first GPU or the CPU")
    parser.add_argument("--runs-per-gpu", type=int, default=1, help="runs sharing each GPU at once (default: 1)")
    parser.add_argument("--ray", default=None, metavar="ADDRESS",
                        help=f"run each run as a Ray task: {cluster_modes()}; pip install 'yolo-incep[ray]'")
    parser.add_argument("--work", type=Path, default=None,
                        help="scratch folder: data, tiles, checkpoints (default: with --out, one named after it in "
                             f"the system's temp folder, printed at the start; else {DEFAULT_WORK}/<preset>)")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"report folder (default: {DEFAULT_WORK}/<preset>/report, with --data "
                             "runs/bench/<its folder's name>/report); for --preset gpu, the sitting's files")
    parser.add_argument("--arms", nargs="+", default=None, help="arm names of the preset's grid to run (default: all)")
    parser.add_argument("--sitting-minutes", type=float, default=0,
                        help="one device: stop cleanly after the epoch that would cross this many minutes; rerun to "
                             "resume")
    parser.add_argument("--no-compare", action="store_true", help="train only")
    gpu = parser.add_argument_group("one timed GPU sitting (--preset gpu)")
    gpu.add_argument("--minutes", type=float, default=None,
                     help="the sitting's length, from start to the last file written (default: 8.5; rehearsal 1.5)")
    gpu.add_argument("--rehearse", action="store_true",
                     help="the same sitting on this CPU with tiny images, batches and epochs: the first 2 runs of "
                          "the grid, or those --arms and --seeds name (a test runs it)")
    gpu.add_argument("--no-speed", action="store_true", help="skip the GPU speed measurement before the grid")
    gpu.add_argument("--from", dest="from_", type=Path, default=None, metavar="FOLDER",
                     help="compare a finished sitting from its folder (bench.json, kept_runs.zip) into --out, a "
                          "folder outside it; needs the VisDrone sample (the val frames the runs predicted)")


def cluster_modes() -> str:
    from .cluster import MODES

    return MODES


def run(args: argparse.Namespace) -> int:
    """A study of your own (--data), or a preset: train the missing runs, then compare every arm; or the GPU
    sitting."""
    if args.sitting_minutes < 0:
        raise InputError(f"--sitting-minutes {args.sitting_minutes:g}: must be 0 (no limit) or more")
    if args.data is not None:
        return _own_study(args)
    given = [f for f, v in (("--models", args.models), ("--epochs", args.epochs), ("--steps", args.steps),
                            ("--imgsz", args.imgsz), ("--batch", args.batch), ("--versus", args.versus)) if v]
    if given:
        raise InputError(f"{given[0]}: only for a study of your own, with --data (a preset's grid and budget are "
                         "fixed)")
    args.budget = args.budget or "smoke"
    if args.budget not in grids.GRIDS:  # a budget whose grid the lab registers (experiments/grids.py)
        raise InputError(f"--budget {args.budget}: its grid is the lab's: python -m experiments.bench --budget "
                         f"{args.budget}")
    sitting = args.budget == "gpu" or args.rehearse or args.from_ or args.minutes is not None
    if sitting and args.budget != "gpu":
        raise InputError(f"--rehearse / --from / --minutes: only for --budget gpu, not {args.budget}")
    if sitting and (args.ray or args.runs_per_gpu != 1 or "," in (args.device or "")):
        raise InputError("--budget gpu is one timed sitting on one GPU: --ray, --runs-per-gpu and several devices "
                         "are for the other presets and for --data")
    if sitting and not args.from_:  # it downloads nothing: Ultralytics' online check at its import would only wait
        os.environ.setdefault("YOLO_OFFLINE", "1")
    budget = recipe.BUDGETS[args.budget]
    grid = _select(grids.GRIDS[args.budget], args)
    out = args.out or (args.work or DEFAULT_WORK / args.budget) / "report"
    work = args.work or (_scratch(args.budget, out) if args.out else DEFAULT_WORK / args.budget)
    if sitting:
        if args.device:
            budget = replace(budget, device=args.device)
        if not args.rehearse and not args.from_:  # a device this machine lacks: refused before any data are prepared
            from ..limits import check_device

            check_device(budget.device)
        return _sitting(args, budget, grid, work, out)
    where = _where(args, args.device or budget.device)
    budget = replace(budget, device=where.device)
    return _grid(args, Workspace(work, budget, out), grid, where)


def _own_study(args: argparse.Namespace) -> int:
    """--data: the user's models, seeds and budget on the user's dataset, every check before anything trains."""
    from . import study

    if args.budget or args.arms or args.rehearse or args.from_ or args.minutes is not None:
        raise InputError("--data: a study of your own takes --models (not --preset, --arms or the GPU sitting's "
                         "flags)")
    if not args.models:
        raise InputError("--data: name the models to compare: --models A.yaml B.yaml ... (the first is the baseline)")
    data = study.dataset(args.data)
    settings = (data, args.imgsz or 640, args.batch or 16, args.epochs, args.steps)
    study.budget(*settings, "cpu")  # its arguments checked before the models are built or Ray is reached
    grid = study.arms(args.models, args.seeds, args.versus, len(data.names))
    where = _where(args, args.device or (None if args.ray else study.default_device()))
    budget = study.budget(*settings, where.device)
    out = args.out or Path("runs/bench") / data.yaml.parent.name / "report"
    work = args.work or _scratch("study", out)
    return _grid(args, Workspace(work, budget, out, data.yaml), grid, where)


@dataclass
class _Where:
    """Where the runs train: this process (one slot), processes on device slots, or Ray tasks; `device` is what
    each run's budget says (the GPU a run's process sees is its device 0)."""

    device: str
    slots: list[str]
    ray: object = None
    resources: dict | None = None
    started_ray: bool = False


def _where(args: argparse.Namespace, device: str | None) -> _Where:
    """The devices checked (or Ray reached) before anything trains."""
    if args.ray:
        from . import cluster

        ray, started = cluster.connect(args.ray)
        resources = cluster.shares(ray, device, args.runs_per_gpu)
        where = _Where("0" if resources["num_gpus"] else "cpu", [], ray, resources, started)
    else:
        from .study import slots

        found = slots(device, args.runs_per_gpu)
        where = _Where("cpu" if found[0] == "cpu" else "0" if len(found) > 1 else found[0], found)
    if args.sitting_minutes and (args.ray or len(where.slots) > 1):
        raise InputError("--sitting-minutes: only for runs one after another on one device")
    return where


def _select(grid, args: argparse.Namespace):
    """The grid's arms and seeds that --arms and --seeds name."""
    if args.arms:
        unknown = sorted(set(args.arms) - {a.name for a in grid})
        if unknown:
            raise InputError(f"--arms: {', '.join(unknown)} not in the {args.budget} grid "
                             f"({', '.join(a.name for a in grid)})")
        grid = tuple(a for a in grid if a.name in args.arms)
    if args.seeds:
        grid = tuple(replace(a, seeds=tuple(s for s in a.seeds if s in args.seeds)) for a in grid)
        grid = tuple(a for a in grid if a.seeds)
        if not grid:
            raise InputError(f"--seeds: no arm to run has seed {' or '.join(map(str, args.seeds))}")
    return grid


def _scratch(budget: str, out: Path) -> Path:
    """The scratch folder of a run with --out and without --work: in the system's temp folder, the same for the same
    --out (an interrupted grid resumes there; a sitting's rerun finds what the last one left running)."""
    return Path(tempfile.gettempdir()) / f"yolo-incep-bench-{budget}-{_key(out)}"


def _key(out: Path) -> str:
    return hashlib.sha1(str(out.resolve()).encode()).hexdigest()[:10]


def _grid(args: argparse.Namespace, ws: Workspace, grid, where: _Where) -> int:
    """A resumable grid: train what is missing (here, in processes on device slots, or as Ray tasks), then compare
    the runs that took the same steps."""
    from .report import evaluate, planned_steps, same_steps, versions

    print(f"bench: scratch {ws.root}, report {ws.out}", flush=True)
    try:
        # one writer per folder; side-by-side sittings (other --arms / --seeds) share the data and the report
        # folder, so they wait for each other there, and only the same arm and seed twice at once is refused
        with folder_lock(ws.root, wait=True):
            data = ws.prepare()
        if where.ray or len(where.slots) > 1:
            runs, failed = _spread(ws, grid, data, where)
        else:
            done = _one_by_one(ws, grid, data, args.sitting_minutes)
            if done is None:
                return 0
            runs, failed = done
    finally:
        if where.started_ray:
            where.ray.shutdown()
    if args.no_compare:
        return 1 if failed else 0
    planned = planned_steps(data, ws.budget)
    runs, steps = same_steps(runs, planned)
    if not runs:
        raise InputError(f"no run finished{f' ({len(failed)} failed)' if failed else ''}: nothing to compare")
    with folder_lock(ws.out, wait=True), folder_lock(ws.root / "compare", wait=True):
        compare_s = evaluate(ws, grid, runs)
        bench = {"command": _command(args), "budget": args.budget or "study", "data": str(ws.eval_data),
                 "settings": recipe.budget_dict(ws.budget), "steps": steps,
                 "arms": [a.describe() for a in grid], "runs": runs, "failed": failed, "compare_s": compare_s,
                 "versions": versions()}
        atomic_write_bytes(ws.out / "bench.json", json.dumps(bench, indent=2))
    print(f"bench: every compared run took {steps['taken']} optimizer steps of {ws.budget.batch} images "
          f"({ws.budget.epochs} epoch(s)); {len(failed)} run(s) failed", flush=True)
    return 1 if failed else 0


def _one_by_one(ws: Workspace, grid, data: Path, sitting_minutes: float):
    """Every run in this process, one after another: the records of the runs kept and why each other run failed (a
    failure, its traceback printed, ends that run only); None when the sitting's time paused one."""
    from . import runs as run
    from .steps import same_batch

    records, failed = [], {}
    for arm, seed in runs_of(grid):  # seed 0 of every arm first: partial grids stay paired
        print(f"bench: {arm.name} seed {seed}", flush=True)
        try:
            with path_lock(ws.run_dir(arm, seed)):  # beside it: a fresh run removes it
                record = run.train_run(ws, arm, seed, data, sitting_minutes, callbacks=lambda yolo: yolo.add_callback(
                    "on_train_epoch_start", same_batch(ws.budget.batch)))
        except InputError:  # the user's to fix (another process trains this run): nothing else is started
            raise
        except Exception as e:  # noqa: BLE001 - reported, and the other runs go on
            traceback.print_exc()
            failed[run_name(arm.name, seed)] = one_line(e)
            print(f"bench: {run_name(arm.name, seed)}: failed ({one_line(e)})", file=sys.stderr, flush=True)
            continue
        if record is None:
            return None
        records.append(record)
    return records, failed


def _spread(ws: Workspace, grid, data: Path, where: _Where) -> tuple[list[dict], dict[str, str]]:
    """The runs not kept yet in processes on the device slots, or as Ray tasks; every kept run's record in grid
    order, and why each failed run failed."""
    from .runs import label_caches

    kept, todo = {}, []
    for arm, seed in runs_of(grid):
        done = ws.kept(arm, seed) / "done.json"
        if done.is_file():
            kept[run_name(arm.name, seed)] = json.loads(done.read_text())
        else:
            todo.append((arm, seed))
    failed = {}
    if todo:
        label_caches(data)  # once, before the runs read the dataset side by side
        if where.ray:
            from . import cluster

            new, failed = cluster.train(where.ray, ws, todo, data, where.resources, _key(ws.out),
                                        lambda line: print(f"bench: {line}", flush=True))
        else:
            from . import processes

            new, failed = processes.train(ws, todo, data, where.slots, _key(ws.out))
        kept |= new
    return [kept[n] for n in (run_name(a.name, s) for a, s in runs_of(grid)) if n in kept], failed


def _sitting(args: argparse.Namespace, budget: recipe.Budget, grid, work: Path, out: Path) -> int:
    """--budget gpu: train in one timed sitting, or compare a finished one (--from)."""
    from . import machine, sitting
    from .study import check_model

    if args.minutes is not None and not 1 <= args.minutes <= 600:
        raise InputError(f"--minutes {args.minutes:g}: expected 1 to 600")
    if args.from_:  # predictions are scored, not made: no GPU needed
        ws = Workspace(work, budget, out)
        with folder_lock(out, wait=False):
            return sitting.report_from(args.from_, ws, args.device or "cpu", _command(args, args.from_))
    if args.rehearse:  # import only what the lent machine has, here and in every process of the sitting
        os.environ[machine.REHEARSAL_ENV] = "1"
    machine.enter()
    for arm in grid:  # every model of the grid builds, also when the rehearsal trains two of them
        check_model(arm.model)
    if args.rehearse:
        budget = sitting.rehearsal_budget(budget)
        if not (args.arms or args.seeds):
            grid = _first_runs(grid, 2)  # 2 runs share 2 cores
    print(f"bench: scratch {work}", file=sys.stderr, flush=True)
    ws = Workspace(work, budget, work / "kept")
    with folder_lock(out, wait=False), folder_lock(ws.root, wait=False):
        return sitting.run(ws, grid, args, args.budget)


def _first_runs(grid, n: int):
    """The grid cut to its first n runs, in the order they would run."""
    keep = runs_of(grid)[:n]
    arms = [replace(a, seeds=tuple(s for b, s in keep if b is a)) for a in grid]
    return tuple(a for a in arms if a.seeds)


def _command(args: argparse.Namespace, from_: Path | None = None) -> str:
    """The command that reproduces this report."""
    words = ["yolo-incep", "bench"]
    for flag, value in (("--data", args.data), ("--models", args.models), ("--budget", args.budget),
                        ("--arms", args.arms), ("--seeds", args.seeds), ("--epochs", args.epochs),
                        ("--steps", args.steps), ("--imgsz", args.imgsz), ("--batch", args.batch),
                        ("--from", from_), ("--device", args.device), ("--ray", args.ray)):
        if value is not None:
            words += [flag, *map(str, value if isinstance(value, list) else [value])]
    words += [w for pair in args.versus for w in ("--versus", pair)]
    return " ".join(words + (["--runs-per-gpu", str(args.runs_per_gpu)] if args.runs_per_gpu != 1 else []))
