"""Paired bootstrap of `compare`: the re-weighted fast path against pycocotools on resampled image lists."""

from __future__ import annotations

import numpy as np
import pytest

from yolo_incep.eval import bootstrap, coco


def synthetic(n_images: int, seed: int = 0) -> tuple[dict, list[dict]]:
    """Ground truth of three classes at all sizes (some crowd/ignored) and jittered plus spurious detections.

    Image 1 holds 130 confident spurious detections of one class, so maxDets 100 cuts true positives there; scores
    are distinct floats (pycocotools orders equal scores by image id, which a resample renumbers).
    """
    rng = np.random.default_rng(seed)
    gt = {"images": [], "annotations": [], "categories": [{"id": c, "name": f"c{c}"} for c in (1, 2, 3)]}
    dets = []
    for i in range(1, n_images + 1):
        gt["images"].append({"id": i, "file_name": f"{i}.jpg", "width": 640, "height": 480, "ignored_regions": []})
        for _ in range(int(rng.integers(0, 25))):
            w, h = np.exp(rng.uniform(np.log(6), np.log(200), 2))
            x, y, c = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h), int(rng.integers(1, 4))
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": i, "category_id": c,
                                      "bbox": [x, y, w, h], "area": w * h, "iscrowd": int(rng.random() < 0.1)})
            if rng.random() < 0.7:
                j = rng.normal(0, 0.08 * min(w, h), 4)
                dets.append({"image_id": i, "category_id": c, "score": float(rng.random()),
                             "bbox": [x + j[0], y + j[1], w + j[2], h + j[3]]})
        for _ in range(130 if i == 1 else int(rng.integers(0, 30))):
            w, h = np.exp(rng.uniform(np.log(6), np.log(200), 2))
            dets.append({"image_id": i, "category_id": 1 if i == 1 else int(rng.integers(1, 4)),
                         "score": float(rng.uniform(0.5 if i == 1 else 0, 1)), "bbox": [*rng.uniform(0, 440, 2), w, h]})
    return gt, dets


def resampled(gt: dict, dets: list[dict], draw: np.ndarray) -> tuple[dict, list[dict]]:
    """The drawn image list as a COCO set of its own: every draw a new image id (duplicates included)."""
    out = {"images": [], "annotations": [], "categories": gt["categories"]}
    out_dets = []
    for new_id, old in enumerate(draw, 1):
        out["images"].append(gt["images"][old] | {"id": new_id})
        out["annotations"] += [a | {"id": len(out["annotations"]) + k + 1, "image_id": new_id} for k, a in
                               enumerate(a for a in gt["annotations"] if a["image_id"] == old + 1)]
        out_dets += [d | {"image_id": new_id} for d in dets if d["image_id"] == old + 1]
    return out, out_dets


def pycocotools_values(gt: dict, dets: list[dict]) -> dict:
    """pycocotools' own numbers, with COCO's and AI-TOD's buckets as area ranges."""
    return coco.flatten(coco.metrics(coco.run_cocoeval(gt, dets, "pycocotools", sizes="both")))


def resampling(gt: dict, dets: list[dict]) -> bootstrap.Matching:
    return bootstrap.Matching.of(coco.evaluate(gt, dets))


@pytest.fixture(scope="module")
def case():
    gt, dets = synthetic(7)
    return gt, dets, resampling(gt, dets)


def assert_same(fast: dict, ref: dict, row: int = 0) -> None:
    for k in bootstrap.DELTA_KEYS:
        if ref[k] is None:
            assert np.isnan(fast[k][row]), k
        else:
            assert fast[k][row] == pytest.approx(ref[k], abs=1e-12), k


def test_every_image_once_gives_pycocotools_numbers(case):
    gt, dets, matching = case
    ref = pycocotools_values(gt, dets)
    assert ref["AR@100"] < ref["AR@500"]  # maxDets 100 truncates image 1: both branches are exercised
    assert_same(matching.scores(np.ones((1, 7), int)), ref)


def test_fast_path_equals_pycocotools_on_resampled_lists_with_duplicates(case):
    gt, dets, matching = case
    rng = np.random.default_rng(1)
    draws = [rng.integers(0, 7, 7) for _ in range(4)] + [np.array([1, 1, 1, 4, 4, 6, 6])]
    fast = matching.scores(np.stack([np.bincount(d, minlength=7) for d in draws]))
    for row, draw in enumerate(draws):
        assert len(set(draw.tolist())) < 7  # duplicates in every list
        assert_same(fast, pycocotools_values(*resampled(gt, dets, draw)), row)


