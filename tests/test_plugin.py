"""The plugin as users meet it: stock `yolo` CLI, YAML names, stock row treatment, checkpoints, resume, ONNX."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import ultralytics
from ultralytics import YOLO
from ultralytics.nn.modules import C2f
from ultralytics.nn.tasks import DetectionModel

from helpers import TRAIN, TRAIN_ARGS, layer_shapes, run_process
from yolo_incep import plugin
from yolo_incep.errors import InputError
from yolo_incep.nn import C2fIncep, MetaNeXtBlock


def test_plain_python_startup_imports_neither_torch_nor_ultralytics(fresh_env, tmp_path):
    code = "import sys; print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'ultralytics', 'yolo_incep'}))"
    out = run_process([sys.executable, "-c", code], fresh_env, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['yolo_incep']"  # only the stdlib-only start-up hook


def test_importing_the_parser_loads_only_what_parsing_needs(fresh_env, tmp_path):
    code = ("import sys, ultralytics.nn.tasks\n"
            "print(sorted(m for m in sys.modules if m.startswith('yolo_incep.') and not m.startswith('yolo_incep.nn')))")
    out = run_process([sys.executable, "-c", code], {**fresh_env, "YOLO_INCEP_AP_SMALL": "0"}, tmp_path)
    assert out.returncode == 0, out.stderr
    # the hook, the plugin, its errors and the opt-in metric's switch: no eval/, data/, protocol or cost code
    assert out.stdout.strip() == "['yolo_incep._bootstrap', 'yolo_incep.errors', 'yolo_incep.plugin', " \
                                 "'yolo_incep.train_metric']"


@pytest.mark.parametrize("scale", ["n", "m", "x"])
def test_rows_get_the_stock_treatment_at_every_scale(scale):
    ours, stock = YOLO(f"yolov8{scale}-incep.yaml").model, YOLO(f"yolov8{scale}.yaml").model
    assert ours.yaml["scale"] == scale
    assert layer_shapes(ours) == layer_shapes(stock)  # width scaling and max_channels, layer by layer
    for a, b in zip(ours.model, stock.model):
        if isinstance(a, C2fIncep):
            assert isinstance(b, C2f) and len(a.m) == len(b.m)  # depth scaling of repeats
            assert a.type == "yolo_incep.nn.blocks.C2fIncep"
        else:
            assert type(a) is type(b) and a.type == b.type
    assert [i for i, m in enumerate(ours.model) if isinstance(m, C2fIncep)] == [4, 6, 8, 15]


def test_a_yaml_without_our_layers_is_parsed_by_the_stock_parser_alone(monkeypatch):
    import ultralytics.nn.tasks as tasks

    seen = {}
    original = C2f.__init__

    def spy(self, *args, **kwargs):  # what `C2f` means in the parser's module while a stock row is built
        seen["C2f"] = tasks.C2f
        return original(self, *args, **kwargs)

    monkeypatch.setattr(C2f, "__init__", spy)
    model = YOLO("yolov8n.yaml").model
    assert seen["C2f"] is C2f  # not a stand-in: the plugin did nothing
    assert all(type(m).__module__.startswith(("ultralytics.", "torch.")) for m in model.modules())


def test_our_rows_record_their_own_type_and_stock_rows_theirs():
    model = YOLO("yolov8n-inceptionnext.yaml").model  # stand-ins for C2f and AConv serve our rows and stock C2f rows
    types = [m.type for m in model.model]
    assert types[:5] == ["yolo_incep.nn.backbone.InceptionNeXtStem"] + ["yolo_incep.nn.backbone.InceptionNeXtStage"] * 4
    assert types[8] == "ultralytics.nn.modules.block.C2f" and type(model.model[8]) is C2f
    import ultralytics.nn.tasks as tasks

    assert tasks.C2f is C2f and "InceptionNeXtStage" not in vars(tasks)  # the parser's names are restored


def test_a_changed_parser_is_reported_with_the_version(monkeypatch):
    import ultralytics.nn.tasks as tasks

    original = tasks.parse_model.__wrapped__

    def reordered(d, ch, verbose=True):  # a parser that no longer enumerates backbone + head
        return original({**d, "backbone": list(d["backbone"]), "head": list(d["head"])}, ch, verbose)

    monkeypatch.setattr(tasks, "parse_model", plugin._wrap_parse_model(tasks, reordered))
    with pytest.raises(RuntimeError, match=rf"ultralytics {ultralytics.__version__}.*parser changed.*8\.4\.0"):
        DetectionModel("yolov8n-incep.yaml", verbose=False)


@pytest.mark.parametrize("source", ["yolov8n.yaml", "yolo11n.yaml"])  # Detect.legacy set by the parser: True, False
def test_a_detect_subclass_gets_the_stock_detect_rows_treatment(monkeypatch, source):
    from ultralytics.nn.modules import Detect
    from ultralytics.nn.tasks import yaml_model_load

    class ToyDetect(Detect):
        """A head of ours, as a Detect subclass naming its mirror."""

        mirror = "Detect"

    layers = {**plugin.layer_classes(), "ToyDetect": ToyDetect}
    monkeypatch.setattr(plugin, "layer_classes", lambda: layers)
    stock = DetectionModel(yaml_model_load(source), verbose=False)
    d = yaml_model_load(source)
    d["head"][-1][2] = "ToyDetect"
    ours = DetectionModel(d, verbose=False)
    assert type(ours.model[-1]) is ToyDetect and ours.model[-1].type.endswith(".ToyDetect")
    shapes = {k: v.shape for k, v in ours.state_dict().items()}
    assert shapes == {k: v.shape for k, v in stock.state_dict().items()}  # input channels from `from`, legacy head
    assert ours.stride.tolist() == stock.stride.tolist()


@pytest.mark.parametrize(("value", "gamma"), [(1.0, 1.0), (0.5, 0.5), (None, None), (0, None), ("absent", "default")])
def test_layer_scale_key_sets_every_metanext_block_of_the_yaml(value, gamma):
    from ultralytics.nn.tasks import yaml_model_load

    d = yaml_model_load("yolov8n-incep.yaml")
    if value != "absent":
        d["layer_scale"] = value
    model = DetectionModel(d, verbose=False)
    blocks = [m for m in model.modules() if isinstance(m, MetaNeXtBlock)]
    assert len(blocks) >= 6
    expected = MetaNeXtBlock.ls_init_default if gamma == "default" else gamma
    for b in blocks:
        assert (b.gamma is None) if expected is None else torch.equal(b.gamma, torch.full_like(b.gamma, expected))
    assert MetaNeXtBlock.ls_init_default == 1e-6 and MetaNeXtBlock(8).gamma[0] == 1e-6  # restored after the parse


def test_layer_scale_leaves_the_inceptionnext_backbone_at_timms_value():
    from ultralytics.nn.tasks import yaml_model_load

    d = {**yaml_model_load("yolov8n-inceptionnext.yaml"), "layer_scale": 1.0}
    stage = DetectionModel(d, verbose=False).model[1]
    assert torch.equal(stage.blocks[0].gamma, torch.full_like(stage.blocks[0].gamma, 1e-6))  # the checkpoint's


@pytest.mark.parametrize("value", ["big", True, [1.0], float("nan")])
def test_a_bad_layer_scale_names_the_file_and_key(value):
    from ultralytics.nn.tasks import yaml_model_load

    d = {**yaml_model_load("yolov8n-incep.yaml"), "layer_scale": value, "yaml_file": "mine.yaml"}
    with pytest.raises(InputError, match=r"^mine\.yaml: layer_scale: expected a number"):
        DetectionModel(d, verbose=False)


def test_bad_yaml_arguments_name_the_layer_row():
    cfg = {"nc": 2, "backbone": [[-1, 1, "Conv", [16, 3, 2]], [-1, 1, "C2fIncep", [16, True, 1, "wide"]]],
           "head": [[[-1], 1, "Detect", ["nc"]]], "yaml_file": "my-model.yaml"}
    with pytest.raises(InputError, match=r"my-model\.yaml: layer row 1 \(C2fIncep\)"):
        DetectionModel(cfg, verbose=False)


def test_unsupported_ultralytics_version_is_refused_with_the_range(monkeypatch):
    monkeypatch.setattr(ultralytics, "__version__", "8.3.99")
    with pytest.raises(ImportError, match=r"ultralytics>=8\.4\.0,<8\.5\.0.*8\.3\.99"):
        YOLO("yolov8n-incep.yaml")
    YOLO("yolov8n.yaml")  # stock models are not our business


def test_version_range_parsing():
    assert plugin.is_supported(ultralytics.__version__)
    assert plugin.is_supported("8.4.0") and plugin.is_supported("8.4.999rc1")
    assert not plugin.is_supported("8.3.253") and not plugin.is_supported("8.5.0") and not plugin.is_supported("9.0")


def test_unknown_bare_yaml_still_fails_like_stock():
    with pytest.raises(FileNotFoundError):
        YOLO("yolov8n-nonexistent.yaml")


@pytest.fixture(scope="module")
def trained(synthetic_data, fresh_env, tmp_path_factory) -> Path:
    """best.pt of one epoch trained through the stock `yolo` CLI, in a process that never imports yolo_incep."""
    cwd = tmp_path_factory.mktemp("cli")
    out = run_process(["yolo", "train", "model=yolov8n-incep.yaml", f"data={synthetic_data}", *TRAIN_ARGS,
                       f"project={cwd}", "name=run"], fresh_env, cwd)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "yolo_incep.nn.blocks.C2fIncep" in out.stdout + out.stderr  # the printed model shows our blocks
    return cwd / "run" / "weights" / "best.pt"


@pytest.mark.slow
@pytest.mark.parametrize("safe_load", ["0", "1"])
def test_checkpoint_loads_validates_and_predicts_in_a_fresh_process(trained, synthetic_data, fresh_env, tmp_path, safe_load):
    code = (
        "import sys; from ultralytics import YOLO\n"
        f"m = YOLO({str(trained)!r})\n"
        "assert 'yolo_incep' not in sys.modules or 'yolo_incep.cli' not in sys.modules\n"
        f"r = m.val(data={str(synthetic_data)!r}, imgsz=64, batch=8, workers=0, device='cpu', plots=False)\n"
        f"p = m.predict({str(Path(synthetic_data).parent / 'images/val')!r}, imgsz=64, device='cpu', verbose=False)\n"
        "print('TYPES', sorted({type(x).__name__ for x in m.model.modules()} & {'C2fIncep', 'MetaNeXtBlock'}), len(p))\n"
    )
    out = run_process([sys.executable, "-c", code], {**fresh_env, "ULTRALYTICS_SAFE_LOAD": safe_load}, tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "TYPES ['C2fIncep', 'MetaNeXtBlock'] 8" in out.stdout


@pytest.mark.slow
def test_resume_continues_an_interrupted_run(synthetic_data, fresh_env, tmp_path):
    interrupted = (
        "import os; from ultralytics import YOLO\n"
        "m = YOLO('yolov8n-incep.yaml')\n"
        "m.add_callback('on_model_save', lambda t: os._exit(3) if t.epoch == 0 else None)\n"  # dies after epoch 1 of 2
        f"m.train(data={str(synthetic_data)!r}, project={str(tmp_path)!r}, name='r', **{ {**TRAIN, 'epochs': 2}!r})\n"
    )
    out = run_process([sys.executable, "-c", interrupted], fresh_env, tmp_path)
    assert out.returncode == 3, out.stdout[-2000:] + out.stderr[-2000:]
    last = tmp_path / "r" / "weights" / "last.pt"
    assert torch.load(last, weights_only=False)["epoch"] == 0
    out = run_process(["yolo", "train", "resume", f"model={last}"], fresh_env, tmp_path)  # as Ultralytics documents it
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    rows = (tmp_path / "r" / "results.csv").read_text().strip().splitlines()
    assert [r.split(",")[0].strip() for r in rows[1:]] == ["1", "2"]


@pytest.mark.slow
def test_onnx_export_matches_pytorch(tmp_path, monkeypatch):
    ort = pytest.importorskip("onnxruntime")
    monkeypatch.chdir(tmp_path)  # a model built from a bundled YAML name exports into the working directory
    model = YOLO("yolov8n-incep.yaml")
    torch.manual_seed(0)
    for m in model.model.modules():  # wake the layer scales up so the Inception blocks matter in the comparison
        if isinstance(m, MetaNeXtBlock):
            m.gamma.data.uniform_(0.2, 0.6)
    path = Path(model.export(format="onnx", imgsz=64))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = model.model.eval()(x)[0].numpy()
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": x.numpy()})[0]
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3)
