"""`yolo-incep compare` end to end: files written, report equal to an independent pycocotools run, bad input."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from yolo_incep import cli
from yolo_incep.eval import bootstrap, coco, compare
from yolo_incep.eval import report as compare_report
from yolo_incep.eval.report import CompareReport, ModelRow

def fake_predict(yolo, images, imgsz, device, batch, conf, iou, max_det, nms=None):
    """Ground truth jittered by a few pixels plus random boxes: predictions with AP strictly between 0 and 1."""
    gt = coco.build_gt(images, ["a", "b"])
    rng = np.random.default_rng(len(gt["annotations"]))
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "score": round(float(rng.random()), 5),
             "bbox": [round(float(v + rng.normal(0, 1.5)), 3) for v in a["bbox"]]} for a in gt["annotations"]]
    noise = [{"image_id": int(rng.integers(1, 5)), "category_id": 1, "score": 0.5,
              "bbox": [float(rng.integers(0, 140)), 10.0, 12.0, 12.0]} for _ in range(8)]
    inside_ignored = {"image_id": 1, "category_id": 2, "score": 0.9, "bbox": [160.0, 10.0, 12.0, 12.0]}
    return dets + noise + [inside_ignored]


def pycocotools_stats(gt_file: Path, det_file: Path, max_det: int) -> np.ndarray:
    """pycocotools' own summary with its third maxDets set to `max_det` (the one its AP lines use)."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        e = COCOeval(gt, gt.loadRes(str(det_file)), "bbox")
        e.params.maxDets = [1, 10, max_det]
        e.evaluate(), e.accumulate(), e.summarize()
    return e.stats


def test_report_equals_independent_pycocotools(data, tmp_path, monkeypatch):
    monkeypatch.setattr(compare, "predict", fake_predict)
    out = tmp_path / "out"
    report = compare.compare_models(["yolov8n.yaml", "incep=yolov8n-incep.yaml"], data, imgsz=64, out=out,
                                    latency_runs=1, verbose=False)
    gt = json.loads((out / "gt.json").read_text())
    labels = sorted((data.parent / "labels/val").glob("*.txt"))
    assert len(gt["annotations"]) == sum(len(p.read_text().splitlines()) for p in labels)
    keys = ("AP", "AP50", "AP75", "AP_small", "AP_medium")
    for m in report.models:
        for md in (100, 500):
            stats = pycocotools_stats(out / "gt.json", out / f"predictions_{m.name}.json", md)
            row = m.metrics["maxDets"][str(md)]
            # pycocotools' stats[0] (AP) is hard-wired to maxDets 100; AP50..AP_medium follow the third maxDets
            first = 0 if md == 100 else 1
            assert [row[k] for k in keys[first:]] == pytest.approx(list(stats[first:5]), abs=1e-12)
        assert 0 < row["AP_small"] < 1
        assert m.ignored_detections >= 1  # at least the box inside im0's ignored right quarter is dropped
    on_disk = json.loads((out / "report.json").read_text())
    assert [m["name"] for m in on_disk["models"]] == ["yolov8n", "incep"]
    assert on_disk["models"][1]["params"] < on_disk["models"][0]["params"]
    assert on_disk == report.to_json() and on_disk["complete"]
    assert "delta" not in on_disk["models"][0]
    delta = on_disk["models"][1]["delta"]
    for key in ("AP@100", "AP50@100", "AP_small@100", "AP@500", "AP50@500", "AP_small@500"):
        lo, hi = delta[key]["ci95"]
        assert lo <= delta[key]["value"] <= hi
    assert delta["AP_large@500"] == {"value": None, "ci95": None, "reason": delta["AP_large@500"]["reason"]}
    assert "AP_small@500" in str(report) and "[" in str(report)


