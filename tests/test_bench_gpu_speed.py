"""yolo_incep.bench.gpu_speed (the GPU sitting's first minutes): its CPU rehearsal writes the JSON the GPU run will
(structure, positive ratios, a missing YAML skipped), its GPU-only precision paths run, and bad arguments end in one
line with exit status 2."""

import json
import subprocess
import sys

import pytest
import torch

from yolo_incep.bench import gpu_speed as bench
from yolo_incep.bench import machine
from yolo_incep.cost import build_model, fused_forward


def leaves(d: dict, prefix: str = "") -> dict[str, object]:
    """Every non-dict value of a nested dict, keyed by its path."""
    out = {}
    for k, v in d.items():
        out.update(leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def test_rehearsal_writes_the_gpu_json(tmp_path, fresh_env):
    out = tmp_path / "gpu_speed.json"
    # a fresh interpreter, as on the GPU machine: --rehearse blocks every module that machine lacks (polars, sahi, ...)
    argv = ["--rehearse", "--out", out, "--pair", "yolov8n.yaml", "yolov8n-incep.yaml",
            "--pair", "yolov8n.yaml", "no-such-incep.yaml"]
    proc = subprocess.run([sys.executable, "-m", "yolo_incep.bench.gpu_speed", *argv], cwd=tmp_path, env=fresh_env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert machine.NETWORK_REFUSED not in proc.stderr  # it tried no connection
    report = json.loads(out.read_text())
    assert json.loads(proc.stdout) == report  # what it prints is what it writes
    assert report["complete"] is True and report["settings"]["rehearsal"] is True
    assert report["settings"]["train_precision"] == "fp32" and report["device"].startswith("cpu")
    assert report["torch"] == torch.__version__ and report["ultralytics"]
    assert "not the data pipeline" in report["note"]

    [skipped] = report["skipped"]
    assert (skipped["stock"], skipped["incep"]) == ("yolov8n.yaml", "no-such-incep.yaml")
    assert "no-such-incep.yaml" in skipped["reason"]

    assert set(report["models"]) == {"yolov8n.yaml", "yolov8n-incep.yaml"}
    for name, fig in report["models"].items():
        assert fig["params"] > 0 and fig["gflops_32"] > 0
        for key in ("train_images_per_s", "infer_ms_batch1", "infer_ms_batch2"):
            per_format = {f: fig[key][f] for f in ("contiguous", "channels_last")}
            assert all(v > 0 for v in per_format.values()), (name, key, fig[key])
            better = (max if key.startswith("train") else min)(per_format.values())
            assert fig[key]["best"] == better and fig[key][fig[key]["faster"]] == better
        steps_ms = fig["train_step_ms"]  # images/s is the batch over the step time
        assert fig["train_images_per_s"]["contiguous"] == pytest.approx(2 / steps_ms["contiguous"] * 1e3, rel=0.01)

    [pair] = report["pairs"]
    assert (pair["stock"], pair["incep"]) == ("yolov8n.yaml", "yolov8n-incep.yaml")
    ratios = leaves(pair["incep_over_stock"])
    assert {"params", "train_images_per_s.best", "infer_ms_batch1.channels_last", "infer_ms_batch2.best"} <= set(ratios)
    assert all(isinstance(v, float) and v > 0 for v in ratios.values()), ratios
    stock, incep = (report["models"][n] for n in ("yolov8n.yaml", "yolov8n-incep.yaml"))
    assert ratios["params"] == round(incep["params"] / stock["params"], 3)


@pytest.mark.parametrize("name", ["yolov8n-incep.yaml", "yolo26n-incep.yaml"])
def test_gpu_precision_paths_run(name):
    """The rehearsal is fp32; the GPU run trains under fp16 autocast with a live GradScaler and infers in fp16
    channels-last. Those paths, YOLO26's end-to-end loss among them, run here too (CPU supports both, slowly)."""
    torch.set_num_threads(1)
    model = build_model(name, 10)
    s = bench.Settings("cpu", 32, 2, (1,), 1, 1, 0, "fp16", True, False, 10, True)
    step = bench.train_step(model, s, channels_last=True)
    step(), step()  # the second step runs on the scale GradScaler updated after the first
    out = fused_forward(model, 32, torch.device("cpu"), batch=2, half=True, channels_last=True)()
    pred = out[0] if isinstance(out, (list, tuple)) else out
    assert pred.dtype == torch.float16 and pred.shape[0] == 2 and torch.isfinite(pred).all()


@pytest.mark.parametrize("argv, message", [
    (["--steps", "0"], "argument --steps: invalid positive integer value: '0'"),
    (["--imgsz", "100"], "argument --imgsz: must be a multiple of 32"),
    (["--warmup", "-1"], "argument --warmup: must be >= 0"),
    (["--amp", "fp8"], "argument --amp: invalid choice"),
    (["--pair", "yolov8n.yaml", "yolov8n.yaml"], "argument --pair: yolov8n.yaml twice"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_arguments_are_one_line(capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        bench.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and err.count("\n") == 1, err


def test_missing_device_is_one_line(capsys, monkeypatch):
    import socket

    for name in ("connect", "connect_ex"):  # main() refuses the network in its process: restored after the test
        monkeypatch.setattr(socket.socket, name, getattr(socket.socket, name))
    monkeypatch.setattr(socket, "getaddrinfo", socket.getaddrinfo)
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    assert bench.main(["--device", "99"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{bench.PROG}: error: --device 99: no such CUDA device") and err.count("\n") == 1
