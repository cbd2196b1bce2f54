"""MetaNeXtBlock.fuse(): exact against the unfused eval model, idempotent, reached by Ultralytics' fuse and export."""

import copy
import shutil

import pytest
import torch
from torch import nn

from helpers import randomize_norms
from yolo_incep.nn import MetaNeXtBlock
from yolo_incep.plugin import MODEL_YAMLS


# the last shape is above the tiling threshold (>= 1M hidden floats per image) and splits into uneven tiles
@pytest.mark.parametrize("dim,shape", [(32, (2, 32, 20, 24)), (4, (1, 4, 9, 9)), (16, (2, 16, 144, 144))])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_fused_block_equals_unfused_eval(dim, shape, layout):
    block = MetaNeXtBlock(dim).eval()
    randomize_norms(block)
    x = torch.randn(shape).contiguous(memory_format=layout)
    with torch.no_grad():
        expected = block(x)
    fused = copy.deepcopy(block).fuse()
    assert fused.fused and not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules()) and fused.gamma is None
    with torch.inference_mode():  # the tiled CPU inference path
        torch.testing.assert_close(fused(x), expected, atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), expected, atol=1e-4, rtol=1e-4)
    x.requires_grad_(True)  # the plain path, as autograd or a tracer sees it
    torch.testing.assert_close(fused(x), expected, atol=1e-4, rtol=1e-4)


def test_fuse_is_idempotent_and_in_place():
    block = MetaNeXtBlock(24).eval()
    randomize_norms(block, seed=1)
    fc1_weight = block.mlp.fc1.weight
    assert block.fuse() is block and block.mlp.fc1.weight is fc1_weight
    state = copy.deepcopy(block.state_dict())
    block.fuse()
    for k, v in block.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert "norm.running_mean" not in state and "gamma" not in state


def test_fuse_without_layer_scale():
    block = MetaNeXtBlock(16, ls_init_value=None).eval()
    randomize_norms(block, seed=2)
    x = torch.randn(1, 16, 10, 10)
    with torch.no_grad():
        expected = block(x)
        torch.testing.assert_close(block.fuse()(x), expected, atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def detection_model():
    """yolov8n-incep with randomized norms, eval mode."""
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel("yolov8n-incep.yaml", verbose=False).eval()
    randomize_norms(model, seed=3)
    return model


def test_ultralytics_fuse_reaches_every_block(detection_model):
    model = copy.deepcopy(detection_model)
    blocks = [m for m in model.modules() if isinstance(m, MetaNeXtBlock)]
    assert len(blocks) >= 6
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        expected = model(x)[0]
    model.fuse(verbose=False)
    assert all(b.fused for b in blocks)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    with torch.inference_mode():
        torch.testing.assert_close(model(x)[0], expected, atol=1e-4, rtol=1e-4)
    model.fuse(verbose=False)  # Ultralytics may fuse twice (predict after val): nothing changes
    with torch.inference_mode():
        torch.testing.assert_close(model(x)[0], expected, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_onnx_export_uses_the_fused_form(tmp_path, detection_model):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from ultralytics import YOLO

    yaml = tmp_path / "yolov8n-incep.yaml"  # a local copy: the exporter writes beside the model file
    shutil.copy(MODEL_YAMLS / "yolov8-incep.yaml", yaml)
    yolo = YOLO(str(yaml))
    yolo.model.load_state_dict(detection_model.state_dict())
    path = yolo.export(format="onnx", imgsz=64, simplify=False, verbose=False)
    graph = onnx.load(path).graph
    assert not [n.name for n in graph.node if n.op_type == "BatchNormalization"]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = detection_model(x)[0].numpy()
    got = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {graph.input[0].name: x.numpy()})[0]
    assert got.shape == expected.shape
    assert abs(got - expected).max() < 1e-3 * max(1.0, abs(expected).max())
