"""The small-object benchmark protocol: a grid of arms x seeds trained under one budget, then compared with CIs.

    yolo-incep bench --budget cpu      # the CPU grid (resumable, several sittings)
    yolo-incep bench --budget gpu      # the GPU grid in one timed sitting (sprint.py)

Data: the shared VisDrone sample, split by sequence (239 train / 60 val frames, seed 0), the train frames cut into
native-resolution tiles; evaluation on the untiled val frames with `yolo-incep compare`. Every arm/seed is a run
folder that is resumed from its last.pt when interrupted and, once finished, kept in the report folder
(`--out`, default runs/bench_small/<budget>/report; runs/) as its predictions on the val frames, its step log and
its record, and skipped from then on, so a grid can be completed over several sittings, also from a fresh checkout
when the kept runs are committed; `--sitting-minutes` ends a sitting cleanly after an epoch. The lab
(experiments/) registers its own grids with `register_grid`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

from . import gpu_kit, recipe
from .eval.predictions import compress  # the kept files' one packer (xz)
from .files import atomic_write_bytes, folder_lock, path_lock
from .errors import InputError


@dataclass(frozen=True)
class GridArm:
    """One model configuration of a grid; `layer_scale` None means no layer scale, 'default' the class default."""

    name: str
    model: str
    seeds: tuple[int, ...] = (0,)
    layer_scale: float | None | str = "default"
    gamma_decay: bool = True  # Ultralytics decays every weight but biases and norm weights: gamma included
    versus: str | None = None  # another arm this one is also compared with (its stock counterpart)


GRIDS: dict[str, tuple[GridArm, ...]] = {
    # Baseline first; then the Inception backbone, stock P2 and the product Inception P2 model, each against its stock
    # counterpart. The last keeps its historical arm name so that its kept runs still match: the product
    # yolov8n-incep-p2.yaml is that design (Inception blocks at strides 16-32 only, stock P2 neck and head) now.
    # The ablation arms and the layer-scale 'study' grid are the lab's (experiments/grids.py): `python -m
    # experiments.bench` registers them (register_grid) and runs this protocol.
    "cpu": (GridArm("yolov8n", "yolov8n.yaml", (0, 1)), GridArm("yolov8n-incep", "yolov8n-incep.yaml", (0, 1)),
            GridArm("yolov8n-p2", "yolov8n-p2.yaml", (0, 1, 2)),
            GridArm("yolov8n-incep-p2-p45-stockhead", "yolov8n-incep-p2.yaml", (0, 1, 2), versus="yolov8n-p2"),
            # YOLO26: the recipe's fixed AdamW keeps MuSGD (optimizer=auto's pick past 10k steps) out
            GridArm("yolo26n", "yolo26n.yaml", (0, 1)), GridArm("yolo26n-incep", "yolo26n-incep.yaml", (0, 1),
                                                                versus="yolo26n"),
            GridArm("yolo26n-p2", "yolo26n-p2.yaml"),
            GridArm("yolo26n-incep-p2", "yolo26n-incep-p2.yaml", versus="yolo26n-p2")),
    "smoke": (GridArm("yolov8n", "yolov8n.yaml"), GridArm("yolov8n-incep", "yolov8n-incep.yaml")),
}


def register_grid(name: str, arms) -> None:
    """Add arms to grid `name`, or make it a grid, after the arms it has: how experiments/ adds its ablation arms.

    Registering an arm again (the same name and definition) does nothing; another arm under a taken name is an error.
    """
    grid = list(GRIDS.get(name, ()))
    taken = {a.name: a for a in grid}
    for arm in arms:
        if taken.get(arm.name, arm) != arm:
            raise ValueError(f"register_grid: grid {name!r} already has an arm {arm.name!r}: {taken[arm.name]}")
        if arm.name not in taken:
            grid.append(arm)
            taken[arm.name] = arm
    GRIDS[name] = tuple(grid)


# One 9-minute sitting on one GPU (sprint.py), every run at once, most important first: the main pair, stock P2
# and the product Inception P2 model, then YOLO26's (its stock models are the baseline users start from today).
GRIDS["gpu"] = (GridArm("yolov8n", "yolov8n.yaml", (0, 1)), GridArm("yolov8n-incep", "yolov8n-incep.yaml", (0, 1)),
                GridArm("yolov8n-p2", "yolov8n-p2.yaml"),
                GridArm("yolov8n-incep-p2", "yolov8n-incep-p2.yaml", versus="yolov8n-p2"),
                GridArm("yolo26n", "yolo26n.yaml", (0, 1)), GridArm("yolo26n-incep", "yolo26n-incep.yaml", (0, 1),
                                                                    versus="yolo26n"),
                GridArm("yolo26n-p2", "yolo26n-p2.yaml"),
                GridArm("yolo26n-incep-p2", "yolo26n-incep-p2.yaml", versus="yolo26n-p2"))


@contextlib.contextmanager
def layer_scale(value: float | None | str):
    """Build MetaNeXt blocks with this layer-scale init (None: none) while the context is open."""
    from .nn.layers import MetaNeXtBlock

    if value == "default":
        yield
        return
    default = MetaNeXtBlock.ls_init_default
    MetaNeXtBlock.ls_init_default = value
    try:
        yield
    finally:
        MetaNeXtBlock.ls_init_default = default


def _exempt_gamma(trainer) -> None:
    """Move every MetaNeXt layer scale from the decayed weight group to the undecayed norm-weight group."""
    gammas = {id(p) for n, p in trainer.model.named_parameters() if n.endswith(".gamma")}
    groups = trainer.optimizer.param_groups
    decayed = next(g for g in groups if g.get("param_group") == "weight")
    plain = next(g for g in groups if g.get("param_group") == "bn")
    plain["params"] += [p for p in decayed["params"] if id(p) in gammas]
    decayed["params"] = [p for p in decayed["params"] if id(p) not in gammas]


@dataclass
class Workspace:
    """Where one budget's data, runs and comparison live (`root`), and where finished runs are kept (`out`)."""

    root: Path
    budget: recipe.Budget
    out: Path

    def kept(self, arm: GridArm, seed: int) -> Path:
        return self.out / "runs" / f"{arm.name}-s{seed}"

    @property
    def frames(self) -> Path:
        return self.root / "visdrone"

    @property
    def tiles(self) -> Path:
        return self.root / f"tiles{self.budget.tile}"

    def run_dir(self, arm: GridArm, seed: int) -> Path:
        return self.root / "runs" / f"{arm.name}-s{seed}"

    def frames_only(self) -> Path:
        """Convert the shared sample with its sequence split (the untiled val frames runs are scored on)."""
        from .data.prepare import find_sample
        from .data.visdrone import convert_visdrone

        convert_visdrone(find_sample() / "VisDrone2019-DET-train", self.frames, val_fraction=0.2, seed=0)
        return self.frames / "data.yaml"

    def prepare(self) -> Path:
        """Convert the shared sample (sequence split) and tile its train frames; returns the train data YAML."""
        from .data.tile import tile_dataset

        self.frames_only()
        if not self.budget.tile:
            return self.frames / "data.yaml"
        tile_dataset(self.frames, self.tiles, size=self.budget.tile, overlap=0.2, splits=["train"])
        return self.tiles / "data.yaml"


