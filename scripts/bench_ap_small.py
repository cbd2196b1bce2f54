"""Cost per epoch of YOLO_INCEP_AP_SMALL: stock validation vs the AP_small@500 pass, on one model and val split.

    python scripts/bench_ap_small.py MODEL.pt --data DATA.yaml [--imgsz 320] [--batch 8] [--device cpu]

Prints JSON: seconds of Ultralytics' validation (what every epoch already pays) and of train_metric.ap_small (what
the option adds), their ratio, and the detection count (the COCO evaluation's cost grows with it).
"""

from __future__ import annotations

import argparse
import json
import time
from types import SimpleNamespace

from ultralytics import YOLO

from yolo_incep import train_metric
from yolo_incep.eval import coco


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--data", required=True)
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    yolo = YOLO(args.model)
    images, names = coco.load_data_yaml(args.data, "val")
    t = time.perf_counter()
    gt = coco.build_gt(images, names)
    gt_s = time.perf_counter() - t
    t = time.perf_counter()
    yolo.val(data=args.data, imgsz=args.imgsz, batch=args.batch, device=args.device, workers=0, plots=False,
             verbose=False)
    val_s = time.perf_counter() - t
    trainer = SimpleNamespace(ema=None, model=yolo.model.float(), args=SimpleNamespace(imgsz=args.imgsz),
                              device=args.device, batch_size=args.batch)
    t = time.perf_counter()
    ap = train_metric.ap_small(trainer, images, gt)
    ap_s = time.perf_counter() - t
    from yolo_incep.eval.models import predict  # the detection count, outside the timing

    n = len(predict(train_metric._InMemory(yolo.model), images, args.imgsz, args.device, args.batch, 0.001, 0.7, 500))
    print(json.dumps({"model": args.model, "data": args.data, "images": len(images), "imgsz": args.imgsz,
                      "device": args.device, "detections": n, "AP_small@500": round(ap, 5),
                      "ground_truth_once_s": round(gt_s, 2), "stock_val_s": round(val_s, 2),
                      "ap_small_s": round(ap_s, 2), "ap_small_over_val": round(ap_s / val_s, 2)}, indent=2))


if __name__ == "__main__":
    main()
