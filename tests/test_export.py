"""Exported models: every CPU format Ultralytics exports our layers to loads and equals PyTorch; `compare` takes an
export as a model source (checked against the command, timed in its runtime); INT8 cost with paired intervals."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import randomize_norms
from yolo_incep import cli
from yolo_incep.eval import compare, models

# Formats whose runtimes the dev extras install; LiteRT and PaddlePaddle are optional extras (docs/deploy.md), run
# here when installed. Tolerance on boxes (of the largest coordinate) and on class scores (absolute), as each runtime
# computes by default: OpenVINO in bf16 on CPUs with AVX512-BF16 or AMX, NCNN with fp16 storage on x86.
FORMATS = {"torchscript": 1e-4, "onnx": 1e-4, "openvino": 1e-2, "ncnn": 1e-2, "mnn": 1e-3, "executorch": 1e-4,
           "litert": 1e-3, "paddle": 1e-3}
MODEL = "yolov8n-incep-p2.yaml"  # the product's small-object model: Inception blocks, the stock P2 head


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A 2-class yolov8n-incep-p2 (classes a, b as the `data` fixture) with non-trivial norms and layer scales, and
    class logits around 0 rather than Ultralytics' prior of -9: scores spread over (0, 1), so hundreds of boxes pass
    conf 0.001 and their order is not decided by rounding."""
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel(MODEL, nc=2, verbose=False)
    randomize_norms(model, seed=0)
    with torch.no_grad():
        for branch in model.model[-1].cv3:
            branch[-1].bias.zero_()
    model.names = {0: "a", 1: "b"}
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    torch.save({"model": model, "train_args": {}}, path)
    return path


def export(checkpoint: Path, folder: Path, **kwargs) -> str:
    """`YOLO(best.pt).export(...)` as a user runs it, on a copy in `folder` (the exporter writes beside the .pt)."""
    from ultralytics import YOLO

    folder.mkdir(parents=True, exist_ok=True)
    local = folder / checkpoint.name
    shutil.copy(checkpoint, local)
    return str(YOLO(str(local)).export(verbose=False, **kwargs))


