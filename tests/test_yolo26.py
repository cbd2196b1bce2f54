"""YOLO26 in the zoo: the measured rows (YAMLs and `swap --rule p45` agree), end-to-end predictions as Ultralytics'
own (no second NMS, max_det kept), prediction without NMS's time limit, fuse, ONNX export and pretrained transfer."""

import json
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from torch import nn
from torchvision.ops import box_iou
from ultralytics import YOLO
from ultralytics.nn.tasks import DetectionModel, yaml_model_load
from ultralytics.utils import nms as ultralytics_nms

from helpers import TRAIN_ARGS, randomize_norms, run_process
from yolo_incep import train_metric
from yolo_incep.cli import main
from yolo_incep.eval import coco
from yolo_incep.eval.compare import compare_models
from yolo_incep.eval.models import predict, predict_sliced
from yolo_incep.plugin import MODEL_YAMLS

ZOO = {"yolo26-incep.yaml": "yolo26n.yaml", "yolo26-incep-p2.yaml": "yolo26n-p2.yaml"}  # ours -> stock source
IMGSZ = 128  # the synthetic images' own size: predict's and val's letterboxes are then both the identity
SETTINGS = dict(conf=0.001, iou=0.7)


def _types(d: dict) -> list[str]:
    return [row[2] for row in d["backbone"] + d["head"]]


def _model(name: str, seed: int) -> DetectionModel:
    """A zoo YAML at scale n, eval mode, BatchNorm statistics randomized so that folding them shows."""
    torch.manual_seed(seed)
    model = DetectionModel({**yaml_model_load(MODEL_YAMLS / name), "scale": "n"}, verbose=False).eval()
    randomize_norms(model, seed)
    return model


@pytest.mark.parametrize("name", ZOO)
def test_swap_p45_is_the_zoo_design_and_all_converts_every_row(name, tmp_path, capsys):
    source = ZOO[name]
    assert main(["swap", source, "-o", str(tmp_path / "mine-p45.yaml")]) == 0  # --rule p45 by default
    printed = capsys.readouterr().out
    got, zoo = yaml.safe_load((tmp_path / "mine-p45.yaml").read_text()), yaml_model_load(MODEL_YAMLS / name)
    assert _types(got) == _types(zoo)
    assert [i for i, t in enumerate(_types(zoo)) if t == "C3k2Incep"] == [6, 8]  # backbone strides 16 and 32
    assert got["end2end"] is True and got["reg_max"] == 1  # the stock end-to-end head, untouched
    assert "kept stock: row 4 C3k2 (stride 8;" in printed and "kept stock: row 2 C3k2 (stride 4;" in printed
    assert main(["swap", source, "-o", str(tmp_path / "mine-all.yaml"), "--rule", "all"]) == 0
    every = _types(yaml.safe_load((tmp_path / "mine-all.yaml").read_text()))
    assert every.count("C3k2Incep") == _types(yaml_model_load(source)).count("C3k2") and "C3k2" not in every


def test_p45_rule_with_only_neck_rows_is_a_one_line_error(tmp_path, capsys):
    assert main(["swap", "yolo26n.yaml", "-o", str(tmp_path / "neck.yaml"), "--where", "neck"]) == 2
    assert "--rule p45" in capsys.readouterr().err and not (tmp_path / "neck.yaml").exists()


