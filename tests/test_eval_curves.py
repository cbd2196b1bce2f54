"""PR curves by size and the small-object confusion table, on constructed cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import A, B, det, make_gt, random_scene
from yolo_incep.eval import coco, confusion, curves, errors


def test_pr_curve_areas_are_ap50_by_size():
    gt, dets = random_scene(3, crowd=True)
    e = coco.evaluate(gt, dets)
    pr, base = curves.pr_by_size(e), errors.breakdown(e)
    assert list(pr) == ["small", "medium", "large", "vt", "t", "s", "m"]
    for size in pr:
        if pr[size] is None:
            assert base[size]["AP50"] is None
            continue
        assert np.mean(pr[size]) == pytest.approx(base[size]["AP50"], abs=1e-5)
        assert np.all(np.diff(pr[size]) <= 1e-9)  # COCO's interpolated precision never rises with recall


def test_perfect_small_only_model():
    gt = make_gt([(1, A, 10, 10, 20, 20), (1, B, 100, 100, 20, 20)])
    e = coco.evaluate(gt, [det(A, 10, 10, 20, 20, 0.9), det(B, 100, 100, 20, 20, 0.8)])
    pr = curves.pr_by_size(e)
    assert pr["small"] == pr["s"] == [1.0] * 101 and pr["medium"] is None and pr["large"] is None
    assert pr["vt"] is None and pr["t"] is None and pr["m"] is None  # 20 px boxes: AI-TOD's small (16-32)
    png = curves.pr_png({"m1": pr, "m2": curves.pr_by_size(coco.evaluate(gt, []))})
    assert png.startswith(b"\x89PNG")


def test_small_confusion_counts():
    gt = make_gt([(1, A, 10, 10, 20, 20),  # found as b
                  (1, A, 100, 100, 20, 20),  # found as a (a lower-scoring b on it is a duplicate, not background)
                  (1, B, 200, 200, 20, 20),  # missed: its only detection scores below conf
                  (1, B, 300, 300, 60, 60),  # medium: not a row, its detection counts nowhere
                  (1, A, 500, 500, 20, 20, 1)])  # ignored: not a row, its detection counts nowhere
    dets = [det(B, 11, 10, 20, 20, 0.9), det(A, 100, 100, 20, 20, 0.6), det(B, 101, 100, 20, 20, 0.7),
            det(B, 200, 200, 20, 20, 0.1), det(A, 300, 300, 60, 60, 0.9), det(A, 500, 500, 20, 20, 0.9),
            det(A, 400, 10, 20, 20, 0.5),  # background
            det(B, 400, 100, 60, 60, 0.5)]  # background but not small
    t = confusion.small_confusion(gt, dets)
    assert t.rows == ["a", "b", "background"] and t.columns == ["a", "b", "missed"]
    assert t.counts.tolist() == [[1, 1, 0], [0, 0, 1], [1, 0, 0]]
    text = confusion.csv_text({"m": t})
    assert text.splitlines()[:2] == ["model,true,a,b,missed", "m,a,1,1,0"]
    assert "background" in str(t)


def test_confusion_prefers_the_right_class_over_a_higher_scoring_wrong_one():
    gt = make_gt([(1, A, 10, 10, 20, 20)])
    t = confusion.small_confusion(gt, [det(B, 10, 10, 20, 20, 0.9), det(A, 12, 10, 20, 20, 0.5)])
    assert t.counts.tolist() == [[1, 0, 0], [0, 0, 0], [0, 0, 0]]