def train_run(ws: Workspace, arm: GridArm, seed: int, data: Path, sitting_minutes: float = 0, callbacks=None,
              fresh: bool = False) -> dict | None:
    """Train one arm/seed unless finished; resume an interrupted one. Returns its record, None when paused.

    A finished run is kept in the report folder (`ws.kept`: its predictions on the untiled val frames,
    steps.jsonl.xz, done.json, written in that order) so that it survives a fresh checkout and the grid goes on
    from there in a later sitting; the checkpoint stays in the scratch folder (runs are compared by their
    predictions). `callbacks(yolo)` adds trainer callbacks (sprint.py's); `fresh` trains anew whatever is kept.
    """
    from ultralytics import YOLO

    kept = ws.kept(arm, seed)
    if (kept / "done.json").is_file() and not fresh:
        return json.loads((kept / "done.json").read_text())
    out = ws.run_dir(arm, seed)
    last, log = out / "weights" / "last.pt", out / "steps.jsonl"
    epoch = recipe.checkpoint_epoch(last)  # read once: it decides the state and trims the step log
    state = "fresh" if fresh else recipe.run_state(epoch)
    if state == "resume" and not arm.gamma_decay:  # its moved gamma group would not match a fresh optimizer
        state = "fresh"
    if state == "fresh" and out.exists():
        shutil.rmtree(out)
    if state == "resume":  # steps logged after the saved epoch are done again: keep one line per step counted
        lines = [line for line in log.read_text().splitlines() if json.loads(line)["epoch"] <= epoch]
        atomic_write_bytes(log, "".join(f"{line}\n" for line in lines))
    t = time.perf_counter()
    if state != "done":
        with layer_scale(arm.layer_scale):
            yolo = YOLO(str(last) if state == "resume" else arm.model)
            recipe.add_callbacks(yolo, log, sitting_minutes)
            if callbacks is not None:  # sprint.py's coordination of concurrent runs
                callbacks(yolo)
            if not arm.gamma_decay:
                yolo.add_callback("on_pretrain_routine_end", _exempt_gamma)
            kwargs = {"resume": True} if state == "resume" else recipe.train_args(ws.budget, data, out.parent,
                                                                                   out.name, seed)
            try:
                yolo.train(**kwargs, verbose=False)
            except recipe.Pause as e:
                print(f"protocol: {arm.name} seed {seed}: {e}", flush=True)
                return None
    steps = [json.loads(line) for line in log.read_text().splitlines()]
    record = {"arm": arm.name, "model": arm.model, "seed": seed, "layer_scale": arm.layer_scale,
              "gamma_decay": arm.gamma_decay, "batches": len(steps), "checkpoint": str(last),
              "last_sitting_s": round(time.perf_counter() - t, 1),
              "train_s": steps[-1]["t"] if steps else None,  # of the last sitting's clock
              "final_loss": _tail_mean([s["loss"] for s in steps], 100), "gamma": gamma_stats(last)}
    record["predictions"] = keep_predictions(ws, last, kept)
    atomic_write_bytes(kept / "steps.jsonl.xz", compress(kept / "steps.jsonl.xz", log.read_bytes()))
    atomic_write_bytes(kept / "done.json", json.dumps(record, indent=1))  # last: the run counts as kept from here
    return record


