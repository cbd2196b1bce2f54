"""Synthetic VisDrone-like frames for compare's speed benchmark: ground truth, a model's detections, and the dataset
on disk (images, YOLO labels, data YAML) with saved predictions, as `compare` reads them.

1360 x 765 frames with about 125 mostly small objects each (log-normal sides around 20 px, 10 classes skewed as
VisDrone val) and 500 detections per frame and model: about half the objects found with 12 % box noise and scores
Beta(2, 3), the rest of the 500 spurious and less confident (Beta(1, 6)). The images are black: compare reads only
their sizes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CLASS_SHARE = np.array([0.22, 0.06, 0.03, 0.40, 0.08, 0.07, 0.02, 0.01, 0.05, 0.06])  # VisDrone-like skew
WIDTH, HEIGHT, OBJECTS, DETECTIONS = 1360, 765, 125, 500
NAMES = [f"c{c}" for c in range(len(CLASS_SHARE))]


def ground_truth(images: int, seed: int = 0) -> dict:
    """COCO ground truth (image ids 1..images): log-normal box sides around 20 px, classes by CLASS_SHARE."""
    rng = np.random.default_rng(seed)
    per = rng.poisson(OBJECTS, images)
    n = int(per.sum())
    side = np.exp(rng.normal(3.0, 0.6, n))
    w, h = side * rng.uniform(0.7, 1.4, n), side * rng.uniform(0.7, 1.4, n)
    x, y = rng.uniform(0, 1, n) * (WIDTH - w), rng.uniform(0, 1, n) * (HEIGHT - h)
    cat = rng.choice(len(CLASS_SHARE), n, p=CLASS_SHARE) + 1
    image = np.repeat(np.arange(1, images + 1), per)
    return {"images": [{"id": i, "width": WIDTH, "height": HEIGHT, "file_name": f"{i:05d}.jpg"}
                       for i in range(1, images + 1)],
            "annotations": [{"id": k + 1, "image_id": int(image[k]), "category_id": int(cat[k]),
                             "bbox": [float(x[k]), float(y[k]), float(w[k]), float(h[k])],
                             "area": float(w[k] * h[k]), "iscrowd": 0} for k in range(n)],
            "categories": [{"id": c + 1, "name": name} for c, name in enumerate(NAMES)]}


def detections(gt: dict, seed: int) -> list[dict]:
    """DETECTIONS per image: half the objects with 12 % box noise, the rest spurious and less confident."""
    rng = np.random.default_rng(seed)
    anns = gt["annotations"]
    image = np.array([a["image_id"] for a in anns], int)
    cat = np.array([a["category_id"] for a in anns], int)
    box = np.array([a["bbox"] for a in anns], float).reshape(-1, 4)
    found = rng.random(len(anns)) < 0.5
    image, cat, box = image[found], cat[found], box[found]
    jitter = rng.normal(0, 0.12, (len(box), 4)) * np.sqrt(box[:, 2] * box[:, 3])[:, None]
    hit = np.column_stack([box[:, :2] + jitter[:, :2], np.maximum(1.0, box[:, 2:] + jitter[:, 2:])])
    hit_score = rng.beta(2, 3, len(box))
    n_images = len(gt["images"])
    spurious = np.maximum(0, DETECTIONS - np.bincount(image, minlength=n_images + 1)[1:])
    s_image = np.repeat(np.arange(1, n_images + 1), spurious)
    side = np.exp(rng.normal(3.0, 0.6, len(s_image)))
    s_box = np.column_stack([rng.uniform(0, 1, len(side)) * (WIDTH - side),
                             rng.uniform(0, 1, len(side)) * (HEIGHT - side), side, side])
    s_cat = rng.choice(len(CLASS_SHARE), len(s_image), p=CLASS_SHARE) + 1
    s_score = rng.beta(1, 6, len(s_image))
    out = [{"image_id": int(i), "category_id": int(c), "score": float(s), "bbox": b.tolist()}
           for i, c, s, b in zip(image, cat, hit_score, hit)]
    out += [{"image_id": int(i), "category_id": int(c), "score": float(s), "bbox": b.tolist()}
            for i, c, s, b in zip(s_image, s_cat, s_score, s_box)]
    return out


def write_dataset(root: Path, images: int, models: int, seed: int = 0) -> tuple[Path, list[Path]]:
    """A val split of `images` synthetic frames under `root` (data.yaml, images/val, labels/val) and one saved
    predictions file per model (compare's self-describing form, boxes to 0.1 px, xz), seeded 1..models."""
    import cv2

    from ..eval import predictions

    gt = ground_truth(images, seed)
    (root / "images/val").mkdir(parents=True, exist_ok=True)
    (root / "labels/val").mkdir(parents=True, exist_ok=True)
    black = cv2.imencode(".jpg", np.zeros((HEIGHT, WIDTH, 3), np.uint8))[1].tobytes()
    rows: dict[int, list[str]] = {}
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        rows.setdefault(a["image_id"], []).append(
            f"{a['category_id'] - 1} {(x + w / 2) / WIDTH:.7f} {(y + h / 2) / HEIGHT:.7f} {w / WIDTH:.7f} "
            f"{h / HEIGHT:.7f}\n")
    paths = []
    for im in gt["images"]:
        path = root / "images/val" / im["file_name"]
        path.write_bytes(black)
        (root / "labels/val" / f"{path.stem}.txt").write_text("".join(rows.get(im["id"], [])))
        paths.append(path)
    data = root / "data.yaml"
    data.write_text(f"path: {root}\nval: images/val\nnames: {NAMES}\n")
    files = []
    for m in range(1, models + 1):
        files.append(root / f"predictions_m{m}.json.xz")
        predictions.write(files[-1], detections(gt, seed + m), paths, {"slice": 0})
    return data, files
