"""`compare` reports where small objects are lost: errors by size with deltas, PR figure, small-object confusion."""

from __future__ import annotations

import csv
import io
import json

import pytest

from yolo_incep.eval import coco, compare, errors


def exact_then_mislocalised(calls: list):
    """A predict() whose first model finds every box exactly and whose second shifts each small box to IoU 1/3."""

    def predict(yolo, images, imgsz, device, batch, conf, iou, max_det, nms=None):
        calls.append(yolo)
        gt = coco.build_gt(images, ["a", "b"])
        out = []
        for k, a in enumerate(a for a in gt["annotations"] if not a["iscrowd"]):
            x, y, w, h = a["bbox"]
            if len(calls) == 2 and a["area"] < 32 ** 2:
                x += w / 2
            out.append({"image_id": a["image_id"], "category_id": a["category_id"], "bbox": [x, y, w, h],
                        "score": round(0.3 + 0.6 * ((k * 37) % 100) / 100, 5)})
        return out

    return predict


def test_mislocalising_model_differs_only_in_localisation(data, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(compare, "predict", exact_then_mislocalised([]))
    out = tmp_path / "out"
    report = compare.compare_models(["exact=yolov8n.yaml", "shifted=yolov8n.yaml"], data, imgsz=64, out=out,
                                    latency_runs=1, resamples=20, verbose=False)
    on_disk = json.loads((out / "report.json").read_text())
    exact, shifted = on_disk["models"]
    assert set(exact["errors"]) == {"small", "medium", "large", "vt", "t", "s", "m"}
    assert all(set(v) == set(errors.ERROR_TYPES) for v in exact["errors"].values())
    assert exact["errors"]["small"] == dict.fromkeys(errors.ERROR_TYPES, 0.0) and exact["AP50_by_size"]["small"] == 1
    assert "errors_delta" not in exact
    small = shifted["errors_delta"]["small"]
    assert small["loc"] > 0.5 and all(small[t] == 0 for t in errors.ERROR_TYPES if t != "loc")
    assert shifted["errors_delta"]["medium"] == dict.fromkeys(errors.ERROR_TYPES, 0.0)
    assert exact["errors"]["large"] == dict.fromkeys(errors.ERROR_TYPES)  # no large boxes: undefined, not 0

    # the numbers are those of an independent evaluation of the written files
    gt = json.loads((out / "gt.json").read_text())
    for m in on_disk["models"]:
        dets = json.loads((out / f"predictions_{m['name']}.json").read_text())
        e = coco.evaluate(gt, dets)
        assert m["errors"]["small"] == pytest.approx({t: errors.breakdown(e)["small"][t] for t in errors.ERROR_TYPES})

    rows = list(csv.DictReader(io.StringIO((out / "report.csv").read_text())))
    assert float(rows[1]["delta_dAP50_small[loc]@500"]) == pytest.approx(small["loc"], abs=1e-6)
    assert rows[0]["delta_dAP50_small[loc]@500"] == ""
    table = str(report)
    assert "AP50_small@500" in table and f"({small['loc']:+.3f})" in table.split("lost to loc")[1].splitlines()[0]
    assert (out / "pr_by_size.png").read_bytes()[:4] == b"\x89PNG"
    confusion = list(csv.reader(io.StringIO((out / "confusion_small.csv").read_text())))
    assert confusion[0] == ["model", "true", "a", "b", "missed"]
    by = {(r[0], r[1]): list(map(int, r[2:])) for r in confusion[1:]}
    n_small = [sum(1 for a in gt["annotations"] if not a["iscrowd"] and a["area"] < 32 ** 2 and a["category_id"] == c)
               for c in (1, 2)]
    assert by["exact", "a"] == [n_small[0], 0, 0] and by["exact", "b"] == [0, n_small[1], 0]
    assert by["shifted", "a"] == [0, 0, n_small[0]]  # IoU 1/3: missed at 0.5
    assert on_disk["models"][0]["confusion_small"]["counts"][0] == by["exact", "a"]