def one_line_error(capsys, argv: list) -> str:
    assert cli.main([str(a) for a in argv]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("yolo-incep compare: error: ")
    return line


def test_exports_are_known_by_the_names_ultralytics_gives_them():
    cases = {"best.onnx": "onnx", "runs/x/weights/best_int8_openvino_model": "openvino", "a/m_ncnn_model": "ncnn",
             "best.mnn": "mnn", "best.torchscript": "torchscript", "best_executorch_model": "executorch",
             "best.tflite": "litert", "best_edgetpu.tflite": "edgetpu", "best_qnn.onnx": "qnn", "best.engine":
             "engine", "best_paddle_model": "paddle", "best.pt": None, "yolov8n.yaml": None, "preds.json.xz": None}
    assert {k: models.export_format(k) for k in cases} == cases


@pytest.mark.slow
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_export_loads_and_equals_pytorch(fmt, checkpoint, tmp_path, monkeypatch):
    """`yolo export` at 64 px, loaded as `YOLO(path)` loads it (Ultralytics' AutoBackend): outputs equal PyTorch's."""
    module = models.CPU_RUNTIMES[fmt][0]
    pytest.importorskip(module, reason=f"{fmt}: pip install 'yolo-incep[{models.CPU_RUNTIMES[fmt][2]}]'")
    # MNN's converter imports its telemetry module, which runs `pip install aliyun-log-python-sdk` when that is
    # missing (a download, and protobuf < 6 that breaks onnx): blocked, the converter then runs without it
    monkeypatch.setitem(sys.modules, "MNN.tools.utils.log", None)
    from ultralytics import YOLO
    from ultralytics.nn.autobackend import AutoBackend

    path = export(checkpoint, tmp_path, format=fmt, imgsz=64)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    model = YOLO(str(checkpoint)).model.fuse(verbose=False).eval()
    with torch.inference_mode():
        expected = model(x)[0].numpy()
    backend = AutoBackend(path, device=torch.device("cpu"), verbose=False)
    got = backend(x)
    got = (got[0] if isinstance(got, (list, tuple)) else got).numpy()
    assert got.shape == expected.shape  # (1, 4 + classes, anchors): boxes in pixels, then class scores
    boxes, scores = slice(0, 4), slice(4, None)
    assert abs(got[:, boxes] - expected[:, boxes]).max() < FORMATS[fmt] * abs(expected[:, boxes]).max()
    assert abs(got[:, scores] - expected[:, scores]).max() < FORMATS[fmt]
    assert 0.05 < expected[:, scores].mean() < 0.95  # scores that can differ
    assert backend.names == {0: "a", 1: "b"} and list(backend.imgsz) == [64, 64]


@pytest.mark.slow
def test_compare_scores_an_export_as_its_checkpoint(checkpoint, data, tmp_path):
    pytest.importorskip("onnxruntime")
    onnx = export(checkpoint, tmp_path / "x", format="onnx", imgsz=64)
    report = compare.compare_models([f"pt={checkpoint}", f"onnx={onnx}"], data, imgsz=64, out=tmp_path / "o",
                                    device="cpu", latency_runs=2, resamples=50, verbose=False)
    pt, ox = report.models
    assert pt.detections > 200 and abs(ox.detections - pt.detections) <= 0.01 * pt.detections
    for key, value in pt.flat.items():
        if value is not None and "@" in key:
            assert ox.flat[key] == pytest.approx(value, abs=1e-3), key
    assert ox.params is None and ox.gflops is None and ox.latency_ms > 0  # the export does not say; timed in ORT
    assert ox.export == {"format": "onnx", "precision": "fp32", "imgsz": [64, 64], "batch": 1,
                         "runtime": ox.export["runtime"]} and ox.export["runtime"].startswith("onnxruntime ")
    on_disk = json.loads((tmp_path / "o/report.json").read_text())
    assert on_disk["models"][1]["export"] == ox.export and "export" not in on_disk["models"][0]


@pytest.mark.slow
def test_int8_exports_cost_with_paired_intervals(checkpoint, data, tmp_path):
    """Ultralytics' two INT8 paths on CPU (OpenVINO NNCF, ONNX Runtime static), calibrated on the data's images:
    compared with the FP32 checkpoint, one seed per arm, `--paired` equals `--versus`, and a difference of two
    drops against the same reference equals the contrast of the two INT8 arms (the same image resamples)."""
    pytest.importorskip("nncf")
    pytest.importorskip("onnxruntime")
    calib = tmp_path / "calib.yaml"  # Ultralytics' exporter wants a train split too; it calibrates on `split`
    calib.write_text(data.read_text() + f"train: {data.parent / 'images/val'}\n")
    ov8 = export(checkpoint, tmp_path / "ov", format="openvino", imgsz=64, quantize=8, data=str(calib))
    ort8 = export(checkpoint, tmp_path / "ort", format="onnx", imgsz=64, quantize=8, data=str(calib))
    assert Path(ov8).name == "best_int8_openvino_model" and Path(ort8).name == "best_int8.onnx"
    report = compare.compare_models([f"fp32={checkpoint}", f"ov8={ov8}", f"ort8={ort8}"], data, imgsz=64,
                                    out=tmp_path / "o", device="cpu", latency_runs=1, resamples=200, verbose=False,
                                    versus={"ov8": "ort8"}, paired_with=["ov8=fp32", "ov8=fp32,ort8=fp32"])
    assert [m.export and m.export["precision"] for m in report.models] == [None, "int8", "int8"]
    versus, paired_one, paired_two = report.contrasts
    assert (paired_one.arm, paired_one.reference) == ("ov8", "fp32 (paired)")
    assert (paired_two.arm, paired_two.reference) == ("(ov8 vs fp32)", "(ort8 vs fp32)")
    ov_row = next(m for m in report.models if m.name == "ov8")
    for key in ("AP@500", "AP_small@500", "AR@100"):
        assert paired_one.delta[key].to_json() == ov_row.delta[key].to_json()
        assert paired_two.delta[key].to_json() == versus.delta[key].to_json()
    # quantized for real: INT8 nodes in both graphs, and detections that moved (the math on non-zero AP values is
    # test_a_difference_of_two_costs_against_one_reference_is_their_contrast's)
    import onnx

    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(ort8).graph.node)
    assert "FakeQuantize" in next(Path(ov8).glob("*.xml")).read_text()
    fp32, ov_dets = (json.loads((tmp_path / f"o/predictions_{n}.json").read_text()) for n in ("fp32", "ov8"))
    assert ov_dets and ov_dets != fp32