def test_resamples_are_seeded():
    a, b = bootstrap.resample_counts(60, 1000, seed=3), bootstrap.resample_counts(60, 1000, seed=3)
    assert np.array_equal(a, b) and a.shape == (1000, 60) and (a.sum(1) == 60).all()
    assert not np.array_equal(a, bootstrap.resample_counts(60, 1000, seed=4))


def test_model_against_itself_and_a_single_image_give_zero_width_intervals(case):
    gt, dets, matching = case
    counts = bootstrap.resample_counts(7, 200)
    s = matching.scores(counts)
    d = bootstrap.paired_delta(0.0, s["AP_small@500"], s["AP_small@500"])
    assert d.value == 0.0 and d.ci95 == (0.0, 0.0)
    one = {"images": gt["images"][:1], "annotations": [a for a in gt["annotations"] if a["image_id"] == 1],
           "categories": gt["categories"]}
    m1 = resampling(one, [x for x in dets if x["image_id"] == 1])
    m2 = resampling(one, [x for x in dets if x["image_id"] == 1][::2])
    counts = bootstrap.resample_counts(1, 100)
    a, b = m1.scores(counts)["AP@500"], m2.scores(counts)["AP@500"]
    d = bootstrap.paired_delta(float(b[0] - a[0]), a, b)
    assert d.ci95[0] == d.ci95[1] == d.value != 0


def test_undefined_metrics_give_null_with_a_reason():
    d = bootstrap.paired_delta(None, np.full(10, np.nan), np.full(10, np.nan))
    assert d.to_json() == {"value": None, "ci95": None, "reason": d.reason} and "no ground truth" in d.reason
    d = bootstrap.paired_delta(0.1, np.full(10, np.nan), np.full(10, np.nan))
    assert d.ci95 is None and d.reason == "undefined in every resample"


def _rows(offsets, resamples, seed=0):
    """Per-seed resample scores: one shared image-resample curve plus a constant per seed."""
    base = np.random.default_rng(seed).normal(0.3, 0.02, resamples)
    return [{k: base + o for k in bootstrap.DELTA_KEYS} for o in offsets]


def test_seed_resampling_adds_the_seeds_variance_of_the_mean():
    offsets = [0.0, 0.004, 0.011]
    rows = _rows(offsets, 40_000)
    out = bootstrap.arm_scores(rows, seed=(0, 1))
    mean = np.mean([r["AP_small@500"] for r in rows], axis=0)
    seed_part = out["AP_small@500"] - mean
    # s^2 / k, the variance of a mean of k seeds (a plain bootstrap of seeds gives (k - 1) / k of it)
    assert seed_part.var() == pytest.approx(np.var(offsets, ddof=1) / len(offsets), rel=0.05)
    assert seed_part.mean() == pytest.approx(0, abs=2e-4)
    assert all(np.array_equal(out["AP_small@500"], out[k]) for k in ("AP@500", "AR@100"))  # one draw per resample


def test_seed_resampling_is_seeded_and_neutral_for_one_seed_or_equal_seeds():
    rows = _rows([0.0, 0.01], 500)
    a, b = bootstrap.arm_scores(rows, (0, 1)), bootstrap.arm_scores(rows, (0, 1))
    assert np.array_equal(a["AP@500"], b["AP@500"])
    assert not np.array_equal(a["AP@500"], bootstrap.arm_scores(rows, (0, 2))["AP@500"])
    assert np.array_equal(bootstrap.arm_scores(rows[:1])["AP@500"], rows[0]["AP@500"])
    same = _rows([0.01, 0.01, 0.01], 500)
    np.testing.assert_allclose(bootstrap.arm_scores(same)["AP@500"], same[0]["AP@500"], atol=1e-15)


def test_recall_thresholds_reached_as_pycocotools_float_comparison():
    """Every count tp <= npig up to 400 objects, ten resamples a row: as many thresholds as pycocotools' accumulate
    reaches (np.searchsorted of its recall on linspace's thresholds), including the ten where k / 100 != k * 0.01."""
    npig = np.arange(1, 401, dtype=float)
    tp = np.minimum(np.arange(401, dtype=float)[:, None], npig[None, :])
    ref = np.searchsorted(coco.matching.REC_THRS, tp / npig, side="right") - 1
    assert np.array_equal(bootstrap._reached(tp.copy(), npig), ref)
    assert (ref != np.floor(tp * 100 / npig)).any()  # where pycocotools' float rule differs from the exact one
