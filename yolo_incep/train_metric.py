"""Opt-in AP_small while training: ignore-aware AP_small@500 on the val split at every validation of a stock run.

`YOLO_INCEP_AP_SMALL=1 yolo train ...` adds the column `metrics/AP_small@500(B)` to results.csv (so results.png
plots it with the other metrics); `YOLO_INCEP_AP_SMALL=best` also makes it the fitness, so best.pt and early
stopping follow AP_small. Unset (or 0), nothing is registered and training is stock. The number is the one
`yolo-incep compare` reports: the EMA model predicts the val images again (conf 0.001, max_det 500, the run's
imgsz and `nms` setting: an end-to-end YOLO26 run with nms=False is scored on its one-to-one head, without a second
NMS) and the ignore-aware COCO ground truth of eval/coco.py scores them, since Ultralytics' own validation caps
detections at max_det (300) and knows no ignored regions. Its NMS has no time limit (eval/models.predictor_class).
"""

from __future__ import annotations

import os

ENV = "YOLO_INCEP_AP_SMALL"
COLUMN = "metrics/AP_small@500(B)"  # 'metric' in the name: Ultralytics' plot_results draws it
MODES = {"1": False, "log": False, "best": True}  # value -> whether it also selects best.pt


def install_from_env() -> None:
    """Register the callback with every Ultralytics trainer of this process when $YOLO_INCEP_AP_SMALL asks for it."""
    if os.environ.get(ENV, "0") in {"", "0"}:
        return
    from ultralytics.utils.callbacks.base import default_callbacks

    if on_train_start not in default_callbacks["on_train_start"]:
        default_callbacks["on_train_start"].append(on_train_start)


def select_best() -> bool:
    """Whether $YOLO_INCEP_AP_SMALL asks for best.pt by AP_small; an unknown value is an InputError."""
    from .errors import InputError

    value = os.environ.get(ENV, "1").strip().lower()
    if value not in MODES:
        raise InputError(f"{ENV}={value!r}: expected 1 or log (log AP_small per epoch), or best (also pick best.pt)")
    return MODES[value]


def on_train_start(trainer, best: bool | None = None) -> None:
    """Ultralytics callback: read the val ground truth once, then extend every validation by AP_small@500."""
    import time

    from ultralytics.utils import LOGGER, RANK

    from .eval import coco

    if RANK not in {-1, 0}:  # other DDP ranks validate nothing
        return
    if trainer.args.task != "detect":
        LOGGER.warning(f"{ENV}: AP_small needs a detect run, not {trainer.args.task!r}; training goes on without it")
        return
    best = select_best() if best is None else best
    images, names = coco.load_data_yaml(trainer.args.data, "val")
    gt = coco.build_gt(images, names)
    validate = trainer.validate
    trainer.metrics[COLUMN] = 0.0  # results.csv's header is written at the first epoch, validated or not

    def validate_with_ap_small():
        before = trainer.best_fitness
        metrics, fitness = validate()
        if metrics is None:
            return metrics, fitness
        t = time.perf_counter()
        metrics[COLUMN] = round(ap_small(trainer, images, gt), 5)
        LOGGER.info(f"{ENV}: AP_small@500 {metrics[COLUMN]:.4f} on {len(images)} val images "
                    f"({time.perf_counter() - t:.1f} s)")
        if best:
            fitness = metrics[COLUMN]
            trainer.best_fitness = fitness if before is None else max(before, fitness)
        return metrics, fitness

    trainer.validate = validate_with_ap_small


def ap_small(trainer, images, gt: dict) -> float:
    """AP_small@500 of the trainer's EMA model on `images` against `gt` (0 where the split has no small object)."""
    from ultralytics.utils.torch_utils import unwrap_model

    from .eval import coco
    from .eval.models import predict

    model = unwrap_model(trainer.ema.ema if trainer.ema else trainer.model)
    # the run's own `nms` setting, as its validation uses: nms=False scores an end-to-end model's one-to-one head
    dets = predict(_InMemory(model), images, trainer.args.imgsz, str(trainer.device), trainer.batch_size,
                   conf=0.001, iou=0.7, max_det=coco.MAX_DETS[-1], nms=getattr(trainer.args, "nms", None))
    backend = coco.available_backends()[-1]  # faster-coco-eval when installed: compare checks both agree
    m = coco.metrics(coco.run_cocoeval(gt, coco.drop_ignored(dets, gt), backend))
    return m["maxDets"][str(coco.MAX_DETS[-1])]["AP_small"] or 0.0


class _InMemory:
    """Enough of a YOLO model for models.predict: one predictor per evaluation, which fuses a copy, not the model."""

    def __init__(self, model):
        self.model, self.predictor = model, None

    def predict(self, source, stream: bool = False, *, predictor: type, **kwargs):
        if self.predictor is None:  # models.predict calls once per batch, always with the same settings: fuse once
            self.predictor = predictor(overrides=kwargs)  # models.predict passes its per-image-NMS predictor class
            self.predictor.setup_model(self.model, verbose=False)  # else every epoch logs the device and the summary
        return self.predictor(source, stream=stream)
