"""TIDE error breakdown by size: hand-computed cases, COCO's AP50 per bucket as the base, and tidecv as reference."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import A, B, det, make_gt, random_scene

from yolo_incep.eval import coco, errors

ZERO = dict.fromkeys(errors.ERROR_TYPES, 0.0)


def run(gt: dict, dets: list[dict]) -> dict:
    return errors.breakdown(coco.evaluate(gt, dets))


# two small (20 x 20) boxes of classes a and b, each found exactly at score 0.5
GT2 = [(1, A, 100, 100, 20, 20), (1, B, 400, 400, 20, 20)]
HITS = [det(A, 100, 100, 20, 20, 0.5), det(B, 400, 400, 20, 20, 0.5)]
P51 = 51 / 101  # COCO AP of recall 0.5 at precision 1: the 101-point grid holds 51 points up to 0.5


@pytest.mark.parametrize("kind, extra, gain", [
    ("loc", det(A, 110, 100, 20, 20, 0.9), 0.25),  # IoU 1/3 with a's box (already matched): dropped when fixed
    ("cls", det(B, 100, 100, 20, 20, 0.9), 0.25),  # a's box called b
    ("both", det(B, 110, 100, 20, 20, 0.9), 0.25),  # a's box called b and badly placed
    ("bkg", det(A, 300, 50, 20, 20, 0.9), 0.25),  # nothing there
])
def test_one_error_above_a_hit_costs_half_its_class(kind, extra, gain):
    # base: the error ranks above the hit of its class (AP 0.5), the other class is perfect: mAP 0.75
    b = run(make_gt(GT2), [*HITS, extra])
    assert b["small"] == pytest.approx({"AP50": 0.75} | ZERO | {kind: gain})
    assert b["medium"] == {"AP50": None} | dict.fromkeys(errors.ERROR_TYPES)
    assert b["all"] == b["small"]


def test_duplicate_above_a_hit():
    # a: hit (0.9), duplicate of it (0.8, IoU 17/23), hit on a second box (0.5): AP (51 + 50 * 2/3) / 101
    gt = make_gt([*GT2, (1, A, 200, 200, 20, 20)])
    dets = [det(A, 100, 100, 20, 20, 0.9), det(A, 103, 100, 20, 20, 0.8), det(A, 200, 200, 20, 20, 0.5), HITS[1]]
    ap_a = (51 + 50 * 2 / 3) / 101
    assert run(gt, dets)["small"] == pytest.approx({"AP50": (ap_a + 1) / 2} | ZERO | {"dupe": (1 - ap_a) / 2})


def test_missed_box():
    b = run(make_gt([*GT2, (1, A, 200, 200, 20, 20)]), HITS)
    assert b["small"] == pytest.approx({"AP50": (P51 + 1) / 2} | ZERO | {"miss": (1 - P51) / 2})


def test_fixable_box_is_not_missed():
    # a's only detection is badly placed: fixing it (loc) recovers the class; the box does not count as missed too
    b = run(make_gt(GT2), [det(A, 110, 100, 20, 20, 0.9), HITS[1]])
    assert b["small"] == pytest.approx({"AP50": 0.5} | ZERO | {"loc": 0.5})


def test_only_mislocalised_model_loses_only_localisation():
    # small, medium and large boxes over three images; the model finds all, but every small one shifted to IoU ~0.33
    rng = np.random.default_rng(0)
    boxes, dets = [], []
    for image_id in (1, 2, 3):
        for side in (12, 16, 20, 60, 80, 120, 150):
            x, y = rng.uniform(0, 480, 2)
            cat = int(rng.integers(1, 3))
            boxes.append((image_id, cat, x, y, side, side))
            dx = side / 2 if side * side < 32 ** 2 else 0.0
            dets.append(det(cat, x + dx, y, side, side, float(rng.uniform(0.3, 1)), image_id))
    b = run(make_gt(boxes, n_images=3), dets)
    assert b["small"] == pytest.approx({"AP50": 0.0} | ZERO | {"loc": 1.0})
    for size in ("medium", "large"):
        assert b[size] == pytest.approx({"AP50": 1.0} | ZERO)
    assert b["all"]["loc"] > 0 and all(b["all"][k] == 0 for k in errors.ERROR_TYPES if k != "loc")


def test_ignored_boxes_are_neither_missed_nor_errors():
    # a crowd (ignored) box with a detection on it and none on the other: no error, nothing missed
    gt = make_gt([*GT2, (1, A, 200, 200, 20, 20, 1), (1, A, 300, 300, 20, 20, 1)])
    assert run(gt, [*HITS, det(A, 200, 200, 20, 20, 0.9)])["small"] == pytest.approx({"AP50": 1.0} | ZERO)


@pytest.mark.parametrize("seed", range(5))
def test_base_is_cocos_ap50_in_every_bucket(seed):
    gt, dets = random_scene(seed, crowd=True)
    e = coco.run_cocoeval(gt, dets, sizes="both")  # pycocotools with COCO's and AI-TOD's buckets
    t50 = list(e.params.iouThrs).index(0.5)
    got = errors.breakdown(coco.evaluate(gt, dets))
    assert list(got) == list(e.params.areaRngLbl)
    for a, (size, row) in enumerate(got.items()):
        p = e.eval["precision"][t50, :, :, a, -1]
        expected = p[p > -1].mean() if (p > -1).any() else None
        assert row["AP50"] == pytest.approx(expected, abs=1e-12), size


def tide_reference(gt: dict, dets: list[dict]) -> dict:
    """AP50 and main-error dAPs of tidecv (TIDE's own code), as fractions."""
    from tidecv import TIDE, Data

    truth, preds = Data("gt", max_dets=500), Data("preds", max_dets=500)
    for a in gt["annotations"]:
        truth.add_ground_truth(a["image_id"], a["category_id"], a["bbox"])
    for d in dets:
        preds.add_detection(d["image_id"], d["category_id"], d["score"], d["bbox"])
    tide = TIDE()
    base = tide.evaluate(truth, preds, mode=TIDE.BOX).ap
    main = tide.get_main_errors()["preds"]
    return {"AP50": base / 100} | {k.lower(): v / 100 for k, v in main.items()}


def test_agrees_with_tidecv(monkeypatch):
    pytest.importorskip("tidecv")
    # TIDE's recall grid is k / 100, COCO's np.linspace(0, 1, 101): they differ in the last bit at 0.3, 0.7, ...,
    # which moves AP wherever a recall lands exactly there; on TIDE's grid the numbers must be identical
    monkeypatch.setattr(errors, "RECALLS", np.arange(101) / 100)
    checked = 0
    for seed in range(40):
        gt, dets = random_scene(seed)
        if len({a["category_id"] for a in gt["annotations"]}) < 3:
            continue  # TIDE scores a class with detections but no boxes 0; COCO (and we) leave it out
        assert errors.breakdown(coco.evaluate(gt, dets))["all"] == pytest.approx(tide_reference(gt, dets),
                                                                                     abs=1e-9), seed
        checked += 1
    assert checked >= 30