@pytest.fixture(scope="module")
def onnx_file(checkpoint, tmp_path_factory) -> Path:
    """A real 64-px ONNX export of the 2-class checkpoint (a few seconds); tests edit copies of its metadata."""
    pytest.importorskip("onnxruntime")
    return Path(export(checkpoint, tmp_path_factory.mktemp("onnx"), format="onnx", imgsz=64, simplify=False))


def with_metadata(onnx_file: Path, folder: Path, name: str = "best.onnx", **changes) -> Path:
    """A copy of the export with metadata entries replaced (None: removed), as the exporter writes them (str)."""
    import onnx

    proto = onnx.load(str(onnx_file))
    meta = {p.key: p.value for p in proto.metadata_props}
    for k, v in changes.items():
        meta.pop(k) if v is None else meta.__setitem__(k, str(v))
    del proto.metadata_props[:]
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    out = folder / name
    onnx.save(proto, str(out))
    return out


@pytest.mark.parametrize("changes, flags, message", [
    ({}, ["--imgsz", "128"], "exported at imgsz 64, this comparison runs at --imgsz 128; export again with "
                             "imgsz=128 (or dynamic=True), or compare at --imgsz 64"),
    ({"names": {0: "x", 1: "b"}}, [], "class 0 is 'x', the dataset's is 'a'"),
    ({"names": {0: "a", 1: "b", 2: "c"}}, [], "3 classes, but the dataset names 2"),
    ({"batch": 2}, ["--batch", "3"], "exported with a fixed batch of 2; --batch 3 is not a multiple of it"),
    ({"args": {"nms": True, "batch": 1}}, [], "exported with nms=True"),
    ({"end2end": True}, [], "exported with the NMS-free one-to-one head (nms=False); pass --nms-free"),
    ({"task": "segment"}, [], "a 'segment' export; compare needs a detection model"),
    ({"imgsz": None, "names": None, "task": None}, [], "without Ultralytics' export metadata"),
    ({}, ["--slice", "64"], "--slice runs a model at the slice size"),
])
def test_an_export_that_does_not_fit_the_command_is_named_in_one_line(onnx_file, data, tmp_path, capsys, changes,
                                                                       flags, message):
    if "--slice" in flags:
        pytest.importorskip("sahi")
    source = with_metadata(onnx_file, tmp_path, **changes)
    err = one_line_error(capsys, ["compare", source, "--data", data, "--imgsz", "64", "--device", "cpu",
                                  "--out", tmp_path / "o", *flags])
    assert f"model {source}: " in err and message in err
    assert not (tmp_path / "o").exists()


