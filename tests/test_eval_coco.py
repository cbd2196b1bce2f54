"""COCO evaluation of YOLO datasets: APs known by construction, ignored regions, AI-TOD buckets, compare's evaluator
against pycocotools (per-image matches and accumulated arrays), bad input."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import cv2
import numpy as np
import pytest

from yolo_incep.errors import InputError
from yolo_incep.eval import buckets, coco, matching

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


def scores(gt: dict, dets: list[dict], sizes: str = "both") -> dict:
    return coco.metrics(coco.evaluate(gt, dets, sizes))


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
    m = scores(gt, perfect(gt))
    for md in ("100", "500"):  # AI-TOD's very tiny and tiny buckets are empty here (no box under 16 px)
        assert all(v == pytest.approx(1.0) for k, v in m["maxDets"][md].items() if not k.endswith(("_vt", "_t")))
        assert all(m["maxDets"][md][f"{k}_{b}"] is None for k in ("AP", "AR") for b in ("vt", "t"))
    assert m["per_class_AP_small"] == {"a": pytest.approx(1.0), "b": pytest.approx(1.0)}


def test_empty_predictions_score_zero(gt):
    m = scores(gt, [])
    assert all(v == 0.0 for row in m["maxDets"].values() for v in row.values() if v is not None)


def test_shifted_predictions_match_only_up_to_their_iou(gt):
    # a 4 px shift of a 20 px box: IoU 16/24 = 0.667 -> matched at IoU thresholds .50 .55 .60 .65 of ten
    m = scores(gt, [d for d in perfect(gt, dx=4) if d["bbox"][2] == 20])
    row = m["maxDets"]["100"]
    assert row["AP_small"] == pytest.approx(0.4)
    assert row["AR_small"] == pytest.approx(0.4)
    assert row["AP_s"] == row["AR_s"] == pytest.approx(0.4)  # 20 px: AI-TOD's small (16-32 px) too
    assert row["AP_medium"] == 0.0 and row["AP_large"] == 0.0
    assert m["per_class_AP_small"] == {"a": pytest.approx(0.4), "b": pytest.approx(0.4)}


def test_max_dets_500_counts_what_100_truncates(tmp_path):
    # 150 small objects of one class in one image: 100 detections per image recall 2/3, 500 recall all
    rows = [px(0, 2 + 21 * (k % 15), 2 + 21 * (k // 15), 16, 16) for k in range(150)]
    gt = coco.build_gt(*coco.load_data_yaml(make_dataset(tmp_path, {"many": (rows, [])}), "val"))
    m = scores(gt, perfect(gt))
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
    m = scores(gt, kept)["maxDets"]["100"]
    assert m["AP"] == pytest.approx(1.0)
    assert m["AP_large"] is None  # nothing left to find there


def test_covered_fraction_uses_the_union_of_regions():
    regions = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [100, 100, 5, 5]], dtype=float)  # two overlap
    boxes = np.array([[0, 0, 20, 10], [10, 5, 10, 10], [50, 50, 10, 10], [0, 0, 0, 5]], dtype=float)
    assert coco.covered_fraction(boxes, regions) == pytest.approx([0.75, 0.25, 0.0, 0.0])


def random_results(gt: dict, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    dets = [{"image_id": int(rng.integers(1, 3)), "category_id": int(rng.integers(1, 3)), "score": float(rng.random()),
             "bbox": [float(v) for v in [*rng.uniform(0, 250, 2), *rng.uniform(5, 130, 2)]]} for _ in range(300)]
    return dets + perfect(gt, dx=3)


def test_cross_check_with_pycocotools_is_exact_and_faster_coco_eval_agrees(gt):
    dets = random_results(gt)
    e = coco.evaluate(gt, dets)
    assert 0 < coco.metrics(e)["maxDets"]["100"]["AP"] < 1
    assert coco.cross_check(gt, dets, e, "pycocotools") == 0.0
    if "faster_coco_eval" in coco.available_backends():
        assert coco.cross_check(gt, dets, e, "faster_coco_eval") < 1e-12


# ---- compare's evaluator against pycocotools: random scenes with every edge pycocotools has -------------------------

def scene(seed: int) -> tuple[dict, list[dict]]:
    """Ground truth and detections on 4 images (ids not 1..4), classes 1, 2, 5: crowd boxes, boxes exactly on bucket
    edges, duplicate boxes (IoU ties), scores rounded to 0.1 (score ties), classes without boxes, empty images."""
    rng = np.random.default_rng(seed)
    gt = {"images": [], "annotations": [], "categories": [{"id": c, "name": f"c{c}"} for c in (1, 2, 5)]}
    dets = []
    for i in (3, 7, 8, 11):
        gt["images"].append({"id": i, "width": 640, "height": 480})
        for _ in range(int(rng.integers(0, 30))):
            w, h = np.exp(rng.uniform(np.log(2), np.log(150), 2))
            if rng.random() < 0.1:
                w, h = 8.0, 8.0  # area 64: on the edge of AI-TOD's very tiny and tiny
            x, y, c = round(rng.uniform(0, 600)), round(rng.uniform(0, 440)), int(rng.choice([1, 2, 5]))
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": i, "category_id": c,
                                      "bbox": [x, y, w, h], "area": w * h, "iscrowd": int(rng.random() < 0.1)})
            for _ in range(int(rng.integers(0, 4))):
                j = rng.normal(0, 0.1 * min(w, h), 4) * (rng.random() < 0.7)
                dets.append({"image_id": i, "category_id": c if rng.random() < 0.9 else 1,
                             "score": float(np.round(rng.random(), 1)),
                             "bbox": [x + j[0], y + j[1], max(w + j[2], 0.5), max(h + j[3], 0.5)]})
        if gt["annotations"] and rng.random() < 0.5:
            gt["annotations"].append(gt["annotations"][-1] | {"id": len(gt["annotations"]) + 1})
        for _ in range(int(rng.integers(0, 30))):
            w, h = np.exp(rng.uniform(np.log(2), np.log(150), 2))
            dets.append({"image_id": i, "category_id": int(rng.choice([1, 2, 5])), "score": float(rng.random()),
                         "bbox": [*rng.uniform(0, 500, 2), w, h]})
    return gt, dets


def pycocotools_eval(gt: dict, dets: list[dict], max_dets: tuple[int, ...]):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        g = COCO()
        g.dataset = gt
        g.createIndex()
        e = COCOeval(g, g.loadRes(dets), "bbox")
        e.params.areaRng = [list(b.area) for b in buckets.buckets("both")]
        e.params.areaRngLbl = [b.key for b in buckets.buckets("both")]
        e.params.maxDets = list(max_dets)
        e.evaluate()
        e.accumulate()
    return e


@pytest.mark.parametrize("seed", range(6))
def test_matches_are_pycocotools_evalimgs(seed):
    """Every detection's match (the box id, or none) at every threshold and bucket, every box's matched and ignore
    flags, and every detection's score order, as pycocotools' evalImgs has them; then its accumulated arrays."""
    gt, dets = scene(seed)
    max_dets = (3, 10, 100)  # 3 and 10 cut images
    ref = pycocotools_eval(gt, dets, max_dets)
    e = matching.evaluate(gt, dets, buckets.buckets("both"), max_dets)
    p = ref.params
    n_img, n_area = len(p.imgIds), len(p.areaRng)
    anns = gt["annotations"]
    # compare's box order: image, class, file order
    order = sorted(range(len(anns)), key=lambda j: (p.imgIds.index(anns[j]["image_id"]),
                                                    p.catIds.index(anns[j]["category_id"]), j))
    box_id = np.array([anns[j]["id"] for j in order])
    took = {int(d): e.matches["gt"][:, :, c] for c, d in enumerate(e.matches["det"])}
    checked = 0
    for k in range(len(p.catIds)):
        for a in range(n_area):
            for i in range(n_img):
                ev = ref.evalImgs[(k * n_area + a) * n_img + i]
                if ev is None:
                    continue
                mine = np.flatnonzero((e.dets.image == i) & (e.dets.cat == k))
                assert np.array_equal(e.dets.score[mine], ev["dtScores"])
                for r, det in enumerate(mine):
                    g = took.get(int(det), np.full((10, n_area), -1))[:, a]
                    assert np.array_equal(np.where(g >= 0, box_id[np.maximum(g, 0)], 0), ev["dtMatches"][:, r])
                    checked += 1
                at = {box_id[j]: j for j in np.flatnonzero((e.truth.image == i) & (e.truth.cat == k))}
                rows = [at[g] for g in ev["gtIds"]]
                assert np.array_equal(ev["gtMatches"].T > 0, e.truth.matched[:, a, rows].T)
                assert np.array_equal(np.asarray(ev["gtIgnore"], bool), e.truth.ignored[a, rows])
    assert checked > 300
    assert np.array_equal(e.eval["precision"], ref.eval["precision"])
    assert np.array_equal(e.eval["recall"], ref.eval["recall"])


# ---- AI-TOD's buckets, counted by hand ---------------------------------------------------------------------------

def test_aitod_buckets_by_hand(tmp_path):
    """One box per AI-TOD bucket (sides 5, 12, 24, 48 px), class a; found exactly, missed, or shifted to a known IoU.

    very tiny (5 px): found exactly -> AP 1, AR 1; tiny (12 px): missed -> 0, 0; small (24 px): shifted 4 px -> IoU
    20 * 24 / (28 * 24) = 0.714, matched at 0.50..0.70 (5 of 10 thresholds) -> AP = AR = 0.5; medium (48 px):
    found -> 1. COCO's small holds the first three: its recall at each threshold is 2/3 for 0.50..0.70 and 1/3 above,
    and the precision of the found ones 1 -> AP = AR = (5 * 2/3 + 5 * 1/3) / 10 = 0.5.
    """
    objects = [px(0, 10, 10, 5, 5), px(0, 50, 10, 12, 12), px(0, 100, 10, 24, 24), px(0, 200, 100, 48, 48)]
    gt = coco.build_gt(*coco.load_data_yaml(make_dataset(tmp_path, {"a": (objects, [])}), "val"))
    boxes = [a["bbox"] for a in gt["annotations"]]
    dets = [{"image_id": 1, "category_id": 1, "score": s, "bbox": b}
            for s, b in ((0.9, boxes[0]), (0.8, [boxes[2][0] + 4, *boxes[2][1:]]), (0.7, boxes[3]))]
    row = scores(gt, dets)["maxDets"]["500"]
    expected = {"AP_vt": 1, "AR_vt": 1, "AP_t": 0, "AR_t": 0, "AP_s": 0.5, "AR_s": 0.5, "AP_m": 1, "AR_m": 1,
                "AP_small": 0.5, "AR_small": 0.5, "AP_medium": 1, "AR_medium": 1, "AP_large": None}
    assert {k: row[k] for k in expected} == pytest.approx(expected)
    ref = coco.metrics(coco.run_cocoeval(gt, dets, "pycocotools", sizes="both"))["maxDets"]["500"]
    assert row == pytest.approx(ref, abs=1e-12)  # and pycocotools with the same area ranges agrees


def test_a_box_on_a_bucket_edge_counts_in_both_as_in_pycocotools():
    # 8 x 8 px: area 64, the upper end of very tiny and the lower end of tiny (pycocotools' ranges include both ends)
    gt = {"images": [{"id": 1, "width": 64, "height": 64}], "categories": [{"id": 1, "name": "a"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 8, 8], "area": 64, "iscrowd": 0}]}
    row = scores(gt, perfect(gt))["maxDets"]["500"]
    assert row["AP_vt"] == row["AP_t"] == pytest.approx(1.0) and row["AP_s"] is None  # 1 / (1 + eps), as pycocotools


def test_sizes_choose_the_buckets(gt):
    assert [b.key for b in buckets.buckets("coco")] == ["all", "small", "medium", "large"]
    assert [b.key for b in buckets.buckets("aitod")] == ["all", "vt", "t", "s", "m"]
    coco_only, aitod_only = (scores(gt, perfect(gt), s)["maxDets"]["500"] for s in ("coco", "aitod"))
    assert set(coco_only) == {"AP", "AP50", "AP75", "AR", "AP_small", "AP_medium", "AP_large", "AR_small",
                              "AR_medium", "AR_large"}
    assert set(aitod_only) == {"AP", "AP50", "AP75", "AR", "AP_vt", "AP_t", "AP_s", "AP_m", "AR_vt", "AR_t", "AR_s",
                               "AR_m"}
    assert coco_only["AP"] == aitod_only["AP"]  # all objects alike


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
