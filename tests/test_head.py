"""DetectIncep: a Detect whose loss, decoding, fuse, weight transfer and exports (ONNX, OpenVINO) keep working.

No product YAML names it (the evidence put stock Detect in the P2 models), so its models here are product YAMLs with
the Detect row set to DetectIncep, as a user would write them. The lab's head variants: experiments/tests/.
"""

import copy
from pathlib import Path

import pytest
import torch
import yaml
from helpers import randomize_norms
from torch import nn
from ultralytics import YOLO
from ultralytics.nn.modules import Conv, Detect, DWConv
from ultralytics.nn.modules.block import DFL
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils.checks import check_yaml

from yolo_incep.cost import model_cost
from yolo_incep.nn import DetectIncep, InceptionDWConv2d, MatmulDFL
from yolo_incep.plugin import MODEL_YAMLS

INCEP_YAMLS = sorted(p.name for p in MODEL_YAMLS.glob("*.yaml"))
# (YAML, head): the product YAMLs that name DetectIncep as they are, and the P2 and plain yolov8 ones with it
HEAD_MODELS = sorted({(n, False) for n in INCEP_YAMLS if "DetectIncep" in (MODEL_YAMLS / n).read_text()}
                     | {("yolov8-incep-p2.yaml", True), ("yolo11-incep-p2.yaml", True), ("yolov8-incep.yaml", True)})
HEAD_IDS = [f"{n[:-5]}{'+DetectIncep' if h else ''}" for n, h in HEAD_MODELS]


def _dict(name: str, head: bool = False) -> dict:
    """A model YAML of model_yamls/ (or Ultralytics' own) as its file says; its Detect row DetectIncep if `head`."""
    path = MODEL_YAMLS / name if (MODEL_YAMLS / name).is_file() else Path(check_yaml(name))
    d = yaml.safe_load(path.read_text())
    if head:
        assert d["head"][-1][2] == "Detect", name
        d["head"][-1][2] = "DetectIncep"
    return d


def _model(name: str, scale: str = "n", seed: int = 0, head: bool = False) -> DetectionModel:
    """The model of `_dict(name, head)` at `scale`, BN statistics randomized so that folding them shows."""
    d = _dict(name, head)
    d["scale"] = scale if scale in (d.get("scales") or {}) else next(iter(d.get("scales") or {"": None}))
    torch.manual_seed(seed)
    model = DetectionModel(d, verbose=False).eval()
    randomize_norms(model, seed)
    return model


def test_each_stride_has_an_inception_stem_then_one_depthwise_separable_layer_per_branch():
    head = _model("yolov8-incep-p2.yaml", head=True).model[-1]
    stock = _model("yolov8-incep-p2.yaml").model[-1]  # the stock Detect on the same neck maps
    assert isinstance(head, DetectIncep) and isinstance(head, Detect) and head.nl == 4
    assert [s[1].conv.out_channels for s in head.stem] == [32, 64, 64, 64]  # min(input, stock box width 64) at n
    for i, c in enumerate([32, 64, 128, 256]):  # yolov8n-p2's neck widths at P2-P5
        mixer, pointwise = head.stem[i]
        assert isinstance(mixer, InceptionDWConv2d) and mixer.dwconv_hw.in_channels < c  # 3/4 of c mixed, 3 kernels
        assert isinstance(pointwise, Conv) and pointwise.conv.kernel_size == (1, 1) and pointwise.conv.in_channels == c
        for branch, ref in ((head.cv2[i], stock.cv2[i]), (head.cv3[i], stock.cv3[i])):
            dw, out = branch
            assert isinstance(dw, DWConv) and dw.conv.kernel_size == (3, 3) and dw.conv.groups == dw.conv.in_channels
            assert out.kernel_size == (1, 1) and out.out_channels == ref[-1].out_channels  # 64 DFL bins, 80 classes
    dense = [n for n, m in head.named_modules()
             if isinstance(m, nn.Conv2d) and m.groups == 1 and m.kernel_size != (1, 1)]
    assert dense == []  # no dense spatial conv anywhere: where stock Detect spends P2's time
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():  # decoded like stock Detect: the same (batch, 4 + nc, anchors) output
        assert _model("yolov8-incep-p2.yaml", head=True)(x)[0].shape == _model("yolov8-incep-p2.yaml")(x)[0].shape


@pytest.mark.parametrize(("ours", "head", "stock"), [("yolov8-incep-p2.yaml", False, "yolov8n-p2.yaml"),
                                                     ("yolov8-incep-p2.yaml", True, "yolov8n-p2.yaml"),
                                                     ("yolov8-incep.yaml", True, "yolov8n.yaml")])
def test_params_and_gflops_stay_below_the_stock_model(ours, head, stock):
    (p_ours, g_ours) = model_cost(_model(ours, head=head), 640)
    (p_stock, g_stock) = model_cost(DetectionModel(stock), 640)
    assert p_ours < p_stock and g_ours < g_stock


