"""`yolo-incep bench`: a grid of arms x seeds trained under one budget, then compared with intervals.

    yolo-incep bench --budget cpu      # the CPU grid (resumable, several sittings)
    yolo-incep bench --budget gpu      # the GPU grid in one timed sitting (sitting.py)

Every arm/seed of a resumable grid is a run (runs.py), kept in the report folder (`--out`) once finished and skipped
from then on; `--sitting-minutes` ends a sitting cleanly after an epoch. The lab (experiments/) registers its own
grids and budgets (grids.register_grid, recipe.register_budget) and runs this command.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from .. import recipe
from ..errors import InputError
from ..files import atomic_write_bytes, folder_lock, path_lock
from . import grids
from .grids import runs_of

DEFAULT_WORK = Path("runs/bench_small")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--budget", choices=sorted(recipe.BUDGETS), default="smoke")
    parser.add_argument("--device", default=None, help="cpu, 0, cuda:0 (default: the budget's)")
    parser.add_argument("--work", type=Path, default=None,
                        help="scratch folder: data, tiles, checkpoints (default: with --out, one named after it in "
                             f"the system's temp folder, printed at the start; else {DEFAULT_WORK}/<budget>)")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"report folder (default: {DEFAULT_WORK}/<budget>/report); for --budget gpu, the "
                             "folder of the sitting's files")
    parser.add_argument("--arms", nargs="+", default=None, help="arm names of the budget's grid to run (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None,
                        help="only these seeds of each arm (default: all): two processes can train one arm's seeds")
    parser.add_argument("--sitting-minutes", type=float, default=0,
                        help="stop cleanly after the epoch that would cross this many minutes; rerun to resume")
    parser.add_argument("--no-compare", action="store_true", help="train only")
    gpu = parser.add_argument_group("one timed GPU sitting (--budget gpu)")
    gpu.add_argument("--minutes", type=float, default=None,
                     help="the sitting's length, from start to the last file written (default: 8.5; rehearsal 1.5)")
    gpu.add_argument("--rehearse", action="store_true",
                     help="the same sitting on this CPU with tiny images, batches and epochs: the first 2 runs of "
                          "the grid, or those --arms and --seeds name (a test runs it)")
    gpu.add_argument("--no-speed", action="store_true", help="skip the GPU speed measurement before the grid")
    gpu.add_argument("--from", dest="from_", type=Path, default=None, metavar="FOLDER",
                     help="compare a finished sitting from its folder (bench.json, kept_runs.zip) into --out, a "
                          "folder outside it; needs the VisDrone sample (the val frames the runs predicted)")


def run(args: argparse.Namespace) -> int:
    """Train the missing runs of the grid, then compare every arm; or the GPU sitting."""
    if args.sitting_minutes < 0:
        raise InputError(f"--sitting-minutes {args.sitting_minutes:g}: must be 0 (no limit) or more")
    if args.budget not in grids.GRIDS:  # a budget whose grid the lab registers (experiments/grids.py)
        raise InputError(f"--budget {args.budget}: its grid is the lab's: python -m experiments.bench --budget "
                         f"{args.budget}")
    sitting = args.budget == "gpu" or args.rehearse or args.from_ or args.minutes is not None
    if sitting and args.budget != "gpu":
        raise InputError(f"--rehearse / --from / --minutes: only for --budget gpu, not {args.budget}")
    if sitting and not args.from_:  # it downloads nothing: Ultralytics' online check at its import would only wait
        os.environ.setdefault("YOLO_OFFLINE", "1")
    budget = recipe.BUDGETS[args.budget]
    if args.device:
        budget = replace(budget, device=args.device)
    if not args.rehearse and not args.from_:  # a device this machine lacks: refused before any data are prepared
        from ..limits import check_device

        check_device(budget.device)
    grid = _select(grids.GRIDS[args.budget], args)
    out = args.out or (args.work or DEFAULT_WORK / args.budget) / "report"
    work = args.work or (_scratch(args.budget, out) if args.out else DEFAULT_WORK / args.budget)
    if sitting:
        return _sitting(args, budget, grid, work, out)
    return _grid(args, budget, grid, work, out)


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
    key = hashlib.sha1(str(out.resolve()).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"yolo-incep-bench-{budget}-{key}"


def _grid(args: argparse.Namespace, budget: recipe.Budget, grid, work: Path, out: Path) -> int:
    """A resumable grid: train what is missing, run by run, then compare."""
    from .report import evaluate, versions
    from .runs import Workspace, train_run

    ws = Workspace(work, budget, out)
    print(f"bench: scratch {work}, report {out}", flush=True)
    # one writer per folder; side-by-side sittings (other --arms / --seeds) share the data and the report folder,
    # so they wait for each other there, and only the same arm and seed twice at once is refused
    with folder_lock(ws.root, wait=True):
        data = ws.prepare()
    runs: list[dict] = []
    for arm, seed in runs_of(grid):  # seed 0 of every arm first: partial grids stay paired
        print(f"bench: {arm.name} seed {seed}", flush=True)
        with path_lock(ws.run_dir(arm, seed)):  # beside it: a fresh run removes it
            record = train_run(ws, arm, seed, data, args.sitting_minutes)
        if record is None:
            return 0
        runs.append(record)
    if args.no_compare:
        return 0
    with folder_lock(out, wait=True), folder_lock(ws.root / "compare", wait=True):
        compare_s = evaluate(ws, grid, runs)
        bench = {"command": _command(args), "budget": args.budget, "settings": recipe.budget_dict(budget),
                 "arms": [a.describe() for a in grid], "runs": runs, "compare_s": compare_s, "versions": versions()}
        atomic_write_bytes(out / "bench.json", json.dumps(bench, indent=2))
    return 0


def _sitting(args: argparse.Namespace, budget: recipe.Budget, grid, work: Path, out: Path) -> int:
    """--budget gpu: train in one timed sitting, or compare a finished one (--from)."""
    from . import machine, sitting
    from .runs import Workspace

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
        sitting.check_model(arm.model)
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
    words = (["yolo-incep", "bench", "--budget", args.budget] + (["--arms", *args.arms] if args.arms else [])
             + (["--seeds", *map(str, args.seeds)] if args.seeds else []))
    words += ["--from", str(from_)] if from_ else []
    return " ".join(words + (["--device", args.device] if args.device else []))
