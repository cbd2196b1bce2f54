"""DetectIncep: a Detect whose loss, decoding, fuse, weight transfer and exports (ONNX, OpenVINO) keep working."""

import copy
import shutil

import pytest
import torch
from conftest import randomize_norms
from torch import nn
from ultralytics import YOLO
from ultralytics.nn.modules import Detect
from ultralytics.nn.modules.block import DFL
from ultralytics.nn.tasks import DetectionModel, yaml_model_load

from yolo_incep.bench import model_cost
from yolo_incep.nn import (
    DetectIncep,
    DetectIncepCls1,
    DetectIncepCls1Split,
    DetectIncepNarrow,
    DetectIncepStemless,
    InceptionDWConv2d,
    MatmulDFL,
)
from yolo_incep.plugin import MODEL_YAMLS

INCEP_YAMLS = sorted(p.name for p in MODEL_YAMLS.glob("*.yaml"))
HEAD_YAMLS = [n for n in INCEP_YAMLS if "DetectIncep" in (MODEL_YAMLS / n).read_text()]


def _model(name: str, scale: str = "n", seed: int = 0) -> DetectionModel:
    """A model YAML from model_yamls/ at `scale`, BN statistics randomized so that folding them shows."""
    d = yaml_model_load(MODEL_YAMLS / name)
    d["scale"] = scale if scale in (d.get("scales") or {}) else next(iter(d.get("scales") or {"": None}))
    torch.manual_seed(seed)
    model = DetectionModel(d, verbose=False).eval()
    randomize_norms(model, seed)
    return model


def test_the_head_yamls_build_a_detect_subclass_with_dense_3x3_convs_only_where_their_class_says():
    assert {"yolov8-incep-p2.yaml", "yolo11-incep-p2.yaml", "yolov8-incep-lighthead.yaml"} <= set(HEAD_YAMLS)
    for name in HEAD_YAMLS:
        head = _model(name).model[-1]
        assert isinstance(head, DetectIncep) and isinstance(head, Detect) and type(head).mirror == "Detect"
        # every head has the Inception stem but the stemless experiment, which has none
        assert any(isinstance(m, InceptionDWConv2d) for m in head.modules()) == type(head).inception_stem, name
        dense = [n for n, m in head.named_modules()
                 if isinstance(m, nn.Conv2d) and m.groups == 1 and m.kernel_size != (1, 1)]
        # only the dense-branch experiments have any: exactly dense_box / dense_cls per stride, in that branch
        for branch, count in (("cv2.", type(head).dense_box), ("cv3.", type(head).dense_cls)):
            assert len([n for n in dense if n.startswith(branch)]) == count * head.nl, f"{name}: {branch} {dense}"
        assert all(n.startswith(("cv2.", "cv3.")) for n in dense), f"{name}: dense spatial convs in the stem"