def keep_predictions(ws: Workspace, checkpoint: Path, kept: Path) -> list[str]:
    """Predict the untiled val frames with a finished checkpoint (whole frames, and SAHI slices where the budget
    has them) and keep the detections in `kept`, as `compare` reads them: the file names, relative to `kept`.

    Settings are compare's defaults at the budget's image size, so a kept run scores as its checkpoint would.
    """
    from .cost import model_cost
    from .eval import coco, predictions
    from .eval.models import has_sahi, load_model, predict, predict_sliced

    images, names = coco.load_data_yaml(ws.frames / "data.yaml", "val")
    yolo = load_model(str(checkpoint), names)
    imgsz, device = ws.budget.compare_imgsz, ws.budget.device
    params, gflops = model_cost(yolo.model, imgsz)
    info = {"checkpoint": str(checkpoint), "params": params, "gflops": gflops, "imgsz": imgsz, "conf": KEEP["conf"],
            "iou": KEEP["iou"], "max_det": KEEP["max_det"], "nms_free": False, "device": device, "slice": 0}
    files = {"predictions.json.xz": (predict(yolo, images, imgsz, device, batch=4, **KEEP), info)}
    if ws.budget.slice and has_sahi():  # the GPU machine has no sahi: its runs keep whole-frame predictions only
        dets, _ = predict_sliced(yolo, images, device, KEEP["conf"], ws.budget.slice, 0.2)
        files[f"predictions+slice{ws.budget.slice}.json.xz"] = (dets, info | {"slice": ws.budget.slice})
    for name, (dets, meta) in files.items():
        predictions.write(kept / name, dets, images, meta)
    return list(files)


# compare's defaults (end-to-end models too: their one-to-many head and NMS, as Ultralytics' `nms=None` default), so
# kept predictions score as compare would score the checkpoint
KEEP = {"conf": 0.001, "iou": 0.7, "max_det": 500}


def _tail_mean(rows: list[list[float]], n: int) -> list[float] | None:
    """Per-column mean of the last n rows (box, cls, dfl loss)."""
    tail = rows[-n:]
    return [round(sum(c) / len(tail), 4) for c in zip(*tail)] if tail else None


