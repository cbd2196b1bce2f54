"""Opt-in AP_small while training: a column of results.csv from the stock CLI, best.pt by it, stock when not asked."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from yolo_incep import train_metric
from yolo_incep.errors import InputError

TRAIN_ARGS = ["model=yolov8n.yaml", "imgsz=64", "batch=8", "workers=0", "device=cpu", "plots=False", "amp=False",
              "exist_ok=True", "pretrained=False"]


def results(run: Path) -> list[dict]:
    with open(run / "results.csv") as f:
        return list(csv.DictReader(f))


def yolo_train(tmp_path: Path, data: Path, env: dict, epochs: int) -> Path:
    yolo = str(Path(env["PATH"].split(":")[0]) / "yolo")
    cmd = [yolo, "train", f"data={data}", f"epochs={epochs}", f"project={tmp_path}", "name=r", *TRAIN_ARGS]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return tmp_path / "r"


@pytest.mark.slow
def test_cli_logs_ap_small_and_picks_best_by_it(tmp_path, synthetic_data, fresh_env):
    import torch

    run = yolo_train(tmp_path, synthetic_data, fresh_env | {train_metric.ENV: "best"}, epochs=2)
    rows = results(run)
    assert len(rows) == 2 and all(0 <= float(r[train_metric.COLUMN]) <= 1 for r in rows)
    best = torch.load(run / "weights/best.pt", weights_only=False)["train_metrics"]
    assert best["fitness"] == best[train_metric.COLUMN]  # the fitness that chose best.pt is AP_small


class FakeTrainer:
    """What on_train_start touches: stock validation that reports fitness 0.9 every time."""

    def __init__(self, data: Path):
        self.args = SimpleNamespace(data=str(data), task="detect")
        self.metrics, self.best_fitness = {"metrics/mAP50-95(B)": 0.0}, None

    def validate(self):
        self.best_fitness = 0.9
        return {"metrics/mAP50-95(B)": 0.9}, 0.9


@pytest.mark.parametrize("best, fitness, best_fitness", [(False, [0.9, 0.9, 0.9], [0.9, 0.9, 0.9]),
                                                         (True, [0.2, 0.1, 0.3], [0.2, 0.2, 0.3])])
def test_validation_gains_the_column_and_fitness_follows_it_when_asked(monkeypatch, synthetic_data, best, fitness,
                                                                       best_fitness):
    values = iter([0.2, 0.1, 0.3])
    monkeypatch.setattr(train_metric, "ap_small", lambda trainer, images, gt: next(values))
    trainer = FakeTrainer(synthetic_data)
    train_metric.on_train_start(trainer, best=best)
    assert trainer.metrics == {"metrics/mAP50-95(B)": 0.0, train_metric.COLUMN: 0.0}
    for ap, fit, best_fit in zip([0.2, 0.1, 0.3], fitness, best_fitness):
        metrics, f = trainer.validate()
        assert metrics == {"metrics/mAP50-95(B)": 0.9, train_metric.COLUMN: ap}
        assert (f, trainer.best_fitness) == (fit, best_fit)


@pytest.mark.slow
def test_stock_training_without_the_variable(tmp_path, synthetic_data, fresh_env):
    env = {k: v for k, v in fresh_env.items() if k != train_metric.ENV}
    rows = results(yolo_train(tmp_path, synthetic_data, env, epochs=1))
    assert rows and not any("AP_small" in k for k in rows[0])


@pytest.mark.parametrize("value, registered", [(None, False), ("0", False), ("", False), ("1", True)])
def test_registered_only_when_asked(monkeypatch, value, registered):
    from ultralytics.utils.callbacks.base import default_callbacks

    monkeypatch.setitem(default_callbacks, "on_train_start", list(default_callbacks["on_train_start"]))
    if value is None:
        monkeypatch.delenv(train_metric.ENV, raising=False)
    else:
        monkeypatch.setenv(train_metric.ENV, value)
    train_metric.install_from_env()
    train_metric.install_from_env()  # idempotent
    assert default_callbacks["on_train_start"].count(train_metric.on_train_start) == int(registered)


def test_mode_values(monkeypatch):
    for value, best in (("1", False), ("log", False), ("BEST", True)):
        monkeypatch.setenv(train_metric.ENV, value)
        assert train_metric.select_best() is best
    monkeypatch.setenv(train_metric.ENV, "yes")
    with pytest.raises(InputError, match="YOLO_INCEP_AP_SMALL='yes'"):
        train_metric.select_best()


def test_other_tasks_train_as_stock(synthetic_data):
    trainer = FakeTrainer(synthetic_data)
    trainer.args.task = "segment"
    train_metric.on_train_start(trainer, best=True)
    assert trainer.validate() == ({"metrics/mAP50-95(B)": 0.9}, 0.9) and train_metric.COLUMN not in trainer.metrics
