"""The lab: its models are the ones the kept runs were trained with, its heads ask what their names say, its kept
checkpoints load, and its arms join the protocol's grids. Not part of `make test`: `python -m pytest experiments/tests`
(or `make test-lab`)."""

import copy
import json
from pathlib import Path

import pytest
import torch
from torch import nn
from ultralytics.nn.modules import Detect
from ultralytics.nn.tasks import DetectionModel, torch_safe_load

from experiments import grids, heads, models, study
from experiments.bench import main as bench_main
from tests.helpers import randomize_norms
from yolo_incep import recipe
from yolo_incep.bench import grids as bench_grids
from yolo_incep.nn import DetectIncep, InceptionDWConv2d
from yolo_incep.plugin import layer_classes, register_layers

ROOT = Path(__file__).resolve().parents[2]

# parameters at n of the YAMLs the kept runs were trained from (model_yamls/ before the lab moved out, git history)
PARAMS_N = {
    "yolov8-incep-p2-detectincep": 2101480, "yolov8-incep-p2-stockhead": 3080568,
    "yolov8-incep-p2-narrowhead": 2937720, "yolov8-incep-p2-p45-narrowhead": 2967648,
    "yolov8-incep-lighthead": 2051144, "yolov8-p2-incephead": 2375056, "yolov8-p2-incephead-deep": 2407504,
    "yolov8-p2-incephead-c2f": 2381328, "yolov8-p2-incephead-cls1": 2542192, "yolov8-p2-incephead-cls2": 2773232,
    "yolov8-p2-incephead-box2": 2652144, "yolov8-p2-incephead-wide": 2381456, "yolov8-p2-incephead-c2f-cls1": 2548464,
    "yolov8-p2-incephead-c2f-split": 2582688, "yolov8-p2-incephead-dense": 3056592,
    "yolov8-p2-incephead-stemless": 2439072, "yolov8-p2-narrowhead": 3211296, "yolov8-p2-narrowhead-c2f": 3217568,
    "yolo11-incep-p2-stockhead": 2637760, "yolo11-incep-p2-detectincep": 2164192,
}
# dense 3x3 convs per stride in the (box, class) branches, and whether a stride has an Inception stem
DENSE = {DetectIncep: (0, 0, True), heads.DetectIncep2: (0, 0, True), heads.DetectIncepCls1: (0, 1, True),
         heads.DetectIncepCls2: (0, 2, True), heads.DetectIncepBox2: (2, 0, True), heads.DetectIncepWide: (0, 0, True),
         heads.DetectIncepDense: (2, 2, True), heads.DetectIncepCls1Split: (0, 1, True),
         heads.DetectIncepStemless: (0, 0, False), heads.DetectNarrow: (2, 2, False)}