def gamma_stats(checkpoint: Path) -> dict | None:
    """Mean / max |gamma| per MetaNeXt block of a checkpoint (None for models without layer scales)."""
    import torch

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = ckpt.get("ema") or ckpt["model"]
    stats = {n.removesuffix(".gamma"): [round(float(p.abs().mean()), 5), round(float(p.abs().max()), 5)]
             for n, p in model.named_parameters() if n.endswith(".gamma")}
    return stats or None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--budget", choices=sorted(recipe.BUDGETS), default="smoke")
    parser.add_argument("--device", default=None, help="cpu, 0, cuda:0 (default: the budget's)")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: runs/bench_small/<budget>)")
    parser.add_argument("--out", type=Path, default=None,
                        help="report folder (default: runs/bench_small/<budget>/report); for --budget gpu, the "
                             "folder of the sitting's files")
    parser.add_argument("--arms", nargs="+", default=None, help="arm names of the budget's grid to run (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None,
                        help="only these seeds of each arm (default: all): two processes can train one arm's seeds")
    parser.add_argument("--sitting-minutes", type=float, default=0,
                        help="stop cleanly after the epoch that would cross this many minutes; rerun to resume")
    parser.add_argument("--no-compare", action="store_true", help="train only")
    gpu = parser.add_argument_group("one timed GPU sitting (--budget gpu)")
    gpu.add_argument("--minutes", type=float, default=None, help="the sitting's length (default: 9; rehearsal 2.2)")
    gpu.add_argument("--rehearse", action="store_true",
                     help="the same sitting on this CPU with tiny images, batches and epochs, 2 runs (a test runs it)")
    gpu.add_argument("--from", dest="from_", type=Path, default=None, metavar="FILES",
                     help="compare a finished sitting from its files (kept_runs.zip, bench.json) into --out")


def run(args: argparse.Namespace) -> int:
    """Train the missing runs of the grid, then compare every arm."""

    if args.sitting_minutes < 0:
        raise InputError(f"--sitting-minutes {args.sitting_minutes:g}: must be 0 (no limit) or more")
    budget = recipe.BUDGETS[args.budget]
    if args.device:
        budget = replace(budget, device=args.device)
    if args.budget not in GRIDS:  # a budget whose grid the lab registers (experiments/grids.py)
        raise InputError(f"--budget {args.budget}: its grid is the lab's: python -m experiments.bench --budget "
                         f"{args.budget}")
    grid = GRIDS[args.budget]
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
    work = args.work or Path("runs/bench_small") / args.budget
    out = args.out or work / "report"
    if args.budget == "gpu" or args.rehearse or args.from_ or args.minutes is not None:
        return _sitting(args, budget, grid, work, out)
    ws = Workspace(work, budget, out)
    # one writer per folder; side-by-side sittings (other --arms / --seeds) share the data and the report folder,
    # so they wait for each other there, and only the same arm and seed twice at once is refused
    with folder_lock(ws.root, wait=True):
        data = ws.prepare()

    runs: list[dict] = []
    for seed_index in range(max(len(a.seeds) for a in grid)):  # seed 0 of every arm first: partial grids stay paired
        for arm in grid:
            if seed_index < len(arm.seeds):
                print(f"protocol: {arm.name} seed {arm.seeds[seed_index]}", flush=True)
                with path_lock(ws.run_dir(arm, arm.seeds[seed_index])):  # beside it: a fresh run removes it
                    record = train_run(ws, arm, arm.seeds[seed_index], data, args.sitting_minutes)
                if record is None:
                    return 0
                runs.append(record)
    if args.no_compare:
        return 0
    with folder_lock(out, wait=True), folder_lock(ws.root / "compare", wait=True):
        return evaluate(ws, grid, runs, out, args)