@pytest.mark.slow
def test_cli_runs_models_and_slices(data, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["compare", "yolov8n.yaml", "yolov8n-incep.yaml", "--data", str(data), "--imgsz", "64", "--out", str(out),
            "--device", "cpu", "--slice", "64", "--latency-runs", "2"]
    assert cli.main(argv) == 0
    table = capsys.readouterr().out
    assert "yolov8n-incep" in table and "AP_small@500" in table and "AP_small[b]@500" in table
    report = json.loads((out / "report.json").read_text())
    names = [m["name"] for m in report["models"]]
    assert [a["name"] for a in report["arms"]] == ["yolov8n", "yolov8n+slice64", "yolov8n-incep",
                                                   "yolov8n-incep+slice64"]
    assert "delta" in report["models"][3] and "delta" not in report["models"][1]  # sliced rows: to the sliced baseline
    assert names == ["yolov8n", "yolov8n+slice64", "yolov8n-incep", "yolov8n-incep+slice64"]
    for m in report["models"]:
        assert set(m["maxDets"]) == {"100", "500"} and set(m["per_class_AP_small"]) == {"a", "b"}
        assert m["gflops"] > 0 and m["latency_ms"] > 0 and isinstance(m["params"], int)
        assert isinstance(json.loads((out / f"predictions_{m['name']}.json").read_text()), list)
    assert (out / "report.csv").read_text().count("\n") == 5
    assert (out / "ap_by_size.png").read_bytes()[:4] == b"\x89PNG"


def test_checkpoint_with_other_class_count_is_refused(data, tmp_path, capsys):
    from ultralytics import YOLO

    ckpt = tmp_path / "coco80.pt"
    YOLO("yolov8n.yaml").save(ckpt)
    assert cli.main(["compare", str(ckpt), "--data", str(data), "--out", str(tmp_path / "o")]) == 2
    assert f"model {ckpt}: 80 classes, but the dataset names 2" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_missing_checkpoint_is_named_without_download(data, tmp_path, capsys):
    assert cli.main(["compare", "yolov8n-nonexistent.pt", "--data", str(data), "--out", str(tmp_path / "o")]) == 2
    assert "model yolov8n-nonexistent.pt: no such checkpoint" in capsys.readouterr().err


def test_table_shows_deltas_with_intervals_and_arm_means():
    row = {"AP": 0.2, "AP50": 0.4, "AP75": 0.1, "AP_small": 0.1, "AP_medium": 0.3, "AP_large": None, "AR": 0.3}
    metrics = {n: {"maxDets": {"100": r, "500": r}, "per_class_AP_small": {"car": r["AP_small"]}}
               for n, r in (("base", row), ("incep.1", row | {"AP_small": 0.15}),
                            ("incep.2", row | {"AP_small": 0.13}))}
    rows = [ModelRow(n, f"{n}.pt", n.split(".")[0], False, p, 8.0, ms, 10, 0, metrics[n])
            for n, p, ms in (("base", 3_000_000, 10.0), ("incep.1", 2_700_000, 12.0), ("incep.2", 2_700_000, 12.0))]
    report = CompareReport("d.yaml", "val", 64, "cpu", 0.001, 0.7, 500, 1, ["car"], 1, 0, 0, models=rows)
    scores = {r.name: {k: np.full(5, v if v is not None else np.nan) for k, v in r.flat.items() if "[" not in k}
              for r in rows}
    compare.add_deltas(report, scores)
    report.complete = True
    lines = {ln.split()[0]: ln for ln in str(report).splitlines()[1:]}
    header = str(report).splitlines()[1].split()
    assert header == ["base", "incep.1", "incep.2", "incep", "mean"]
    assert lines["params"].split()[4] == "(-10.0%)" and lines["latency"].split()[4] == "(+20.0%)"
    small = lines["AP_small@500"]
    # a row's interval is over images only; the arm's mean also resamples its two seeds (0.15 and 0.13)
    seeds = bootstrap.arm_scores([scores["incep.1"], scores["incep.2"]], (0, 1))["AP_small@500"] - 0.1
    lo, hi = np.percentile(seeds, [2.5, 97.5])
    assert "0.150 (+0.050 [+0.050, +0.050])" in small and f"0.140±0.014 (+0.040 [{lo:+.3f}, {hi:+.3f}])" in small
    assert lo < 0.04 - 0.005 or hi > 0.04 + 0.005
    assert lines["AP_small[car]@500"].split()[1:4] == ["0.100", "0.150", "(+0.050)"]
    assert lines["AP_large@100"].split()[1:] == ["-", "-", "-", "-"]
    arm = report.arms[1]
    assert arm.rows == ["incep.1", "incep.2"] and arm.mean["AP_small@500"] == pytest.approx(0.14)
    assert arm.delta["AP_small@500"].ci95 == pytest.approx((lo, hi), abs=1e-6)
    assert arm.delta["AP_large@500"].value is None and arm.delta["AP_large@500"].reason
    csv_rows = compare_report.csv_text(report).splitlines()
    assert len(csv_rows) == 5 and csv_rows[-1].startswith("incep mean,incep,2,")


def test_versus_adds_a_paired_contrast_between_two_arms():
    row = {"AP": 0.2, "AP50": 0.4, "AP75": 0.1, "AP_small": 0.1, "AP_medium": 0.3, "AP_large": None, "AR": 0.3}
    small = {"n": 0.10, "p2": 0.12, "incep-p2": 0.15, "n+slice320": 0.2, "p2+slice320": 0.25,
             "incep-p2+slice320": 0.21}
    rows = [ModelRow(n, f"{n}.pt", n, "+" in n, 1, 1.0, 1.0, 1, 0,
                     {"maxDets": {"100": row | {"AP_small": v}, "500": row | {"AP_small": v}}, "per_class_AP_small": {}})
            for n, v in small.items()]
    report = CompareReport("d.yaml", "val", 64, "cpu", 0.001, 0.7, 500, 1, [], 1, 0, 0, models=rows)
    rng = np.random.default_rng(0)
    noise = {k: rng.normal(0, 0.01, 20) for k in small}  # per-model resample scores: the interval is theirs
    scores = {r.name: {k: np.full(20, v if v is not None else np.nan) + noise[r.name] for k, v in r.flat.items()
                       if "[" not in k} for r in rows}
    compare.add_deltas(report, scores, {"incep-p2": "p2"})
    whole, sliced = report.contrasts
    assert (whole.arm, whole.reference, sliced.arm, sliced.reference) == (
        "incep-p2", "p2", "incep-p2+slice320", "p2+slice320")
    d = whole.delta["AP_small@500"]
    expected = np.percentile(scores["incep-p2"]["AP_small@500"] - scores["p2"]["AP_small@500"], [2.5, 97.5])
    assert d.value == pytest.approx(0.03) and d.ci95 == pytest.approx(tuple(expected), abs=1e-6)
    assert sliced.delta["AP_small@500"].value == pytest.approx(-0.04)
    assert report.arms[2].delta["AP_small@500"].value == pytest.approx(0.05)  # to the baseline, as before
    assert report.to_json()["contrasts"][0]["delta"]["AP_small@500"]["value"] == pytest.approx(0.03)
    assert "contrast incep-p2 vs p2: AP@100 +0.000" in str(report)


def test_multi_seed_arms_and_a_model_against_itself(data, tmp_path, monkeypatch):
    monkeypatch.setattr(compare, "predict", fake_predict)  # same predictions for every model: every delta is 0
    report = compare.compare_models(["base=yolov8n.yaml,yolov8n.yaml", "same=yolov8n.yaml"], data, imgsz=64,
                                    out=tmp_path / "o", latency_runs=1, resamples=50, verbose=False)
    assert [m.name for m in report.models] == ["base.1", "base.2", "same"]
    assert [(a.name, a.rows) for a in report.arms] == [("base", ["base.1", "base.2"]), ("same", ["same"])]
    base, same = report.arms
    assert base.sd["AP@500"] == 0.0 and same.sd["AP@500"] is None and base.delta is None
    for d in (same.delta["AP_small@500"], report.models[2].delta["AP50@100"]):
        assert d.value == 0.0 and d.ci95 == (0.0, 0.0)
    on_disk = json.loads((tmp_path / "o/report.json").read_text())
    assert on_disk["arms"][1]["delta"]["AP@500"] == {"value": 0.0, "ci95": [0.0, 0.0]}
    assert on_disk["bootstrap"]["resamples"] == 50
    assert "base mean" in str(report).splitlines()[1]


def test_absent_size_is_no_bar(data):
    row = {"AP": 0.2, "AP50": 0.4, "AP75": 0.1, "AP_small": 0.1, "AP_medium": 0.3, "AP_large": None, "AR": 0.3}
    rows = [ModelRow(n, f"{n}.pt", n, False, 1, 1.0, 1.0, 1, 0, {"maxDets": {"100": row, "500": row},
                                                                "per_class_AP_small": {}}) for n in ("a", "b")]
    fig = compare_report.ap_figure(CompareReport("d", "val", 64, "cpu", 0, 0.7, 500, 1, [], 1, 0, 0, models=rows,
                                                 sizes="coco"))
    for ax in fig.axes:
        heights = sorted(round(p.get_height(), 3) for p in ax.patches)
        assert heights == [0.1, 0.1, 0.3, 0.3]  # small and medium for both models; large has no bar, not a 0 bar
        labels = [t.get_text() for t in ax.texts]
        assert sorted(labels) == ["0.100", "0.100", "0.300", "0.300", "no ground truth\nof this size"]


def one_line_error(capsys, argv: list[str]) -> str:
    """The error line of a refused command (exit 2: an InputError; anything else would raise here)."""
    assert cli.main(argv) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("yolo-incep compare: error: ")
    return line


@pytest.mark.parametrize("argv, message", [
    (["--imgsz", "100"], "--imgsz 100: not a multiple of the models' largest stride 32 (use 128 or 96)"),
    (["--split", "names"], "--split names: 'names' is a data YAML key, not a split"),
    (["--conf", "-1"], "--conf -1.0: out of range"),
    (["--resamples", "0"], "--resamples 0: out of range"),
    (["--versus", "p2"], "--versus p2: expected ARM=REF"),
    (["--versus", "yolov8n=p2"], "--versus yolov8n=p2: p2 is not an arm of this comparison (yolov8n)"),
    (["--versus", "yolov8n=yolov8n"], "--versus yolov8n=yolov8n: an arm against itself"),
])
def test_bad_settings_are_refused_before_any_work(data, tmp_path, capsys, argv, message):
    out = tmp_path / "o"
    err = one_line_error(capsys, ["compare", "yolov8n.yaml", "--data", str(data), "--out", str(out), *argv])
    assert message in err
    assert not out.exists()


def test_slice_without_sahi_names_the_extra(data, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "sahi", None)  # import sahi -> ImportError
    err = one_line_error(capsys, ["compare", "yolov8n.yaml", "--data", str(data), "--imgsz", "64", "--slice", "64",
                                  "--out", str(tmp_path / "o")])
    assert "--slice needs sahi: pip install 'yolo-incep[eval]'" in err
    assert not (tmp_path / "o").exists()


def test_unwritable_out_is_refused_before_predicting(data, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(compare, "predict", lambda *a, **k: pytest.fail("predicted before checking --out"))
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out, message in ((afile, "exists and is not a folder"), (afile / "sub", "not a writable folder")):
        err = one_line_error(capsys, ["compare", "yolov8n.yaml", "--data", str(data), "--imgsz", "64",
                                      "--out", str(out)])
        assert f"--out {out}: {message}" in err


@pytest.mark.parametrize("name, text, message", [
    ("notes.txt", "hello\n", "expected a .pt checkpoint, a model YAML (.yaml), an exported model (torchscript, onnx, openvino, ncnn, mnn, executorch, litert, paddle) or saved predictions (.json, .json.gz, .json.xz), got .txt"),
    ("text.pt", "hello\n", "not a loadable Ultralytics checkpoint"),
    ("text.yaml", "hello\n", "not a model YAML"),
    ("unknown.yaml", "nc: 2\nbackbone:\n  - [-1, 1, Conv, [16, 3, 2]]\n  - [-1, 1, Foo, [16]]\n"
                     "head:\n  - [[1], 1, Detect, [nc]]\n", "unknown layer 'Foo'"),
    ("yolov8n-cls.yaml", None, "a 'classify' model YAML; compare needs a detection model"),
])
def test_bad_models_give_one_line_errors(data, tmp_path, capsys, name, text, message):
    model = name
    if text is not None:
        model = str(tmp_path / name)
        (tmp_path / name).write_text(text)
    err = one_line_error(capsys, ["compare", model, "--data", str(data), "--out", str(tmp_path / "o")])
    assert f"model {model}: " in err and message in err


def test_a_failure_keeps_what_was_computed(data, tmp_path, monkeypatch):
    def second_fails(yolo, *args, **kwargs):
        if sum(1 for _ in (tmp_path / "o").glob("predictions_*.json")):
            raise RuntimeError("out of memory")
        return fake_predict(yolo, *args, **kwargs)

    monkeypatch.setattr(compare, "predict", second_fails)
    with pytest.raises(RuntimeError):
        compare.compare_models(["a=yolov8n.yaml", "b=yolov8n.yaml"], data, imgsz=64, out=tmp_path / "o",
                               latency_runs=1, verbose=False)
    written = json.loads((tmp_path / "o/report.json").read_text())
    assert [m["name"] for m in written["models"]] == ["a"] and written["complete"] is False
    assert (tmp_path / "o/predictions_a.json").is_file() and (tmp_path / "o/gt.json").is_file()


def test_whole_image_prediction_keeps_every_image_past_the_nms_time_limit(data, monkeypatch):
    """Ultralytics' batched NMS gives up after its time limit and leaves later images empty; ours has no limit."""
    from ultralytics import YOLO
    from ultralytics.models.yolo.detect import DetectionPredictor
    from ultralytics.utils import nms

    from yolo_incep.eval.models import predict

    images, _ = coco.load_data_yaml(data, "val")
    yolo = YOLO("yolov8n.yaml")
    args = dict(imgsz=64, device="cpu", conf=0.0, iou=0.7, max_det=20)  # conf 0: an untrained model's boxes count
    alone = [len(predict(yolo, [p], batch=1, **args)) for p in images]
    assert min(alone) > 0, alone

    clock = iter(range(0, 10**6, 100))  # every reading of NMS's clock is 100 s after the last
    monkeypatch.setattr(nms, "time", type("Clock", (), {"time": staticmethod(lambda: next(clock))}))
    stock = yolo.predict([str(p) for p in images], batch=4, rect=False, verbose=False, save=False,
                         predictor=DetectionPredictor, **args)  # rect=False: square letterbox, as ours
    assert [len(r.boxes) for r in stock] == alone[:1] + [0, 0, 0]  # the failure this guards against
    dets = predict(yolo, images, batch=4, **args)
    assert [sum(d["image_id"] == i for d in dets) for i in range(1, 5)] == alone


def test_whole_image_prediction_runs_batch_images_at_a_time_and_batching_changes_no_box(data, tmp_path):
    """Ultralytics infers a list source as one batch, whatever `batch` says (60 frames at 1536 px held ~17 GB)."""
    import cv2
    from ultralytics import YOLO

    from yolo_incep.eval.models import predict

    images, _ = coco.load_data_yaml(data, "val")
    tall = tmp_path / "tall.jpg"  # a second shape: with predict's default rect=True, padding depends on the batch
    cv2.imwrite(str(tall), cv2.imread(str(images[0])).transpose(1, 0, 2))
    images = [*images, tall]
    yolo = YOLO("yolov8n.yaml")
    sizes = []
    yolo.model.register_forward_hook(lambda m, x, y: sizes.append(len(x[0])))
    args = dict(imgsz=64, device="cpu", conf=0.0, iou=0.7, max_det=20)
    by_batch = {b: sorted(predict(yolo, images, batch=b, **args), key=json.dumps) for b in (1, 2, 5)}
    assert sizes[-4:] == [2, 2, 1, 5]  # batch 2: forwards of 2, 2 and 1 images; then batch 5: one of 5
    assert by_batch[1] == by_batch[2] == by_batch[5]


class FakeTerminal(io.StringIO):
    """stderr as a terminal: what the progress bar writes stays readable."""

    def isatty(self) -> bool:
        return True


def saved_predictions(data: Path, tmp_path: Path) -> list[str]:
    """Two saved predictions files (compare's self-describing form) of fake_predict's detections."""
    from yolo_incep.eval import predictions

    images, _ = coco.load_data_yaml(data, "val")
    files = []
    for name in ("a", "b"):
        files.append(str(tmp_path / f"{name}.json.gz"))
        predictions.write(Path(files[-1]), fake_predict(None, images, 64, "cpu", 1, 0.001, 0.7, 500), images, {})
    return files


@pytest.mark.parametrize("terminal, quiet, shown", [(True, False, True), (True, True, False), (False, False, False)])
def test_progress_bar_on_a_terminal_only(data, tmp_path, monkeypatch, terminal, quiet, shown):
    files = saved_predictions(data, tmp_path)
    err = FakeTerminal() if terminal else io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    monkeypatch.setenv("COLUMNS", "200")  # the bar fits a terminal's width; this one has no size of its own
    argv = ["compare", f"a={files[0]}", f"b={files[1]}", "--data", str(data), "--out", str(tmp_path / "o"),
            "--resamples", "20"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(argv + (["--quiet"] if quiet else [])) == 0
    text = err.getvalue()
    bars = [line for line in text.split("\r\x1b[K") if line.startswith("compare ")]
    assert bool(bars) == shown
    if shown:  # the row, the phase, its frames or resamples done out of how many; then the time left in all
        assert any(b.startswith("compare 1/2 a evaluating: ") and " 4/4 " in b for b in bars)
        assert any(re.match(r"compare 2/2 \(~\d+s left\) b resampling: .* 20/20 ", b) for b in bars)
    if quiet:
        assert text == ""
