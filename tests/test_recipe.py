"""The training recipe and the benchmark grids: valid Ultralytics arguments, step budgets, resumable runs."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from dataclasses import replace

import pytest
import torch

from yolo_incep import cli, recipe
from yolo_incep.bench import grids, runs
from yolo_incep.data.prepare import find_sample
from yolo_incep.errors import InputError


def _has_sample() -> bool:
    with contextlib.suppress(InputError):
        return find_sample().is_dir()
    return False


needs_sample = pytest.mark.skipif(not _has_sample(), reason="VisDrone sample not found (../shared/data/...)")


def test_budgets_are_valid_ultralytics_arguments(tmp_path, monkeypatch):
    from ultralytics.cfg import get_cfg

    monkeypatch.setattr(recipe, "max_objects", lambda data: 902)  # the densest sample frame
    for name, budget in recipe.BUDGETS.items():
        args = recipe.train_args(budget, tmp_path / "data.yaml", tmp_path, "run", seed=3)
        cfg = get_cfg(overrides={**args, "model": "yolov8n.yaml"})  # raises on unknown keys or bad types
        assert cfg.max_det > 902 and cfg.seed == 3
        assert cfg.close_mosaic < cfg.epochs or cfg.epochs == 1, name
        assert cfg.imgsz <= budget.tile, name  # tiles are never upscaled


def test_cpu_budget_counts_optimizer_steps():
    cpu = recipe.BUDGETS["cpu"]
    assert cpu.nbs == cpu.batch  # one optimizer step per batch: Ultralytics' default nbs=64 would take a quarter
    assert recipe.optimizer_steps(4732, cpu) == 1776  # the sample's 4,732 train tiles, 6 epochs (README, docs)


@pytest.mark.slow
def test_optimizer_steps_are_the_steps_ultralytics_takes(synthetic_data, tmp_path):
    from ultralytics import YOLO

    # 16 train images in batches of 6 (a partial last batch), nbs 12: two batches per step, 2 epochs
    budget = replace(recipe.BUDGETS["cpu"], imgsz=64, epochs=2, batch=6, nbs=12, cache=False, warmup_epochs=0,
                     close_mosaic=0)
    steps = []

    def count(trainer) -> None:  # every optimizer.step Ultralytics' loop makes (through its AMP scaler)
        step = trainer.optimizer.step
        trainer.optimizer.step = lambda *a, **k: steps.append(trainer.epoch) or step(*a, **k)

    yolo = YOLO("yolov8n.yaml")
    yolo.add_callback("on_pretrain_routine_end", count)
    yolo.train(**{**recipe.train_args(budget, synthetic_data, tmp_path, "run"), "val": False, "plots": False})
    assert len(steps) == recipe.optimizer_steps(16, budget) == 3


def test_p2_variant():
    assert recipe.p2_variant("yolov8n-incep.yaml") == "yolov8n-incep-p2.yaml"
    assert recipe.p2_variant("yolov8n-p2.yaml") == "yolov8n-p2.yaml"


def test_every_grid_puts_the_baseline_first_and_names_models_that_resolve():
    from ultralytics.nn.tasks import yaml_model_load

    for name, grid in grids.GRIDS.items():
        assert grid[0].model == "yolov8n.yaml", name  # compare's deltas are to the first model
        assert len({a.name for a in grid}) == len(grid), name
        assert {a.versus for a in grid if a.versus} <= {a.name for a in grid}, name  # a contrast within its grid
        for arm in grid:
            yaml_model_load(arm.model)  # a YAML that moved (to the lab) or never existed raises here


def test_the_protocol_trains_in_grid_order_and_seed_0_of_every_arm_first(monkeypatch, tmp_path):
    order = []
    monkeypatch.setattr(runs.Workspace, "prepare", lambda self: tmp_path / "data.yaml")
    monkeypatch.setattr(runs, "train_run", lambda ws, arm, seed, *a, **k: order.append((arm.name, seed)) or {})
    argv = ["bench", "--budget", "cpu", "--arms", "yolov8n-p2", "yolov8n", "--work", tmp_path / "work",
            "--out", tmp_path / "out", "--no-compare"]
    assert cli.main([str(a) for a in argv]) == 0
    assert order == [("yolov8n", 0), ("yolov8n-p2", 0), ("yolov8n", 1), ("yolov8n-p2", 1), ("yolov8n-p2", 2)]


def test_checkpoint_state(tmp_path):
    assert recipe.checkpoint_state(tmp_path / "last.pt") == "fresh"
    torch.save({"epoch": 2, "model": None}, tmp_path / "last.pt")
    assert recipe.checkpoint_state(tmp_path / "last.pt") == "resume"
    torch.save({"epoch": -1, "model": None}, tmp_path / "last.pt")  # what strip_optimizer leaves
    assert recipe.checkpoint_state(tmp_path / "last.pt") == "done"


@pytest.mark.parametrize("argv, message", [
    (["--arms", "nope"], "--arms: nope not in the smoke grid"),
    (["--seeds", "7"], "--seeds: no arm to run has seed 7"),
])
def test_an_arm_or_seed_not_in_the_grid_is_a_one_line_error(argv, message):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = cli.main(["bench", "--budget", "smoke", *argv])
    err = err.getvalue()
    assert rc == 2 and message in err and "Traceback" not in err


def test_a_device_this_machine_lacks_is_refused_before_any_data_are_prepared(monkeypatch, tmp_path):
    monkeypatch.setattr(runs.Workspace, "prepare", lambda self: pytest.fail("prepared data for a missing device"))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = cli.main(["bench", "--budget", "cpu", "--device", "cuda:3", "--out", str(tmp_path / "out")])
    assert rc == 2 and err.getvalue().count("\n") == 1, err.getvalue()
    assert "--device cuda:3: no such device on this machine" in err.getvalue()
    assert not (tmp_path / "out").exists()


def test_with_out_and_no_work_the_scratch_is_not_in_the_working_folder(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    roots = []
    monkeypatch.setattr(runs.Workspace, "prepare", lambda self: roots.append(self.root) or self.root / "data.yaml")
    monkeypatch.setattr(runs, "train_run", lambda *a, **k: {})
    assert cli.main(["bench", "--budget", "smoke", "--out", "report", "--no-compare"]) == 0
    assert not (tmp_path / "runs").exists() and str(roots[0]).startswith(tempfile.gettempdir())
    assert cli.main(["bench", "--budget", "smoke", "--out", "report", "--no-compare"]) == 0
    assert roots[1] == roots[0]  # the same --out resumes in the same scratch


@pytest.mark.parametrize("value, expected", [("", None), ("1", 1), ("3", 3)])
def test_cpu_threads_reads_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv(recipe.THREADS_ENV, value)
    assert recipe.cpu_threads() == (expected or os.cpu_count())


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_bad_thread_count_names_the_variable(monkeypatch, value):
    monkeypatch.setenv(recipe.THREADS_ENV, value)
    with pytest.raises(InputError, match=f"YOLO_INCEP_THREADS={value!r}"):
        recipe.add_callbacks(object())  # fails before touching the model


@needs_sample
@pytest.mark.slow
def test_smoke_grid_trains_resumes_and_compares(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    argv = ["bench", "--budget", "smoke", "--work", str(work), "--out", str(out)]
    assert cli.main(argv) == 0
    bench = json.loads((out / "bench.json").read_text())
    assert [r["arm"] for r in bench["runs"]] == ["yolov8n", "yolov8n-incep"]
    assert all(r["batches"] == 12 for r in bench["runs"])  # 2% of the train tiles at batch 8, one step each
    assert bench["runs"][1]["gamma"] and bench["runs"][0]["gamma"] is None
    report = json.loads((out / "report.json").read_text())
    assert [m["name"] for m in report["models"]][:2] == ["yolov8n", "yolov8n-incep"]
    done = out / "runs/yolov8n-s0/done.json"  # kept beside the report
    mtime = done.stat().st_mtime_ns
    shutil.rmtree(work / "runs")  # as on a fresh checkout: only the kept runs are left
    assert cli.main([*argv, "--no-compare"]) == 0  # finished runs are skipped, not retrained
    assert done.stat().st_mtime_ns == mtime and not (work / "runs").exists()


# fp16 rounding of the MLP weights moves the branch by ~5e-4 of its size; the paper's 1e-6 is below fp16's smallest
# normal number (6.1e-5), so the subnormal gamma itself is rounded by up to ~1.3 % (still only 1e-8 absolute).
@pytest.mark.parametrize("init, bound", [("default", None), (1e-6, 2e-2), (1.0, 1e-3)])
def test_fp16_checkpoint_round_trip_keeps_what_blocks_compute(tmp_path, monkeypatch, init, bound):
    import copy

    from ultralytics.nn.tasks import DetectionModel, load_checkpoint

    from yolo_incep.nn.layers import MetaNeXtBlock

    torch.manual_seed(0)
    if init != "default":
        monkeypatch.setattr(MetaNeXtBlock, "ls_init_default", init)
    model = DetectionModel("yolov8n-incep.yaml", verbose=False).eval()
    if bound is None:
        gamma = next(m for m in model.modules() if isinstance(m, MetaNeXtBlock)).gamma
        bound = 1e-3 if gamma is None or gamma.abs().min() >= 6.2e-5 else 2e-2
    torch.save({"ema": copy.deepcopy(model).half(), "model": None}, tmp_path / "last.pt")  # as the trainer saves
    loaded = load_checkpoint(tmp_path / "last.pt")[0].eval()
    pairs = [(a, b) for a, b in zip(model.modules(), loaded.modules()) if isinstance(a, MetaNeXtBlock)]
    assert len(pairs) == 6
    x = torch.randn(2, 3, 64, 64)
    def branch(b: MetaNeXtBlock, y: torch.Tensor) -> torch.Tensor:
        """The residual branch alone, gamma * MLP(BN(mixer(y))): x + branch would round a 1e-6 branch away."""
        z = b.mlp(b.norm(b.token_mixer(y)))
        return z if b.gamma is None else z * b.gamma.view(1, -1, 1, 1)

    for block, reloaded in pairs:
        y = torch.randn(2, block.norm.num_features, 8, 8)
        with torch.no_grad():
            want, got = branch(block, y), branch(reloaded, y)
        assert (got - want).abs().max() <= bound * want.abs().max()  # fp16 rounding of weights and gamma only
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)[0], model(x)[0], rtol=2e-3, atol=2e-3)
