"""Model zoo: every product YAML in model_yamls/ resolves by name, builds at each declared scale with Inception layers,
trains, its blocks are stock drop-ins, and its header states its evidence. The lab's YAMLs: experiments/tests/."""

import re
from pathlib import Path

import pytest
import torch
from ultralytics.nn.tasks import DetectionModel, yaml_model_load

from helpers import TRAIN_ARGS, layer_shapes, run_process
from yolo_incep.nn import C3Incep, C3k2Incep, ELAN1Incep, InceptionDWConv2d, RepNCSPELAN4Incep
from yolo_incep.plugin import MODEL_YAMLS
from yolo_incep.swap import stock_twin

YAMLS = sorted(MODEL_YAMLS.glob("*.yaml"))
CASES = [(p.name, s) for p in YAMLS for s in (yaml_model_load(p).get("scales") or {"": None})]


def _build(name: str, scale: str) -> DetectionModel:
    d = yaml_model_load(MODEL_YAMLS / name)
    d["scale"] = scale
    return DetectionModel(d, verbose=False)


def _tensors(x):
    """Every tensor in a (nested) model output, whatever the head returns in training mode."""
    if isinstance(x, torch.Tensor):
        yield x
    elif isinstance(x, (list, tuple, dict)):
        for v in x.values() if isinstance(x, dict) else x:
            yield from _tensors(v)


# one Inception model per family, by the bare name a user types (the scale letter where the family has scales)
FAMILIES = ["yolov5s-incep.yaml", "yolov7-incep.yaml", "yolov8s-incep.yaml", "yolov8s-incep-p2.yaml",
            "yolov8s-inceptionnext.yaml", "yolov9t-incep.yaml", "yolov9s-incep.yaml", "yolov9c-incep.yaml",
            "yolo11s-incep.yaml", "yolo11s-incep-p2.yaml"]
INTERVAL = re.compile(r"[-+]\d\.\d{3} \[[-+]\d\.\d{3}, [-+]\d\.\d{3}\]")  # a difference with its 95 % interval


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_resolves_by_bare_name_at_the_scale_its_letter_names(name):
    d = yaml_model_load(name)  # Ultralytics' loader, through the plugin's lookup: no path given
    assert Path(d["yaml_file"]).resolve().parent == MODEL_YAMLS.resolve()
    if d.get("scales"):  # yolov7 / yolov9t/s/c have one fixed size: their letter is part of the name
        assert d["scale"] == re.match(r"yolo(?:v)?\d+([nslmx])", name).group(1) == "s"


@pytest.mark.parametrize("path", YAMLS, ids=[p.stem for p in YAMLS])
def test_every_header_states_its_evidence_or_that_it_is_unmeasured(path):
    header = " ".join(line[1:].strip() for line in path.read_text().splitlines() if line.startswith("#"))
    measured = INTERVAL.search(header) and re.search(r"\bseeds?\b", header) and re.search(r"[\d,]+ \w* ?steps", header)
    assert measured or "unmeasured" in header, header
    assert re.search(r"\d+\.\d+M params / \d+\.\d+ GFLOPs|\d\.\d\dx", header), header  # its cost: size or latency


@pytest.mark.parametrize(("name", "scale"), CASES, ids=[f"{n[:-5]}-{s or 'fixed'}" for n, s in CASES])
def test_builds_and_runs_forward_and_backward_at_320(name, scale):
    torch.manual_seed(0)
    model = _build(name, scale).train()
    assert any(isinstance(m, InceptionDWConv2d) for m in model.modules())  # nothing called Incep without one
    p2 = "p2" in name
    assert model.stride.tolist() == ([4.0] if p2 else []) + [8.0, 16.0, 32.0]
    loss = sum(t.float().mean() for t in _tensors(model(torch.rand(1, 3, 320, 320))))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", [p.name for p in YAMLS if p.stem != "yolov8-inceptionnext"])