def _sitting(args: argparse.Namespace, budget: recipe.Budget, grid, work: Path, out: Path) -> int:
    """--budget gpu: train in one timed sitting (sprint.py), or compare a finished one (--from)."""
    if args.budget != "gpu":
        raise InputError(f"--rehearse / --from / --minutes: only for --budget gpu, not {args.budget}")
    if args.rehearse:  # import only what the GPU machine has, here and in every run's process (gpu_kit.py)
        os.environ[gpu_kit.BLOCK_ENV] = "1"
        gpu_kit.block_if_rehearsing()
    from . import sprint

    if args.minutes is not None and not 1 <= args.minutes <= 600:
        raise InputError(f"--minutes {args.minutes:g}: expected 1 to 600")
    if args.from_:  # predictions are scored, not made: no GPU needed
        ws = Workspace(work, replace(budget, device=args.device or "cpu"), out)
        with folder_lock(out, wait=False):
            runs, settings = sprint.unpack(args.from_, ws)
            ws.budget = replace(ws.budget, compare_imgsz=settings["compare_imgsz"])  # the sitting's own
            with folder_lock(ws.root, wait=True):
                ws.frames_only()
            with folder_lock(ws.root / "compare", wait=False):
                return evaluate(ws, grid, runs, out, args)
    for arm in grid:  # every model of the grid builds, also when the rehearsal trains two of them
        sprint.check_model(arm.model)
    if args.rehearse:
        budget = sprint.rehearsal_budget(budget)
        grid = tuple(replace(a, seeds=a.seeds[:1]) for a in grid[:2])  # 2 runs share the 2 cores
    ws = Workspace(work, budget, work / "kept")
    with folder_lock(out, wait=False), folder_lock(ws.root, wait=False):
        return sprint.run(ws, grid, args, args.budget)


def evaluate(ws: Workspace, grid, runs: list[dict], out: Path, args: argparse.Namespace) -> int:
    """Compare every arm (its seeds together) on the untiled val frames; write the report and bench.json."""
    from .eval import compare

    models, versus = kept_arms(ws, grid, runs)
    t = time.perf_counter()
    report = compare.compare_models(models, ws.frames / "data.yaml", imgsz=ws.budget.compare_imgsz,
                                    out=ws.root / "compare", device=ws.budget.device, versus=versus)
    compare_s = time.perf_counter() - t
    for path in sorted((ws.root / "compare").iterdir()):
        if path.suffix in {".json", ".csv", ".png"} and not path.name.startswith(("gt", "predictions")):
            atomic_write_bytes(out / path.name, path.read_bytes())
    bench = {"command": _command(args),
             "budget": args.budget, "settings": recipe.budget_dict(ws.budget),
             "arms": [{"name": a.name, "model": a.model, "seeds": list(a.seeds), "layer_scale": a.layer_scale,
                       "gamma_decay": a.gamma_decay, "versus": a.versus} for a in grid],
             "runs": runs, "compare_s": round(compare_s, 1), "versions": versions()}
    atomic_write_bytes(out / "bench.json", json.dumps(bench, indent=2))
    print(report)
    print(f"protocol: wrote {out}")
    return 0


def kept_arms(ws: Workspace, grid, runs: list[dict]) -> tuple[list[str], dict[str, str]]:
    """compare's model arguments and --versus pairs for the kept predictions of `runs`: one arm per grid arm (its
    seeds together) and per kind of kept predictions (whole frames, '+slice<size>')."""
    arms: dict[str, list[str]] = {}
    for a in grid:
        for r in (r for r in runs if r["arm"] == a.name):
            for name in r.get("predictions", []):  # runs kept before predictions were kept have none
                kind = name.removeprefix("predictions").partition(".json")[0]
                arms.setdefault(a.name + kind, []).append(str(ws.kept(a, r["seed"]) / name))
    models = [f"{name}={','.join(files)}" for name, files in arms.items()]
    versus = {a.name: a.versus for a in grid if a.versus and a.name in arms and a.versus in arms}
    return models, versus


def _command(args: argparse.Namespace) -> str:
    """The command that reproduces this report."""
    words = (["yolo-incep", "bench", "--budget", args.budget] + (["--arms", *args.arms] if args.arms else [])
             + (["--seeds", *map(str, args.seeds)] if args.seeds else []))
    return " ".join(words + (["--device", args.device] if args.device else []))


def versions() -> dict[str, str]:
    """Versions that decide the numbers."""
    import torch
    import ultralytics

    from . import __version__

    return {"yolo_incep": __version__, "ultralytics": ultralytics.__version__, "torch": torch.__version__}
