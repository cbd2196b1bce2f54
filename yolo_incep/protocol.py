"""The small-object benchmark protocol: a grid of arms x seeds trained under one budget, then compared with CIs.

    yolo-incep bench --budget cpu      # the committed CPU grid (resumable, several sittings)
    yolo-incep bench --budget study    # layer-scale / weight-decay study of the Inception arm

Data: the shared VisDrone sample, split by sequence (239 train / 60 val frames, seed 0), the train frames cut into
native-resolution tiles; evaluation on the untiled val frames (plus SAHI slices) with `yolo-incep compare`. Every
arm/seed is a run folder that is resumed from its last.pt when interrupted and, once finished, kept beside the report
(docs/results/bench_small_<budget>/runs/) and skipped, so a grid can be completed over several sittings, also from a
fresh checkout; `--sitting-minutes` ends a sitting cleanly after an epoch.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

from . import recipe
from .data.common import atomic_write_bytes
from .errors import InputError


@dataclass(frozen=True)
class Arm:
    """One model configuration of a grid; `layer_scale` None means no layer scale, 'default' the class default."""

    name: str
    model: str
    seeds: tuple[int, ...] = (0,)
    layer_scale: float | None | str = "default"
    gamma_decay: bool = True  # Ultralytics decays every weight but biases and norm weights: gamma included
    versus: str | None = None  # another arm this one is also compared with (its stock counterpart)


GRIDS: dict[str, tuple[Arm, ...]] = {
    # Baseline first. The two main arms get 2 seeds; stock P2, the Inception backbone under its head (full and at
    # strides 16-32 only: seeds 1 and 2 of the latter not trained yet) and the nearest cheap P2 head 3; the other P2
    # arms 1 unless said (each ~42 min on 2 cores, ~60-75 min two side by side, ~110 min three).
    # The P2 Inception arm is the DetectIncep model; its stock-head form and the cheap-head experiments (each against
    # stock P2) follow, where time allows.
    "cpu": (Arm("yolov8n", "yolov8n.yaml", (0, 1)), Arm("yolov8n-incep", "yolov8n-incep.yaml", (0, 1)),
            Arm("yolov8n-p2", "yolov8n-p2.yaml", (0, 1, 2)),
            Arm("yolov8n-incep-p2", "yolov8n-incep-p2.yaml", versus="yolov8n-p2"),
            Arm("yolov8n-incep-p2-stockhead", "yolov8n-incep-p2-stockhead.yaml", (0, 1, 2), versus="yolov8n-p2"),
            Arm("yolov8n-p2-incephead", "yolov8n-p2-incephead.yaml", versus="yolov8n-p2"),
            Arm("yolov8n-p2-incephead-deep", "yolov8n-p2-incephead-deep.yaml", versus="yolov8n-p2"),
            Arm("yolov8n-p2-incephead-c2f", "yolov8n-p2-incephead-c2f.yaml", versus="yolov8n-p2"),
            Arm("yolov8n-p2-incephead-cls1", "yolov8n-p2-incephead-cls1.yaml", versus="yolov8n-p2"),
            Arm("yolov8n-p2-incephead-cls2", "yolov8n-p2-incephead-cls2.yaml", versus="yolov8n-p2"),
            Arm("yolov8n-p2-incephead-box2", "yolov8n-p2-incephead-box2.yaml", versus="yolov8n-p2"),
            Arm("yolov8n-p2-incephead-wide", "yolov8n-p2-incephead-wide.yaml", versus="yolov8n-p2"),
            Arm("yolov8n-p2-incephead-c2f-cls1", "yolov8n-p2-incephead-c2f-cls1.yaml", (0, 1), versus="yolov8n-p2"),
            Arm("yolov8n-p2-incephead-c2f-split", "yolov8n-p2-incephead-c2f-split.yaml", versus="yolov8n-p2"),
            Arm("yolov8n-p2-incephead-dense", "yolov8n-p2-incephead-dense.yaml", versus="yolov8n-p2"),
            Arm("yolov8n-p2-incephead-stemless", "yolov8n-p2-incephead-stemless.yaml", versus="yolov8n-p2"),
            Arm("yolov8n-p2-narrowhead", "yolov8n-p2-narrowhead.yaml", (0, 1, 2), versus="yolov8n-p2"),
            Arm("yolov8n-p2-narrowhead-c2f", "yolov8n-p2-narrowhead-c2f.yaml", versus="yolov8n-p2"),
            Arm("yolov8n-incep-p2-narrowhead", "yolov8n-incep-p2-narrowhead.yaml", versus="yolov8n-p2"),
            Arm("yolov8n-incep-p2-p45-stockhead", "yolov8n-incep-p2-p45-stockhead.yaml", (0, 1, 2),
                versus="yolov8n-p2"),
            Arm("yolov8n-incep-p2-p45-narrowhead", "yolov8n-incep-p2-p45-narrowhead.yaml", versus="yolov8n-p2")),
    # The layer-scale study, most telling arms first (a partial study still compares paper vs large init).
    "study": (Arm("yolov8n", "yolov8n.yaml"),
              Arm("incep-ls1e-6", "yolov8n-incep.yaml", layer_scale=1e-6),
              Arm("incep-ls1", "yolov8n-incep.yaml", layer_scale=1.0),
              Arm("incep-ls0.1", "yolov8n-incep.yaml", layer_scale=0.1),
              Arm("incep-nols", "yolov8n-incep.yaml", layer_scale=None),
              Arm("incep-ls1e-6-nowd", "yolov8n-incep.yaml", layer_scale=1e-6, gamma_decay=False)),
    "smoke": (Arm("yolov8n", "yolov8n.yaml"), Arm("yolov8n-incep", "yolov8n-incep.yaml")),
}
GRIDS["gpu"] = GRIDS["cpu"]


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

    def kept(self, arm: Arm, seed: int) -> Path:
        return self.out / "runs" / f"{arm.name}-s{seed}"

    @property
    def frames(self) -> Path:
        return self.root / "visdrone"

    @property
    def tiles(self) -> Path:
        return self.root / f"tiles{self.budget.tile}"

    def run_dir(self, arm: Arm, seed: int) -> Path:
        return self.root / "runs" / f"{arm.name}-s{seed}"

    def prepare(self) -> Path:
        """Convert the shared sample (sequence split) and tile its train frames; returns the train data YAML."""
        from .data.prepare import find_sample
        from .data.tile import tile_dataset
        from .data.visdrone import convert_visdrone

        convert_visdrone(find_sample() / "VisDrone2019-DET-train", self.frames, val_fraction=0.2, seed=0)
        if not self.budget.tile:
            return self.frames / "data.yaml"
        tile_dataset(self.frames, self.tiles, size=self.budget.tile, overlap=0.2, splits=["train"])
        return self.tiles / "data.yaml"


def train_run(ws: Workspace, arm: Arm, seed: int, data: Path, sitting_minutes: float = 0) -> dict | None:
    """Train one arm/seed unless finished; resume an interrupted one. Returns its record, None when paused.

    A finished run is kept in the report folder (`ws.kept`: last.pt, steps.jsonl, done.json, written in that order)
    so that it survives a fresh checkout and the grid goes on from there in a later sitting.
    """
    from ultralytics import YOLO

    kept = ws.kept(arm, seed)
    if (kept / "done.json").is_file():
        return json.loads((kept / "done.json").read_text())
    out = ws.run_dir(arm, seed)
    last, log = out / "weights" / "last.pt", out / "steps.jsonl"
    epoch = recipe.checkpoint_epoch(last)  # read once: it decides the state and trims the step log
    state = recipe.run_state(epoch)
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
              "gamma_decay": arm.gamma_decay, "batches": len(steps), "checkpoint": str(kept / "last.pt"),
              "last_sitting_s": round(time.perf_counter() - t, 1),
              "train_s": steps[-1]["t"] if steps else None,  # of the last sitting's clock
              "final_loss": _tail_mean([s["loss"] for s in steps], 100), "gamma": gamma_stats(last)}
    atomic_write_bytes(kept / "last.pt", last.read_bytes())
    atomic_write_bytes(kept / "steps.jsonl", log.read_bytes())
    atomic_write_bytes(kept / "done.json", json.dumps(record, indent=1))  # last: the run counts as kept from here
    return record


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
                        help="report folder (default: docs/results/bench_small_<budget>)")
    parser.add_argument("--arms", nargs="+", default=None, help="arm names of the budget's grid to run (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None,
                        help="only these seeds of each arm (default: all): two processes can train one arm's seeds")
    parser.add_argument("--sitting-minutes", type=float, default=0,
                        help="stop cleanly after the epoch that would cross this many minutes; rerun to resume")
    parser.add_argument("--no-compare", action="store_true", help="train only")


def run(args: argparse.Namespace) -> int:
    """Train the missing runs of the grid, then compare every arm."""

    budget = recipe.BUDGETS[args.budget]
    if args.device:
        budget = replace(budget, device=args.device)
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
    out = args.out or Path("docs/results") / f"bench_small_{args.budget}"
    ws = Workspace(args.work or Path("runs/bench_small") / args.budget, budget, out)
    data = ws.prepare()

    runs: list[dict] = []
    for seed_index in range(max(len(a.seeds) for a in grid)):  # seed 0 of every arm first: partial grids stay paired
        for arm in grid:
            if seed_index < len(arm.seeds):
                print(f"protocol: {arm.name} seed {arm.seeds[seed_index]}", flush=True)
                record = train_run(ws, arm, arm.seeds[seed_index], data, args.sitting_minutes)
                if record is None:
                    return 0
                runs.append(record)
    if args.no_compare:
        return 0
    return evaluate(ws, grid, runs, out, args)


def evaluate(ws: Workspace, grid, runs: list[dict], out: Path, args: argparse.Namespace) -> int:
    """Compare every arm (its seeds together) on the untiled val frames; write the report and bench.json."""
    from .eval import compare

    by_arm = {a.name: [r["checkpoint"] for r in runs if r["arm"] == a.name] for a in grid}
    models = [f"{name}={','.join(ckpts)}" for name, ckpts in by_arm.items() if ckpts]
    versus = {a.name: a.versus for a in grid if a.versus and by_arm[a.name] and by_arm.get(a.versus)}
    t = time.perf_counter()
    report = compare.compare_models(models, ws.frames / "data.yaml", imgsz=ws.budget.compare_imgsz,
                                    out=ws.root / "compare", device=ws.budget.device, slice_size=ws.budget.slice,
                                    versus=versus)
    compare_s = time.perf_counter() - t
    for path in sorted((ws.root / "compare").iterdir()):
        if path.suffix in {".json", ".csv", ".png"} and not path.name.startswith(("gt", "predictions")):
            atomic_write_bytes(out / path.name, path.read_bytes())
    bench = {"command": _command(args),
             "budget": args.budget, "settings": recipe.budget_dict(ws.budget),
             "arms": [{"name": a.name, "model": a.model, "seeds": list(a.seeds), "layer_scale": a.layer_scale,
                       "gamma_decay": a.gamma_decay, "versus": a.versus} for a in grid],
             "runs": runs, "compare_s": round(compare_s, 1), "versions": _versions()}
    atomic_write_bytes(out / "bench.json", json.dumps(bench, indent=2))
    print(report)
    print(f"protocol: wrote {out}")
    return 0


def _command(args: argparse.Namespace) -> str:
    """The command that reproduces this report."""
    words = (["yolo-incep", "bench", "--budget", args.budget] + (["--arms", *args.arms] if args.arms else [])
             + (["--seeds", *map(str, args.seeds)] if args.seeds else []))
    return " ".join(words + (["--device", args.device] if args.device else []))


def _versions() -> dict[str, str]:
    """Versions that decide the numbers."""
    import torch
    import ultralytics

    from . import __version__

    return {"yolo_incep": __version__, "ultralytics": ultralytics.__version__, "torch": torch.__version__}