def test_blocks_are_drop_ins_for_the_stock_rows(name):
    d = yaml_model_load(MODEL_YAMLS / name)
    scale = next(reversed(d.get("scales") or {"": None}))  # the largest scale: max_channels and C3k blocks at work
    stock = stock_twin(d)
    ours, twin = _build(name, scale), DetectionModel({**stock, "scale": scale}, verbose=False)
    assert layer_shapes(ours) == layer_shapes(twin)  # width scaling, max_channels, layer by layer
    for a, b in zip(ours.model, twin.model):
        assert isinstance(a, type(b))  # subclasses: Ultralytics' own isinstance checks still apply
        if type(a) is not type(b) and isinstance(getattr(b, "m", None), (torch.nn.ModuleList, torch.nn.Sequential)):
            assert len(a.m) == len(b.m)  # the same depth scaling of repeats


def test_c3k2incep_follows_the_stock_inner_block_choice():
    plain, c3k, attn = C3k2Incep(32, 32, 2), C3k2Incep(32, 32, 2, c3k=True), C3k2Incep(32, 32, 1, False, 0.5, True)
    assert [type(m).__name__ for m in plain.m] == ["MetaNeXtBlock"] * 2
    assert [type(m) for m in c3k.m] == [C3Incep] * 2 and all(len(m.m) == 2 for m in c3k.m)
    assert [type(m).__name__ for m in attn.m[0]] == ["MetaNeXtBlock", "PSABlock"]
    x = torch.rand(2, 32, 16, 16)
    others = (C3Incep(32, 48, 3), RepNCSPELAN4Incep(32, 48, 32, 16, 2), ELAN1Incep(32, 48, 32, 16))
    for block, c2 in [(plain, 32), (c3k, 32), (attn, 32)] + [(m, 48) for m in others]:
        assert block.eval()(x).shape == (2, c2, 16, 16)


def test_per_scale_arguments_pick_the_timm_variant():
    atto, tiny = _build("yolov8-inceptionnext.yaml", "n"), _build("yolov8-inceptionnext.yaml", "s")
    for model, dims, depths, band, split in ((atto, [40, 80, 160, 320], [2, 2, 6, 2], 9, 4),
                                             (tiny, [96, 192, 384, 768], [3, 3, 9, 3], 11, 8)):
        stages = model.model[1:5]
        assert [s.blocks[0].mlp.fc2.out_channels for s in stages] == dims
        assert [len(s.blocks) for s in stages] == depths
        mixer = stages[0].blocks[0].token_mixer
        assert mixer.dwconv_w.kernel_size == (1, band) and mixer.split_indexes[1] == dims[0] // split
        assert [s.blocks[0].mlp.fc1.out_channels / d for s, d in zip(stages, dims)] == [4, 4, 4, 3]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["yolov8n-incep-p2.yaml", "yolo11n-incep.yaml", "yolo26n-incep.yaml",
                                   "yolo26n-incep-p2.yaml"])
def test_trains_one_epoch_through_the_stock_cli(model, synthetic_data, fresh_env, tmp_path):
    out = run_process(["yolo", "train", f"model={model}", f"data={synthetic_data}", *TRAIN_ARGS,
                       f"project={tmp_path}", "name=run"], fresh_env, tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert (tmp_path / "run" / "weights" / "last.pt").is_file()
    assert re.search(r"yolo_incep\.nn\.blocks\.(C2fIncep|C3k2Incep)", out.stdout + out.stderr)


def test_the_zoo_table_names_a_stock_file_only_where_it_equals_the_twin_row_for_row():
    from yolo_incep.swap import stock_file

    twin = stock_twin(yaml_model_load(MODEL_YAMLS / "yolov8-incep-p2.yaml"))
    assert stock_file("yolov8-incep-p2", twin, "n") == "yolov8n-p2"  # the product P2 = yolov8-p2 + blocks
    assert stock_file("yolov8-incep", twin, "n") is None  # yolov8.yaml has other rows than this twin
    assert stock_file("yolo11-incep-p2", twin, "n") is None  # Ultralytics ships no yolo11-p2