def test_a_split_stem_head_is_the_shared_one_with_a_copy_of_the_stem_in_each_branch():
    ch = (32, 64, 128)
    torch.manual_seed(0)
    shared = DetectIncepCls1(nc=10, ch=ch).eval()
    torch.manual_seed(0)  # same draws in the same order: the split head starts from the same weights
    split = DetectIncepCls1Split(nc=10, ch=ch).eval()
    assert all(isinstance(m, nn.Identity) for m in split.stem)
    for i in range(len(ch)):  # each branch owns its stem: no module shared between the box and class branches
        assert isinstance(split.cv2[i][0], InceptionDWConv2d) and isinstance(split.cv3[i][0], InceptionDWConv2d)
        assert split.cv2[i][0] is not split.cv3[i][0]
    shared.stride = split.stride = torch.tensor([8.0, 16.0, 32.0])
    x = [torch.randn(1, c, 64 // 2**i, 64 // 2**i) for i, c in enumerate(ch)]
    torch.testing.assert_close(split(x)[0], shared(x)[0])


def test_a_stemless_head_reads_the_neck_maps_and_works_at_the_stock_branch_widths():
    ch, nc = (32, 64, 128), 10
    ours = DetectIncepStemless(nc=nc, ch=ch)
    stock = Detect(nc=nc, ch=ch)  # the widths stock Detect gives these maps: box 64, class max(ch[0], nc)
    assert all(isinstance(m, nn.Identity) for m in ours.stem)
    for i, c in enumerate(ch):
        for branch, widths in ((ours.cv2[i], stock.cv2[i]), (ours.cv3[i], stock.cv3[i])):
            first, widen, second, out = branch
            assert first.conv.groups == first.conv.in_channels == c  # depthwise over the neck's map
            assert widen.conv.kernel_size == (1, 1) and second.conv.groups == second.conv.in_channels
            assert widen.conv.out_channels == second.conv.out_channels == widths[-1].in_channels
            assert out.out_channels == widths[-1].out_channels
    ours.stride = torch.tensor([8.0, 16.0, 32.0])
    y = ours.eval()([torch.randn(1, c, 32 // 2**i, 32 // 2**i) for i, c in enumerate(ch)])[0]
    assert y.shape == (1, 4 + nc, 32 * 32 + 16 * 16 + 8 * 8)


def test_a_narrow_head_is_stock_detect_with_each_branch_at_most_as_wide_as_its_input(monkeypatch):
    # YOLOv8's Detect: Ultralytics' parser sets this class flag per YAML, so it depends on what the session built last
    monkeypatch.setattr(Detect, "legacy", True)
    ch, nc = (32, 64, 128), 80
    ours, stock = DetectIncepNarrow(nc=nc, ch=ch), Detect(nc=nc, ch=ch)  # stock: box 64, class 80 at every stride
    for i, c in enumerate(ch):
        for branch, widths in ((ours.cv2[i], stock.cv2[i]), (ours.cv3[i], stock.cv3[i])):
            assert [(m.conv.kernel_size, m.conv.groups) for m in branch[:-1]] == [((3, 3), 1)] * 2
            assert [m.conv.out_channels for m in branch[:-1]] == [min(c, m.conv.out_channels) for m in widths[:-1]]
            assert branch[-1].out_channels == widths[-1].out_channels
    assert [b[0].conv.out_channels for b in ours.cv3] == [32, 64, 80]


@pytest.mark.parametrize(("ours", "stock"), [("yolov8-incep-p2.yaml", "yolov8n-p2.yaml"),
                                             ("yolov8-p2-incephead.yaml", "yolov8n-p2.yaml"),
                                             ("yolov8-p2-narrowhead.yaml", "yolov8n-p2.yaml"),
                                             ("yolov8-incep-p2-narrowhead.yaml", "yolov8n-p2.yaml"),
                                             ("yolov8-incep-p2-p45-narrowhead.yaml", "yolov8n-p2.yaml"),
                                             ("yolov8-incep-lighthead.yaml", "yolov8n.yaml")])
def test_params_and_gflops_stay_below_the_stock_model(ours, stock):
    (p_ours, g_ours), (p_stock, g_stock) = model_cost(_model(ours), 640), model_cost(DetectionModel(stock), 640)
    assert p_ours < p_stock and g_ours < g_stock


def test_matmul_dfl_equals_the_stock_dfl():
    x = torch.randn(2, 64, 300) * 4
    ours, stock = MatmulDFL(16), DFL(16)
    assert ours.state_dict().keys() == stock.state_dict().keys()
    torch.testing.assert_close(ours(x), stock(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", HEAD_YAMLS)
def test_fuse_folds_every_batchnorm_and_keeps_the_outputs(name):
    model = _model(name, seed=1)
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


def test_training_loss_and_stock_weight_transfer():
    from ultralytics.cfg import get_cfg

    model = DetectionModel("yolov8n-incep-p2.yaml", verbose=False)
    model.args = get_cfg()
    batch = {"img": torch.rand(2, 3, 64, 64), "batch_idx": torch.tensor([0.0, 1.0]),
             "cls": torch.tensor([[1.0], [2.0]]), "bboxes": torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.3, 0.4, 0.1, 0.1]])}
    loss, _ = model.loss(batch)
    loss.sum().backward()
    assert torch.isfinite(loss).all() and model.model[-1].stem[0][1].conv.weight.grad.abs().sum() > 0
    model.load(DetectionModel("yolov8n-p2.yaml", verbose=False), verbose=False)  # stock head: backbone transfers


def _export_and_compare(name: str, fmt: str, tmp_path, monkeypatch) -> None:
    """Export a model YAML with `yolo export`'s Python API at 64 px and compare the runtime with PyTorch to 1e-3."""
    monkeypatch.chdir(tmp_path)  # a YAML-built model exports beside its file or, for OpenVINO, into the cwd
    model = _model(name, seed=2)
    stem = name.replace("-incep", "n-incep", 1) if not name.startswith("yolov9") else name  # the n scale letter
    yaml = tmp_path / stem  # a local copy: the exporter writes beside the model file
    shutil.copy(MODEL_YAMLS / name, yaml)
    yolo = YOLO(str(yaml))
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
@pytest.mark.parametrize("name", HEAD_YAMLS)
def test_onnx_export_equals_pytorch(name, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    _export_and_compare(name, "onnx", tmp_path, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("name", INCEP_YAMLS)
def test_openvino_export_equals_pytorch(name, tmp_path, monkeypatch):
    pytest.importorskip("openvino", reason="openvino is not installed (pip install yolo-incep[openvino])")
    _export_and_compare(name, "openvino", tmp_path, monkeypatch)