@pytest.mark.parametrize("name", ZOO)
@pytest.mark.parametrize("end2end", [False, True])
def test_fuse_folds_every_batchnorm_and_keeps_both_heads_outputs(name, end2end):
    model = _model(name, seed=1)
    model.end2end = end2end  # Ultralytics' nms=False picks the one-to-one head before fusing
    x = torch.rand(1, 3, 96, 128)
    with torch.no_grad():
        expected = model(x)[0]
    model.fuse(verbose=False)
    assert not [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(b.fused for m in model.model if "Incep" in type(m).__name__ for b in m.modules() if hasattr(b, "fused"))
    with torch.inference_mode():
        torch.testing.assert_close(model(x)[0], expected, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
@pytest.mark.parametrize("name", ZOO)
def test_export_equals_pytorch(name, fmt, tmp_path, monkeypatch):
    """`yolo export`'s Python API at 64 px; the runtime's output equals PyTorch's to 1e-3 (of its largest value)."""
    pytest.importorskip("onnxruntime" if fmt == "onnx" else "openvino")
    monkeypatch.chdir(tmp_path)  # a YAML-built model exports beside its file or, for OpenVINO, into the cwd
    model = _model(name, seed=2)
    local = tmp_path / name.replace("-incep", "n-incep")  # a local copy with the n letter: the exporter writes beside
    local.write_text((MODEL_YAMLS / name).read_text())
    yolo = YOLO(str(local))
    yolo.model.load_state_dict(model.state_dict())
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)[0].numpy()
    path = yolo.export(format=fmt, imgsz=64, verbose=False, **({"simplify": False} if fmt == "onnx" else {}))
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    else:
        import openvino as ov

        config = {"INFERENCE_PRECISION_HINT": ov.Type.f32}  # as Ultralytics' OpenVINO backend asks (no bf16)
        got = ov.Core().compile_model(next((tmp_path / path).glob("*.xml")), "CPU", config)(x.numpy())[0]
    assert got.shape == expected.shape
    assert abs(got - expected).max() < 1e-3 * max(1.0, abs(expected).max())


# ---- pretrained weights: a stock yolo26n checkpoint into the swapped config through the stock CLI

@pytest.mark.slow
def test_stock_checkpoint_transfers_every_tensor_of_the_unchanged_layers(synthetic_data, fresh_env, tmp_path):
    nc = len(yaml.safe_load(synthetic_data.read_text())["names"])
    torch.manual_seed(0)
    stock = DetectionModel("yolo26n.yaml", nc=nc, verbose=False)
    torch.save({"model": stock, "train_args": {}}, tmp_path / "stock.pt")
    out = run_process(["yolo", "train", "model=yolo26n-incep.yaml", f"pretrained={tmp_path / 'stock.pt'}",
                       f"data={synthetic_data}", *TRAIN_ARGS, f"project={tmp_path}", "name=run"], fresh_env, tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    transferred, total = map(int, re.search(r"Transferred (\d+)/(\d+) items", out.stdout + out.stderr).groups())

    # expected, independently: every key of a layer whose type the swap kept (shapes must match there), plus keys
    # of the swapped layers with the stock name and shape: C3k2Incep keeps C3k2's CSP convs, and its C3Incep inner
    # blocks those of C3k (cv1-cv3); only the MetaNeXt blocks inside start fresh
    ours = DetectionModel("yolo26n-incep.yaml", nc=nc, verbose=False)
    theirs, mine = stock.state_dict(), ours.state_dict()
    kept = {i for i, (a, b) in enumerate(zip(stock.model, ours.model)) if type(a) is type(b)}
    assert kept == set(range(len(ours.model))) - {6, 8}

    def layer(key: str) -> int:
        return int(key.split(".")[1])

    unchanged = [k for k in mine if layer(k) in kept]
    assert all(theirs[k].shape == mine[k].shape for k in unchanged)
    shared = [k for k in mine if layer(k) not in kept and k in theirs and theirs[k].shape == mine[k].shape]
    assert shared and all(re.match(r"model\.[68]\.(m\.\d+\.)?cv[123]\.", k) for k in shared)
    assert (transferred, total) == (len(unchanged) + len(shared), len(mine))
    ours.load(stock, verbose=False)  # the values too: every unchanged tensor is the checkpoint's
    assert all(torch.equal(ours.state_dict()[k], theirs[k]) for k in unchanged)


# ---- predictions of an end-to-end checkpoint: compare, the AP_small training metric, Ultralytics' own

@pytest.fixture(scope="module")
def e2e(tmp_path_factory, synthetic_data):
    """A yolo26n checkpoint trained two steps on the synthetic set, and its val images."""
    root = tmp_path_factory.mktemp("yolo26")
    YOLO("yolo26n.yaml").train(data=str(synthetic_data), epochs=1, imgsz=64, batch=8, workers=0, device="cpu",
                               plots=False, amp=False, val=False, project=str(root), name="run", exist_ok=True,
                               pretrained=False, seed=0, verbose=False)
    images, names = coco.load_data_yaml(synthetic_data, "val")
    return root / "run" / "weights" / "last.pt", images, coco.build_gt(images, names)


def _rows(dets: list[dict], image_names: list[str] | None = None) -> np.ndarray:
    """Detections as sorted rows (image, category, score, x, y, w, h); image ids mapped through `image_names`."""
    rows = [((image_names.index(d["image_id"]) + 1) if image_names else d["image_id"], d["category_id"], d["score"],
             *d["bbox"]) for d in dets]
    return np.array(sorted(rows, key=lambda r: (r[0], r[1], -r[2], *r[3:])), dtype=float).reshape(-1, 7)


def _ultralytics(ckpt, images, **kwargs) -> list[dict]:
    """YOLO.predict's detections in the COCO form of eval/models.py (1-based image ids, rounded alike)."""
    out = []
    for i, r in enumerate(YOLO(ckpt).predict([str(p) for p in images], imgsz=IMGSZ, rect=False, verbose=False,
                                             **SETTINGS, **kwargs), 1):
        for (x1, y1, x2, y2), s, c in zip(r.boxes.xyxy.tolist(), r.boxes.conf.tolist(), r.boxes.cls.tolist()):
            out.append({"image_id": i, "category_id": int(c) + 1, "score": round(s, 5),
                        "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)]})
    return out


def _ours(ckpt, images, max_det: int = 500, nms=None) -> list[dict]:
    return predict(YOLO(ckpt), images, IMGSZ, "cpu", 3, max_det=max_det, nms=nms, **SETTINGS)


@pytest.mark.parametrize("nms", [None, False], ids=["one-to-many+nms", "one-to-one"])
def test_predictions_equal_ultralytics_predict(e2e, nms):
    ckpt, images, gt = e2e
    ours = _ours(ckpt, images, nms=nms)
    assert len(ours) > len(images)
    np.testing.assert_allclose(_rows(ours), _rows(_ultralytics(ckpt, images, max_det=500, nms=nms)), atol=2e-3)


def test_compare_nms_free_equals_yolo_val_and_gets_no_second_nms(e2e, synthetic_data, tmp_path):
    ckpt, images, gt = e2e
    report = compare_models([f"e2e={ckpt}"], synthetic_data, imgsz=IMGSZ, out=tmp_path / "cmp", device="cpu",
                            batch=3, max_det=500, latency_runs=1, resamples=20, nms_free=True, verbose=False,
                            **SETTINGS)
    ours = json.loads((tmp_path / "cmp" / "predictions_e2e.json").read_text())
    assert report.nms_free and report.models[0].detections == len(ours) == len(_ours(ckpt, images, nms=False))
    v = YOLO(ckpt).val(data=str(synthetic_data), imgsz=IMGSZ, batch=3, max_det=500, nms=False, rect=False,
                       save_json=True, plots=False, project=str(tmp_path), name="val", verbose=False, **SETTINGS)
    val = json.loads((v.save_dir / "predictions.json").read_text())
    np.testing.assert_allclose(_rows(ours), _rows(val, [p.stem for p in images]), atol=2e-3)
    # the one-to-one head's rows as they are: same-class boxes overlapping past `iou`, which an NMS would merge
    boxes = torch.tensor([d["bbox"] for d in ours if d["image_id"] == 1 and d["category_id"] == 1])
    xyxy = torch.cat([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], 1)
    assert box_iou(xyxy, xyxy).fill_diagonal_(0).max() > SETTINGS["iou"]


def test_max_det_is_kept_by_the_one_to_one_head(e2e):
    ckpt, images, gt = e2e
    everything, top5 = _ours(ckpt, images, nms=False), _ours(ckpt, images, max_det=5, nms=False)
    counts = np.bincount([d["image_id"] for d in everything])[1:]
    assert counts.max() > 5 and np.bincount([d["image_id"] for d in top5])[1:].max() == 5
    best = [d for i in range(1, len(images) + 1)
            for d in sorted((d for d in everything if d["image_id"] == i), key=lambda d: -d["score"])[:5]]
    np.testing.assert_allclose(_rows(top5), _rows(best), atol=2e-3)


class BusyClock:
    """Ultralytics' NMS clock on a machine that is never fast enough: every reading 1,000 s after the last."""

    def __init__(self):
        self.now = 0.0

    def time(self) -> float:
        self.now += 1000.0
        return self.now


def test_no_time_limit_in_compare_sliced_or_the_training_metric(e2e, synthetic_data, monkeypatch):
    ckpt, images, gt = e2e
    trainer = SimpleNamespace(ema=None, model=YOLO(ckpt).model, args=SimpleNamespace(imgsz=IMGSZ, nms=None),
                              device="cpu", batch_size=3)
    whole, (sliced, _), ap = (_ours(ckpt, images), predict_sliced(YOLO(ckpt), images[:2], "cpu", 0.001, 64, 0.2),
                              train_metric.ap_small(trainer, images, gt))
    monkeypatch.setattr(ultralytics_nms, "time", BusyClock())
    warned = []
    monkeypatch.setattr(ultralytics_nms.LOGGER, "warning", lambda msg, *args, **kwargs: warned.append(msg))
    stock = YOLO(ckpt).predict([str(p) for p in images[:3]], imgsz=IMGSZ, rect=False, verbose=False, **SETTINGS)
    # the limit bites Ultralytics' own predictor: a batch keeps its first image's boxes only, with a warning
    assert len(stock[0].boxes) and not len(stock[1].boxes) and not len(stock[2].boxes) and warned
    warned.clear()
    assert _ours(ckpt, images) == whole
    assert predict_sliced(YOLO(ckpt), images[:2], "cpu", 0.001, 64, 0.2)[0] == sliced
    assert train_metric.ap_small(trainer, images, gt) == ap
    assert not warned  # and no limit was even reached: none applies


def test_the_training_metric_scores_the_one_to_one_head_when_the_run_does(e2e, monkeypatch):
    ckpt, images, gt = e2e
    seen = []
    monkeypatch.setattr(coco, "run_cocoeval", lambda gt, dets, backend: seen.append(dets))
    monkeypatch.setattr(coco, "metrics", lambda e: {"maxDets": {"500": {"AP_small": 0.0}}})
    for nms in (None, False):
        trainer = SimpleNamespace(ema=None, model=YOLO(ckpt).model, args=SimpleNamespace(imgsz=IMGSZ, nms=nms),
                                  device="cpu", batch_size=3)
        train_metric.ap_small(trainer, images, gt)
        assert seen[-1] == coco.drop_ignored(_ours(ckpt, images, nms=nms), gt)
    assert seen[0] != seen[1]