def test_matmul_dfl_equals_the_stock_dfl():
    x = torch.randn(2, 64, 300) * 4
    ours, stock = MatmulDFL(16), DFL(16)
    assert ours.state_dict().keys() == stock.state_dict().keys()
    torch.testing.assert_close(ours(x), stock(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("name", "head"), HEAD_MODELS, ids=HEAD_IDS)
def test_fuse_folds_every_batchnorm_and_keeps_the_outputs(name, head):
    model = _model(name, seed=1, head=head)
    x = torch.rand(1, 3, 96, 128)
    with torch.no_grad():
        expected = model(x)[0]
    model.fuse(verbose=False)
    assert not [n for n, m in model.model[-1].named_modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.inference_mode():
        torch.testing.assert_close(model(x)[0], expected, atol=1e-4, rtol=1e-4)
    model.fuse(verbose=False)  # the plugin's fuse and Ultralytics' both reach the head: idempotent
    with torch.inference_mode():
        torch.testing.assert_close(model(x)[0], expected, atol=1e-4, rtol=1e-4)


def test_end2end_head_trains_both_branches_and_fuse_keeps_the_one_to_one():
    head = DetectIncep(nc=3, end2end=True, ch=(16, 32))
    head.stride = torch.tensor([8.0, 16.0])
    head.bias_init()
    x = [torch.rand(2, 16, 16, 16), torch.rand(2, 32, 8, 8)]
    preds = head.train()(x)
    assert set(preds) == {"one2many", "one2one"}
    assert preds["one2one"]["boxes"].shape == (2, 64, 16 * 16 + 8 * 8) and preds["one2one"]["scores"].shape[1] == 3
    sum(p["boxes"].sum() + p["scores"].sum() for p in preds.values()).backward()
    assert head.stem[0][1].conv.weight.grad is not None and head.one2one_stem[0][1].conv.weight.grad is not None
    head.eval()
    if Detect.end2end.fset is not None:  # later 8.4 releases let inference pick the head; 8.4.0 always takes one2one
        head.end2end = True
    with torch.no_grad():
        expected = head(x)[0]
    head.fuse()
    assert head.stem is None and head.cv2 is None and head.one2one_stem is not None
    with torch.no_grad():
        torch.testing.assert_close(head(x)[0], expected)


def test_training_loss_reaches_the_stem_and_stock_weights_transfer_to_all_but_the_head():
    from ultralytics.cfg import get_cfg

    model = DetectionModel({**_dict("yolov8-incep-p2.yaml", head=True), "scale": "n"}, verbose=False)
    model.args = get_cfg()
    batch = {"img": torch.rand(2, 3, 64, 64), "batch_idx": torch.tensor([0.0, 1.0]),
             "cls": torch.tensor([[1.0], [2.0]]), "bboxes": torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.3, 0.4, 0.1, 0.1]])}
    loss, _ = model.loss(batch)
    loss.sum().backward()
    assert torch.isfinite(loss).all() and model.model[-1].stem[0][1].conv.weight.grad.abs().sum() > 0
    # stock yolov8n-p2 into the same rows with DetectIncep: every backbone and neck tensor transfers; in the head,
    # what stock has under the same name and shape (DFL bins, some BN) transfers and the rest (the stem) stays
    torch.manual_seed(1)
    ours = DetectionModel({**_dict("yolov8-p2.yaml", head=True), "scale": "n"}, verbose=False)
    stock = DetectionModel("yolov8n-p2.yaml", verbose=False)
    with torch.no_grad():
        for p in stock.parameters():
            p.add_(1.0)  # no fresh-init value can match by chance
    before = copy.deepcopy(ours.state_dict())
    ours.load(stock, verbose=False)
    after, theirs, last = ours.state_dict(), stock.state_dict(), f"model.{len(ours.model) - 1}."
    body = [k for k in after if not k.startswith(last)]
    assert body and all(torch.equal(after[k], theirs[k]) for k in body)
    assert torch.equal(after[last + "dfl.conv.weight"], theirs[last + "dfl.conv.weight"])
    head = [k for k in after if k.startswith(last)]
    same = {k for k in head if k in theirs and theirs[k].shape == after[k].shape}
    assert all(torch.equal(after[k], theirs[k]) for k in same)
    own = [k for k in head if k not in same]
    assert any(k.startswith(last + "stem.") for k in own) and all(torch.equal(after[k], before[k]) for k in own)


def _export_and_compare(name: str, head: bool, fmt: str, tmp_path, monkeypatch) -> None:
    """Export a model YAML with `yolo export`'s Python API at 64 px and compare the runtime with PyTorch to 1e-3."""
    monkeypatch.chdir(tmp_path)  # a YAML-built model exports beside its file or, for OpenVINO, into the cwd
    model = _model(name, seed=2, head=head)
    stem = name.replace("-incep", "n-incep", 1) if not name.startswith("yolov9") else name  # the n scale letter
    yaml_file = tmp_path / stem  # a local copy: the exporter writes beside the model file
    yaml_file.write_text(yaml.safe_dump(_dict(name, head), sort_keys=False))
    yolo = YOLO(str(yaml_file))
    yolo.model.load_state_dict(model.state_dict())
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = copy.deepcopy(model)(x)[0].numpy()
    path = yolo.export(format=fmt, imgsz=64, verbose=False, **({"simplify": False} if fmt == "onnx" else {}))
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    else:
        import openvino as ov

        # f32 as Ultralytics' OpenVINO backend asks for: on AMX/AVX512-BF16 CPUs the default is bf16 arithmetic
        config = {"INFERENCE_PRECISION_HINT": ov.Type.f32}
        compiled = ov.Core().compile_model(next((tmp_path / path).glob("*.xml")), "CPU", config)
        got = compiled(x.numpy())[0]
    assert got.shape == expected.shape
    assert abs(got - expected).max() < 1e-3 * max(1.0, abs(expected).max())


@pytest.mark.slow
@pytest.mark.parametrize(("name", "head"), HEAD_MODELS, ids=HEAD_IDS)
def test_onnx_export_equals_pytorch(name, head, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    _export_and_compare(name, head, "onnx", tmp_path, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("name", INCEP_YAMLS)
def test_openvino_export_equals_pytorch(name, tmp_path, monkeypatch):
    pytest.importorskip("openvino", reason="openvino is not installed (pip install yolo-incep[openvino])")
    _export_and_compare(name, False, "openvino", tmp_path, monkeypatch)
