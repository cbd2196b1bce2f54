"""COCO evaluation of YOLO datasets: APs known by construction, ignored regions, both backends, bad input."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from yolo_incep.errors import InputError
from yolo_incep.eval import coco

W = H = 320


def make_dataset(root: Path, images: dict[str, tuple[list, list]], names=("a", "b")) -> Path:
    """data.yaml of a val split: {stem: (label rows 'cls cx cy w h', ignore rows 'cx cy w h')}, normalised to W x H."""
    for sub in ("images", "labels", "ignore"):
        (root / sub / "val").mkdir(parents=True, exist_ok=True)
    def text(rows: list) -> str:
        return "".join(" ".join(f"{v:.6f}" for v in r) + "\n" for r in rows)

    for stem, (labels, ignored) in images.items():
        cv2.imwrite(str(root / "images/val" / f"{stem}.png"), np.zeros((H, W, 3), np.uint8))
        (root / "labels/val" / f"{stem}.txt").write_text(text(labels))
        if ignored:
            (root / "ignore/val" / f"{stem}.txt").write_text(text(ignored))
    data = root / "data.yaml"
    data.write_text(f"path: {root}\nval: images/val\nnames: {list(names)}\n")
    return data


def px(cls: int, x: float, y: float, w: float, h: float) -> list[float]:
    """A label row from a pixel box (top-left x, y)."""
    return [cls, (x + w / 2) / W, (y + h / 2) / H, w / W, h / H]


# small (20x20 = 400 px^2 < 32^2), medium (50x50), large (120x120) objects
OBJECTS = [px(0, 10, 10, 20, 20), px(1, 100, 100, 50, 50), px(0, 180, 180, 120, 120), px(1, 60, 20, 20, 20)]


@pytest.fixture
def gt(tmp_path) -> dict:
    images, names = coco.load_data_yaml(make_dataset(tmp_path, {"a": (OBJECTS, []), "b": (OBJECTS[:2], [])}), "val")
    return coco.build_gt(images, names)


def perfect(gt: dict, dx: float = 0.0) -> list[dict]:
    """One detection per non-ignored ground-truth box, shifted right by dx px."""
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "score": 0.9,
             "bbox": [a["bbox"][0] + dx, *a["bbox"][1:]]} for a in gt["annotations"] if not a["iscrowd"]]


def test_gt_has_exactly_the_label_boxes(gt):
    boxes = sorted((a["image_id"], a["category_id"], *np.round(a["bbox"], 3)) for a in gt["annotations"])
    expected = sorted((i, int(r[0]) + 1, *np.round(coco.to_xywh(np.array(r[1:]), W, H)[0], 3))
                      for i, rows in ((1, OBJECTS), (2, OBJECTS[:2])) for r in rows)
    assert boxes == expected
    assert gt["annotations"][0]["bbox"] == pytest.approx([10, 10, 20, 20], abs=1e-3)
    assert [im["width"] for im in gt["images"]] == [W, W]


def test_perfect_predictions_score_one_everywhere(gt):
    m = coco.evaluate(gt, perfect(gt))
    for md in ("100", "500"):
        assert all(v == pytest.approx(1.0) for v in m["maxDets"][md].values())
    assert m["per_class_AP_small"] == {"a": pytest.approx(1.0), "b": pytest.approx(1.0)}


def test_empty_predictions_score_zero(gt):
    m = coco.evaluate(gt, [])
    assert all(v == 0.0 for row in m["maxDets"].values() for v in row.values())


def test_shifted_predictions_match_only_up_to_their_iou(gt):
    # a 4 px shift of a 20 px box: IoU 16/24 = 0.667 -> matched at IoU thresholds .50 .55 .60 .65 of ten
    m = coco.evaluate(gt, [d for d in perfect(gt, dx=4) if d["bbox"][2] == 20])
    row = m["maxDets"]["100"]
    assert row["AP_small"] == pytest.approx(0.4)
    assert row["AR_small"] == pytest.approx(0.4)
    assert row["AP_medium"] == 0.0 and row["AP_large"] == 0.0
    assert m["per_class_AP_small"] == {"a": pytest.approx(0.4), "b": pytest.approx(0.4)}


def test_max_dets_500_counts_what_100_truncates(tmp_path):
    # 150 small objects of one class in one image: 100 detections per image recall 2/3, 500 recall all
    rows = [px(0, 2 + 21 * (k % 15), 2 + 21 * (k // 15), 16, 16) for k in range(150)]
    gt = coco.build_gt(*coco.load_data_yaml(make_dataset(tmp_path, {"many": (rows, [])}), "val"))
    m = coco.evaluate(gt, perfect(gt))
    assert m["maxDets"]["100"]["AR"] == pytest.approx(100 / 150)
    assert m["maxDets"]["500"]["AR"] == pytest.approx(1.0)
    assert m["maxDets"]["500"]["AP_small"] == pytest.approx(1.0)
    assert m["maxDets"]["100"]["AP_small"] < 0.7


def test_ignored_regions_hide_ground_truth_and_detections(tmp_path):
    # ignored region over the right half (x >= 160): 50 px objects 40% and 60% inside, the large one all inside
    region = [0.75, 0.5, 0.5, 1.0]
    objects = [px(1, 130, 20, 50, 50), px(1, 140, 100, 50, 50), px(0, 180, 180, 120, 120)]
    gt = coco.build_gt(*coco.load_data_yaml(make_dataset(tmp_path, {"a": (objects, [region])}), "val"))
    assert [a["iscrowd"] for a in gt["annotations"]] == [0, 1, 1]
    spurious = {"image_id": 1, "category_id": 1, "score": 0.99, "bbox": [200, 20, 30, 30]}  # inside the region
    kept = coco.drop_ignored([*perfect(gt), spurious], gt)
    assert spurious not in kept
    m = coco.evaluate(gt, kept)["maxDets"]["100"]
    assert m["AP"] == pytest.approx(1.0)
    assert m["AP_large"] is None  # nothing left to find there


def test_covered_fraction_uses_the_union_of_regions():
    regions = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [100, 100, 5, 5]], dtype=float)  # two overlap
    boxes = np.array([[0, 0, 20, 10], [10, 5, 10, 10], [50, 50, 10, 10], [0, 0, 0, 5]], dtype=float)
    assert coco.covered_fraction(boxes, regions) == pytest.approx([0.75, 0.25, 0.0, 0.0])


def test_backends_agree_on_random_predictions(gt):
    rng = np.random.default_rng(0)
    dets = [{"image_id": int(rng.integers(1, 3)), "category_id": int(rng.integers(1, 3)), "score": float(rng.random()),
             "bbox": [float(v) for v in [*rng.uniform(0, 250, 2), *rng.uniform(5, 130, 2)]]} for _ in range(300)]
    dets += perfect(gt, dx=3)
    if len(coco.available_backends()) < 2:
        pytest.skip("faster-coco-eval is not installed")
    m = coco.evaluate(gt, dets)
    assert 0 < m["maxDets"]["100"]["AP"] < 1
    assert m["backend_max_abs_diff"] < 1e-4


def test_bad_class_id_names_file_and_line(tmp_path):
    data = make_dataset(tmp_path, {"a": ([OBJECTS[0], [2, 0.5, 0.5, 0.1, 0.1]], [])})
    with pytest.raises(InputError, match=r"a\.txt:2: class id 2 is outside names \(0\.\.1\)"):
        coco.build_gt(*coco.load_data_yaml(data, "val"))


def test_malformed_label_line_names_file_and_line(tmp_path):
    data = make_dataset(tmp_path, {"a": ([OBJECTS[0]], [])})
    (tmp_path / "labels/val/a.txt").write_text("0 0.5 0.5 0.1\n")
    with pytest.raises(InputError, match=r"a\.txt:1: expected 5 numbers"):
        coco.build_gt(*coco.load_data_yaml(data, "val"))


def test_missing_label_dir_is_named(tmp_path):
    data = make_dataset(tmp_path, {"a": ([OBJECTS[0]], [])})
    (tmp_path / "labels/val/a.txt").unlink()
    (tmp_path / "labels/val").rmdir()
    with pytest.raises(InputError, match=r"label directory .*labels/val does not exist"):
        coco.build_gt(*coco.load_data_yaml(data, "val"))


def test_unreadable_image_is_named(tmp_path):
    data = make_dataset(tmp_path, {"a": ([OBJECTS[0]], [])})
    (tmp_path / "images/val/a.png").write_bytes(b"not an image")
    with pytest.raises(InputError, match=r"a\.png: unreadable image"):
        coco.build_gt(*coco.load_data_yaml(data, "val"))


def test_missing_split_and_data_file_are_named(tmp_path):
    data = make_dataset(tmp_path, {"a": ([OBJECTS[0]], [])})
    with pytest.raises(InputError, match=r"no 'test' split"):
        coco.load_data_yaml(data, "test")
    with pytest.raises(InputError, match=r"nope\.yaml: no such file"):
        coco.load_data_yaml(tmp_path / "nope.yaml", "val")
