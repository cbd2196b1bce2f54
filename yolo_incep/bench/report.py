"""The comparison of a grid's kept runs: `compare` on the val split (the sample's untiled val frames), every arm's
seeds together, only runs that took the same optimizer steps, and what bench.json says of it."""

from __future__ import annotations

import time
from pathlib import Path

from .. import recipe
from ..files import atomic_write_bytes
from .grids import run_name
from .runs import Workspace


def evaluate(ws: Workspace, grid, runs: list[dict]) -> float:
    """Compare every arm of `grid` (its seeds together) from the kept predictions of `runs`; write report.json /
    .csv and plots into `ws.out`. Returns compare's seconds. Saved predictions are scored, not made: on the CPU,
    wherever the runs trained."""
    from ..eval import compare

    models, versus = kept_arms(ws, grid, runs)
    t = time.perf_counter()
    report = compare.compare_models(models, ws.eval_data, imgsz=ws.budget.compare_imgsz, out=ws.root / "compare",
                                    device="cpu", versus=versus)
    seconds = time.perf_counter() - t
    for path in sorted((ws.root / "compare").iterdir()):
        if path.suffix in {".json", ".csv", ".png"} and not path.name.startswith(("gt", "predictions")):
            atomic_write_bytes(ws.out / path.name, path.read_bytes())
    print(report)
    print(f"bench: wrote {ws.out}")
    return round(seconds, 1)


def planned_steps(data: Path, budget: recipe.Budget) -> int:
    """The optimizer steps every run of `budget` takes on the train split of `data`."""
    from ..data.yolo import read_data_yaml

    return recipe.optimizer_steps(len(read_data_yaml(data).images("train")), budget)


def same_steps(runs: list[dict], planned: int) -> tuple[list[dict], dict]:
    """The runs that took the study's optimizer steps (the plan's, or if no run took it, those the first run took:
    Ultralytics drops unreadable images), and what bench.json says of the steps; a run that took others is left
    out, named."""
    taken = planned if any(r["batches"] == planned for r in runs) or not runs else runs[0]["batches"]
    kept = [r for r in runs if r["batches"] == taken]
    left_out = {run_name(r["arm"], r["seed"]): r["batches"] for r in runs if r["batches"] != taken}
    if left_out:
        print(f"bench: left out of the comparison, for steps other than the {taken} of the others: "
              f"{', '.join(f'{n} ({s})' for n, s in left_out.items())}", flush=True)
    return kept, {"planned": planned, "taken": taken, "left_out": left_out,
                  "note": "optimizer steps, one a batch (nbs = batch); every compared run took `taken`"}


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


def versions() -> dict[str, str]:
    """Versions that decide the numbers."""
    import torch
    import ultralytics

    from .. import __version__

    return {"yolo_incep": __version__, "ultralytics": ultralytics.__version__, "torch": torch.__version__}
