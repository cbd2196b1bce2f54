"""One run of the benchmark: the data it trains and is scored on, its training (resumed when interrupted), and
what is kept of it once finished.

Data: a study's own dataset (`--data`: trained on its train split, scored on its val split, ignored regions kept
where it has ignore/ sidecars), or for the VisDrone presets the shared sample, split by sequence (239 train / 60 val
frames, seed 0), the train frames cut into native-resolution tiles and evaluation on the untiled val frames. Every
arm/seed is a run folder that is resumed from its last.pt when interrupted and, once finished, kept in the report
folder (`runs/<arm>-s<seed>/`) as its predictions on the val split, its step log and its record, and skipped from
then on: a grid can be completed over several sittings, also from a fresh checkout when the kept runs are committed.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .. import recipe
from ..eval.predictions import compress  # the kept files' one packer (xz)
from ..files import atomic_write_bytes
from .grids import GridArm, run_name


@dataclass
class Workspace:
    """Where one budget's data, runs and comparison live (`root`), where finished runs are kept (`out`), and the
    study's own dataset YAML (`data`; None: the VisDrone sample, prepared in `root`)."""

    root: Path
    budget: recipe.Budget
    out: Path
    data: Path | None = None

    def kept(self, arm: GridArm, seed: int) -> Path:
        return self.out / "runs" / run_name(arm.name, seed)

    @property
    def frames(self) -> Path:
        return self.root / "visdrone"

    @property
    def tiles(self) -> Path:
        return self.root / f"tiles{self.budget.tile}"

    @property
    def eval_data(self) -> Path:
        """The data YAML whose val split every run is scored on."""
        return self.data or self.frames / "data.yaml"

    def run_dir(self, arm: GridArm, seed: int) -> Path:
        return self.root / "runs" / run_name(arm.name, seed)

    def frames_only(self) -> Path:
        """Convert the shared sample with its sequence split (the untiled val frames runs are scored on); a study's
        own dataset as it is."""
        from ..data.prepare import find_sample
        from ..data.visdrone import convert_visdrone

        if self.data:
            return self.data
        convert_visdrone(find_sample() / "VisDrone2019-DET-train", self.frames, val_fraction=0.2, seed=0)
        return self.frames / "data.yaml"

    def prepare(self) -> Path:
        """Convert the shared sample (sequence split) and tile its train frames; returns the train data YAML (a
        study's own dataset as it is)."""
        from ..data.tile import tile_dataset

        self.frames_only()
        if self.data:
            return self.data
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
    predictions). `callbacks(yolo)` adds trainer callbacks (the sitting's worker); `fresh` trains anew whatever is
    kept.
    """
    from ultralytics import YOLO

    kept = ws.kept(arm, seed)
    if (kept / "done.json").is_file() and not fresh:
        return json.loads((kept / "done.json").read_text())
    out = ws.run_dir(arm, seed)
    last, log = out / "weights" / "last.pt", out / "steps.jsonl"
    epoch = recipe.checkpoint_epoch(last)  # read once: it decides the state and trims the step log
    state = "fresh" if fresh else recipe.run_state(epoch)
    if state == "resume" and not arm.resumable():
        state = "fresh"
    if state == "fresh" and out.exists():
        shutil.rmtree(out)
    if state == "resume":  # steps logged after the saved epoch are done again: keep one line per step counted
        lines = [line for line in log.read_text().splitlines() if json.loads(line)["epoch"] <= epoch]
        atomic_write_bytes(log, "".join(f"{line}\n" for line in lines))
    t = time.perf_counter()
    if state != "done":
        with arm.building():
            yolo = YOLO(str(last) if state == "resume" else arm.model)
            recipe.add_callbacks(yolo, log, sitting_minutes)
            if callbacks is not None:
                callbacks(yolo)
            arm.attach(yolo)
            kwargs = {"resume": True} if state == "resume" else recipe.train_args(ws.budget, data, out.parent,
                                                                                   out.name, seed)
            try:
                yolo.train(**kwargs, verbose=False)
            except recipe.Pause as e:
                print(f"bench: {arm.name} seed {seed}: {e}", flush=True)
                return None
    steps = [json.loads(line) for line in log.read_text().splitlines()]
    record = {"arm": arm.name, "model": arm.model, "seed": seed, **arm.settings(), "batches": len(steps),
              "checkpoint": str(last), "last_sitting_s": round(time.perf_counter() - t, 1),
              "train_s": steps[-1]["t"] if steps else None,  # of the last sitting's clock
              "final_loss": _tail_mean([s["loss"] for s in steps], 100), "gamma": gamma_stats(last)}
    record["predictions"] = keep_predictions(ws, last, kept)
    atomic_write_bytes(kept / "steps.jsonl.xz", compress(kept / "steps.jsonl.xz", log.read_bytes()))
    atomic_write_bytes(kept / "done.json", json.dumps(record, indent=1))  # last: the run counts as kept from here
    return record


def store_kept(folder: Path, files: dict[str, bytes]) -> None:
    """A finished run's kept files (from another process or machine) into `folder`, done.json last: the run counts
    as kept only once every other file is there, as train_run writes them."""
    for name in sorted(files, key=lambda n: n == "done.json"):
        atomic_write_bytes(folder / name, files[name])


def label_caches(data: Path, disk: bool = False) -> None:
    """Ultralytics' label caches of the train and val splits (and with `disk` its .npy image cache of the train
    split), written once before runs train side by side: every run would otherwise write the same files at the same
    moment, and one could read another's half-written file."""
    import contextlib
    import io

    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    with contextlib.redirect_stdout(io.StringIO()):
        d = check_det_dataset(str(data))
        for split in ("train", "val"):
            YOLODataset(img_path=d[split], data=d, task="detect", augment=False,
                        cache="disk" if disk and split == "train" else False)


# compare's defaults (end-to-end models too: their one-to-many head and NMS, as Ultralytics' `nms=None` default), so
# kept predictions score as compare would score the checkpoint
KEEP = {"conf": 0.001, "iou": 0.7, "max_det": 500}


def keep_predictions(ws: Workspace, checkpoint: Path, kept: Path) -> list[str]:
    """Predict the val split (the sample's untiled val frames) with a finished checkpoint (whole images, and SAHI
    slices where the budget has them) and keep the detections in `kept`, as `compare` reads them: the file names,
    relative to `kept`.

    Settings are compare's defaults at the budget's image size, so a kept run scores as its checkpoint would.
    """
    from ..cost import model_cost
    from ..eval import coco, predictions
    from ..eval.models import has_sahi, load_model, predict, predict_sliced

    images, names = coco.load_data_yaml(ws.eval_data, "val")
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
