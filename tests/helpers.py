"""Helpers shared by the test modules (imported as `from helpers import ...`; conftest.py holds only fixtures)."""

import subprocess
from pathlib import Path

import numpy as np

# ---- models and layers: test_plugin, test_layers, test_fuse, test_zoo, test_head, test_weights, lab tests

TRAIN = dict(epochs=1, imgsz=64, batch=8, workers=0, device="cpu", plots=False, amp=False, exist_ok=True)
TRAIN_ARGS = [f"{k}={v}" for k, v in TRAIN.items()]  # the same settings as `yolo train` arguments


def run_process(cmd: list, env: dict, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    """Run a child process (a fresh interpreter or the stock `yolo` CLI) and capture its text output."""
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=300, check=False, **kwargs)


def layer_shapes(model, imgsz: int = 64) -> list:
    """Output shape of every row but the head, for a zero image in eval mode: width and depth scaling, row by row."""
    import torch

    shapes = []
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape))) for m in model.model[:-1]]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, imgsz, imgsz))
    for h in hooks:
        h.remove()
    return shapes


def randomize_params(module, seed: int = 0) -> None:
    """Every parameter drawn from N(0, 0.2^2): outputs of order 1, where a 1e-5 tolerance is meaningful."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def randomize_norms(module, seed: int = 0, var: tuple[float, float] = (0.5, 1.5)) -> None:
    """Non-trivial BatchNorm statistics and affines and MetaNeXt layer scales, so that folding them, or mixing them
    up between layers, shows in the outputs (fresh BN is the identity, fresh layer scales are 1e-6)."""
    import torch
    from torch import nn

    from yolo_incep.nn import MetaNeXtBlock

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * (var[1] - var[0]) + var[0])
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            if isinstance(m, MetaNeXtBlock) and m.gamma is not None:
                m.gamma.copy_(torch.rand(m.gamma.shape, generator=g) * 0.5 + 0.5)


# ---- evaluation (compare, errors, curves): COCO scenes built by hand and a tiny YOLO val set on disk

A, B = 1, 2  # category ids
COMPARE_SIZE = 96  # height of the `data` fixture's images (width: twice that)


def make_gt(boxes: list[tuple], n_images: int = 1, names=("a", "b")) -> dict:
    """COCO ground truth from (image_id, category_id, x, y, w, h[, iscrowd]) rows on 640 x 640 images."""
    gt = {"images": [{"id": i, "width": 640, "height": 640, "ignored_regions": []} for i in range(1, n_images + 1)],
          "annotations": [], "categories": [{"id": i + 1, "name": n} for i, n in enumerate(names)]}
    for k, (image_id, cat, x, y, w, h, *crowd) in enumerate(boxes, 1):
        gt["annotations"].append({"id": k, "image_id": image_id, "category_id": cat, "bbox": [x, y, w, h],
                                  "area": w * h, "iscrowd": crowd[0] if crowd else 0})
    return gt


def det(cat: int, x: float, y: float, w: float, h: float, score: float, image_id: int = 1) -> dict:
    return {"image_id": image_id, "category_id": cat, "bbox": [x, y, w, h], "score": score}


def random_scene(seed: int, nc: int = 3, n_images: int = 6, crowd: bool = False) -> tuple[dict, list[dict]]:
    """Boxes of all sizes; detections near them (some with the wrong class, some far off) and on background."""
    rng = np.random.default_rng(seed)
    boxes, dets = [], []
    for image_id in range(1, n_images + 1):
        for _ in range(rng.integers(1, 8)):
            w, h = rng.uniform(8, 150, 2)
            x, y = rng.uniform(0, 480, 2)
            cat = int(rng.integers(1, nc + 1))
            boxes.append((image_id, cat, x, y, w, h, int(crowd and rng.uniform() < 0.15)))
            for _ in range(rng.integers(0, 3)):
                kind = rng.integers(0, 5)
                dx, dy = rng.normal(0, [w, h]) * (0.05 if kind < 2 else 0.4)
                c = int(rng.integers(1, nc + 1)) if kind == 1 else cat
                dets.append(det(c, x + dx, y + dy, w * rng.uniform(0.8, 1.2), h * rng.uniform(0.8, 1.2),
                                float(rng.uniform()), image_id))
        for _ in range(rng.integers(0, 4)):
            w, h = rng.uniform(8, 100, 2)
            x, y = rng.uniform(0, 500, 2)
            dets.append(det(int(rng.integers(1, nc + 1)), x, y, w, h, float(rng.uniform()), image_id))
    return make_gt(boxes, n_images, names=[f"c{i}" for i in range(nc)]), dets


# ---- the benchmark: a VisDrone-layout source made up here, so that the GPU sitting's rehearsal needs no real sample

def make_visdrone_source(root: Path, sequences: int = 5, frames: int = 4, size: tuple[int, int] = (560, 320),
                         seed: int = 0) -> Path:
    """`root`/VisDrone2019-DET-train with `sequences` x `frames` noisy frames of `size` (w, h) px, each with 6-14
    small bright or dark boxes of VisDrone's 10 classes (annotation rows as VisDrone writes them); returns root."""
    import cv2

    rng = np.random.default_rng(seed)
    src = root / "VisDrone2019-DET-train"
    (src / "images").mkdir(parents=True)
    (src / "annotations").mkdir()
    w, h = size
    for s in range(sequences):
        for f in range(frames):
            stem = f"{s + 1:07d}_{f * 100:05d}_d_{s * frames + f:07d}"
            image = rng.integers(60, 120, (h, w, 3), dtype=np.uint8)
            rows = []
            for _ in range(rng.integers(6, 15)):
                bw, bh = (int(v) for v in rng.integers(6, 30, 2))
                x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
                category = int(rng.integers(1, 11))
                image[y:y + bh, x:x + bw] = 20 + 22 * category
                rows.append(f"{x},{y},{bw},{bh},1,{category},0,0")
            cv2.imwrite(str(src / "images" / f"{stem}.jpg"), image)
            (src / "annotations" / f"{stem}.txt").write_text("\n".join(rows) + "\n")
    return root