def test_the_table_names_every_lab_model_once():
    assert set(models.MODELS) == set(PARAMS_N)


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_builds_as_trained_steps_and_fuses(name):
    torch.manual_seed(0)
    model = DetectionModel(str(models.yaml_path(name)), verbose=False)  # by path, with its scale letter n
    assert sum(p.numel() for p in model.parameters()) == PARAMS_N[name]
    out = model.train()(torch.rand(1, 3, 128, 128))
    sum(t.float().mean() for t in (out.values() if isinstance(out, dict) else out)
        for t in (t.values() if isinstance(t, dict) else [t]) if isinstance(t, torch.Tensor)).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    randomize_norms(model.eval())
    x = torch.rand(1, 3, 96, 128)
    with torch.no_grad():
        expected = model(x)[0]
    model.fuse(verbose=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.model[-1].modules())
    with torch.inference_mode():
        torch.testing.assert_close(model(x)[0], expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("cls", list(DENSE), ids=[c.__name__ for c in DENSE])
def test_each_head_has_the_dense_convs_and_stem_its_name_says(cls):
    head = cls(nc=10, ch=(32, 64, 128))
    box, cls_, stem = DENSE[cls]
    dense = [n for n, m in head.named_modules()
             if isinstance(m, nn.Conv2d) and m.groups == 1 and m.kernel_size != (1, 1)]
    assert len([n for n in dense if n.startswith("cv2.")]) == 3 * box  # three strides
    assert len([n for n in dense if n.startswith("cv3.")]) == 3 * cls_
    assert all(n.startswith(("cv2.", "cv3.")) for n in dense)
    assert any(isinstance(m, InceptionDWConv2d) for m in head.modules()) == stem


def test_the_lab_base_with_default_flags_is_the_product_head():
    torch.manual_seed(0)
    ours = DetectIncep(nc=10, ch=(32, 64, 128)).state_dict()
    torch.manual_seed(0)
    lab = heads.DetectIncepLab(nc=10, ch=(32, 64, 128)).state_dict()
    assert ours.keys() == lab.keys() and all(torch.equal(ours[k], lab[k]) for k in ours)


def test_a_split_stem_head_is_the_shared_one_with_a_copy_of_the_stem_in_each_branch():
    ch = (32, 64, 128)
    torch.manual_seed(0)
    shared = heads.DetectIncepCls1(nc=10, ch=ch).eval()
    torch.manual_seed(0)  # same draws in the same order: the split head starts from the same weights
    split = heads.DetectIncepCls1Split(nc=10, ch=ch).eval()
    assert all(isinstance(m, nn.Identity) for m in split.stem)
    for i in range(len(ch)):  # each branch owns its stem: no module shared between the box and class branches
        assert isinstance(split.cv2[i][0], InceptionDWConv2d) and isinstance(split.cv3[i][0], InceptionDWConv2d)
        assert split.cv2[i][0] is not split.cv3[i][0]
    shared.stride = split.stride = torch.tensor([8.0, 16.0, 32.0])
    x = [torch.randn(1, c, 64 // 2**i, 64 // 2**i) for i, c in enumerate(ch)]
    torch.testing.assert_close(split(x)[0], shared(x)[0])


def test_a_stemless_head_reads_the_neck_maps_and_works_at_the_stock_branch_widths():
    ch, nc = (32, 64, 128), 10
    ours, stock = heads.DetectIncepStemless(nc=nc, ch=ch), Detect(nc=nc, ch=ch)  # stock: box 64, class max(ch[0], nc)
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
    monkeypatch.setattr(Detect, "legacy", True)  # YOLOv8's Detect: the parser sets this flag per YAML
    ch, nc = (32, 64, 128), 80
    ours, stock = heads.DetectNarrow(nc=nc, ch=ch), Detect(nc=nc, ch=ch)  # stock: box 64, class 80 at every stride
    for i, c in enumerate(ch):
        for branch, widths in ((ours.cv2[i], stock.cv2[i]), (ours.cv3[i], stock.cv3[i])):
            assert [(m.conv.kernel_size, m.conv.groups) for m in branch[:-1]] == [((3, 3), 1)] * 2
            assert [m.conv.out_channels for m in branch[:-1]] == [min(c, m.conv.out_channels) for m in widths[:-1]]
            assert branch[-1].out_channels == widths[-1].out_channels
    assert [b[0].conv.out_channels for b in ours.cv3] == [32, 64, 80]


@pytest.mark.parametrize(("cls", "old"), [(heads.DetectIncepCls1, "DetectIncepCls1"),
                                          (heads.DetectNarrow, "DetectIncepNarrow")])
def test_a_checkpoint_pickled_under_the_old_package_path_loads_safely(cls, old, tmp_path):
    d = models.model_dict("yolov8-p2-narrowhead" if cls is heads.DetectNarrow else "yolov8-p2-incephead-cls1")
    model = DetectionModel({**d, "scale": "n"}, verbose=False).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)[0]
    names = cls.__module__, cls.__qualname__
    cls.__module__, cls.__qualname__ = "yolo_incep.nn.head", old  # pickled as the kept runs were
    try:
        torch.save({"model": model, "train_args": {}}, tmp_path / "old.pt")
    finally:
        cls.__module__, cls.__qualname__ = names
    assert b"yolo_incep.nn.head" in (tmp_path / "old.pt").read_bytes()
    ckpt, _ = torch_safe_load(tmp_path / "old.pt", safe_only=True)  # weights_only=True: the allow-list decides
    head = ckpt["model"].model[-1]
    assert type(head) is cls
    with torch.no_grad():
        torch.testing.assert_close(ckpt["model"](x)[0], expected)


def test_registered_heads_parse_and_a_taken_name_is_refused():
    assert {c.__name__ for c in heads.HEADS} <= set(layer_classes())
    register_layers(*heads.HEADS)  # again: nothing changes
    clash = type("DetectNarrow", (DetectIncep,), {})
    with pytest.raises(ValueError, match="DetectNarrow"):
        register_layers(clash)


def test_the_lab_arms_join_the_cpu_grid_once_and_the_study_grid(monkeypatch):
    monkeypatch.setattr(bench_grids, "GRIDS", copy.deepcopy(bench_grids.GRIDS))
    monkeypatch.setattr(recipe, "BUDGETS", dict(recipe.BUDGETS))
    main = [a.name for a in bench_grids.GRIDS["cpu"]]
    grids.register()
    grids.register()  # idempotent
    cpu = bench_grids.GRIDS["cpu"]
    assert [a.name for a in cpu[:len(main)]] == main and len(cpu) == len(main) + len(grids.ABLATIONS)
    assert all(a.versus == "yolov8n-p2" and models.OUT.name in a.model for a in cpu[len(main):])
    assert bench_grids.GRIDS["study"][0].model == "yolov8n.yaml"
    with pytest.raises(ValueError, match="yolov8n-p2-incephead"):
        bench_grids.register_grid("cpu", [bench_grids.GridArm("yolov8n-p2-incephead", "other.yaml")])
    assert recipe.optimizer_steps(4732, recipe.BUDGETS["study"]) == 592  # the sample's train tiles, 2 epochs
    with pytest.raises(ValueError, match="study"):
        recipe.register_budget("study", recipe.BUDGETS["cpu"])


def test_the_study_budget_is_the_cpu_budget_cut_to_two_epochs_as_its_kept_runs_record():
    kept = json.loads((ROOT / "docs/results/bench_small_study/bench.json").read_text())["settings"]
    assert recipe.budget_dict(study.BUDGET) == kept


def test_layer_scale_context_sets_and_restores_the_init():
    from yolo_incep.nn.layers import MetaNeXtBlock

    before = MetaNeXtBlock(16).gamma
    with study.layer_scale(0.5):
        assert torch.all(MetaNeXtBlock(16).gamma == 0.5)
    with study.layer_scale(None):
        assert MetaNeXtBlock(16).gamma is None
    assert torch.equal(MetaNeXtBlock(16).gamma, before)


def test_a_study_arm_records_its_settings_and_a_plain_arm_none():
    arm = study.StudyArm("incep-ls1e-6-nowd", "yolov8n-incep.yaml", layer_scale=1e-6, gamma_decay=False)
    assert arm.settings() == {"layer_scale": 1e-6, "gamma_decay": False} and not arm.resumable()
    assert bench_grids.arm_from(bench_grids.arm_record(arm)) == arm  # as the GPU sitting's workers rebuild it
    assert bench_grids.GridArm("yolov8n", "yolov8n.yaml").settings() == {}


def test_the_lab_bench_refuses_an_unknown_arm_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(bench_grids, "GRIDS", copy.deepcopy(bench_grids.GRIDS))
    monkeypatch.setattr(recipe, "BUDGETS", dict(recipe.BUDGETS))
    assert bench_main(["--budget", "cpu", "--arms", "nope"]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "yolov8n-p2-narrowhead" in err and "Traceback" not in err
