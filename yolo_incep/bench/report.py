"""The comparison of a grid's kept runs: `compare` on the untiled val frames, every arm's seeds together, and what
bench.json says of it."""

from __future__ import annotations

import time

from ..files import atomic_write_bytes
from .runs import Workspace


def evaluate(ws: Workspace, grid, runs: list[dict]) -> float:
    """Compare every arm of `grid` (its seeds together) from the kept predictions of `runs`; write report.json /
    .csv and plots into `ws.out`. Returns compare's seconds."""
    from ..eval import compare

    models, versus = kept_arms(ws, grid, runs)
    t = time.perf_counter()
    report = compare.compare_models(models, ws.frames / "data.yaml", imgsz=ws.budget.compare_imgsz,
                                    out=ws.root / "compare", device=ws.budget.device, versus=versus)
    seconds = time.perf_counter() - t
    for path in sorted((ws.root / "compare").iterdir()):
        if path.suffix in {".json", ".csv", ".png"} and not path.name.startswith(("gt", "predictions")):
            atomic_write_bytes(ws.out / path.name, path.read_bytes())
    print(report)
    print(f"bench: wrote {ws.out}")
    return round(seconds, 1)


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