def test_exports_this_machine_cannot_run_are_named_in_one_line(tmp_path, data, capsys, monkeypatch):
    engine, garbage, missing = tmp_path / "best.engine", tmp_path / "bad.onnx", tmp_path / "gone_openvino_model"
    engine.write_bytes(b"\0" * 64)
    garbage.write_bytes(b"not a model")
    cases = {engine: "a 'engine' export; compare runs the exports Ultralytics runs on a CPU",
             garbage: "not a loadable onnx export (", missing: "no such exported model"}
    for source, message in cases.items():
        err = one_line_error(capsys, ["compare", source, "--data", data, "--imgsz", "64", "--out", tmp_path / "o"])
        assert f"model {source}: {message}" in err
    ncnn = tmp_path / "best_ncnn_model"
    ncnn.mkdir()
    monkeypatch.setitem(models.CPU_RUNTIMES, "ncnn", ("no_such_runtime_module", "ncnn", "ncnn"))
    err = one_line_error(capsys, ["compare", ncnn, "--data", data, "--imgsz", "64", "--out", tmp_path / "o"])
    assert f"model {ncnn}: a ncnn export, but its runtime (ncnn) is not installed: pip install " \
           "'yolo-incep[ncnn]'" in err


# ---- --paired on saved predictions (no model): one model in two forms, and a difference of two costs

def jittered(data: Path, folder: Path, seed: int, shift: float = 0.0) -> Path:
    """COCO results on the `data` split: ground truth jittered (seeded) and shifted by `shift` px, plus misses."""
    from yolo_incep.eval import coco

    images, _ = coco.load_data_yaml(data, "val")
    gt = coco.build_gt(images, ["a", "b"])
    rng = np.random.default_rng(seed)
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "score": round(float(rng.random()), 5),
             "bbox": [round(float(v + rng.normal(0, 2) + shift), 3) for v in a["bbox"]]}
            for a in gt["annotations"] if rng.random() < 0.8]
    path = folder / f"p{seed}-{shift}.json"
    path.write_text(json.dumps(dets))
    return path


def test_paired_arms_share_their_seed_draws(data, tmp_path):
    """Two arms listing the same two runs: paired, exactly 0 with a zero-width interval; --versus resamples each
    arm's seeds on its own, so its interval is wider (the seeds' spread counted twice)."""
    runs = ",".join(str(jittered(data, tmp_path, s)) for s in (0, 1))
    report = compare.compare_models([f"f={runs}", f"i={runs}"], data, imgsz=64, resamples=300, verbose=False,
                                    versus={"i": "f"}, paired_with=["i=f"], ids_by_position=True)
    versus, paired = report.contrasts
    assert paired.delta["AP@500"].to_json() == {"value": 0.0, "ci95": [0.0, 0.0]}
    lo, hi = versus.delta["AP@500"].ci95
    assert lo < 0 < hi


def test_a_difference_of_two_costs_against_one_reference_is_their_contrast(data, tmp_path):
    ref, a, c = (jittered(data, tmp_path, 0, shift) for shift in (0.0, 1.0, 2.5))
    report = compare.compare_models([f"ref={ref}", f"a={a}", f"c={c}"], data, imgsz=64, resamples=300,
                                    verbose=False, versus={"a": "c"}, paired_with=["a=ref,c=ref"], ids_by_position=True)
    versus, paired = report.contrasts
    for key in ("AP@500", "AP75@500", "AP_small@500"):
        assert paired.delta[key].to_json() == versus.delta[key].to_json()
    assert versus.delta["AP75@500"].value > 0  # the 2.5-px shift costs more AP75 than the 1-px one


@pytest.mark.parametrize("spec, message", [
    ("f", "--paired f: expected ARM=REF or ARM=REF,ARM2=REF2"),
    ("f=x", "--paired f=x: x is not an arm of this comparison (f, i)"),
    ("f=f", "--paired f=f: an arm against itself"),
    ("i=f", "--paired i=f: i has 1 sources and f 2"),
])
def test_bad_paired_specs_are_refused_before_any_work(data, tmp_path, capsys, spec, message):
    p0, p1 = jittered(data, tmp_path, 0), jittered(data, tmp_path, 1)
    err = one_line_error(capsys, ["compare", f"f={p0},{p1}", f"i={p0}", "--data", data, "--imgsz", "64",
                                  "--paired", spec, "--ids-by-position", "--out", tmp_path / "o"])
    assert message in err
