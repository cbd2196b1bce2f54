"""InceptionNeXt checkpoints (timm, random init, saved locally: nothing downloads) load into yolov8-inceptionnext."""

import re
from pathlib import Path

import pytest
import timm
import torch
from ultralytics import YOLO
from ultralytics.nn.tasks import DetectionModel

from helpers import TRAIN_ARGS, randomize_norms, run_process
from yolo_incep import load_backbone_weights
from yolo_incep.cli import main
from yolo_incep.errors import InputError
from yolo_incep.weights import IMAGENET_MEAN, IMAGENET_STD


@pytest.fixture(scope="module")
def atto(tmp_path_factory):
    """A timm inception_next_atto with random weights and non-trivial BatchNorm statistics, and its saved file."""
    torch.manual_seed(0)
    model = timm.create_model("inception_next_atto", pretrained=False).eval()
    randomize_norms(model, var=(0.01, 2.0))  # small variances make a wrong BatchNorm eps show
    path = tmp_path_factory.mktemp("timm") / "inception_next_atto.pth"
    torch.save(model.state_dict(), path)
    return model, path


def _backbone_features(model: DetectionModel, x: torch.Tensor) -> list[torch.Tensor]:
    """Outputs of the stride-8/16/32 stage rows (2, 3, 4)."""
    model.eval()
    feats = []
    with torch.no_grad():
        for row in model.model[:5]:
            x = row(x)
            feats.append(x)
    return feats[2:]


def _timm_features(model, x: torch.Tensor) -> list[torch.Tensor]:
    """timm's own features_only model, loaded with the same weights (its flattened names: stages_1...)."""
    feats = timm.create_model("inception_next_atto", pretrained=False, features_only=True, out_indices=(1, 2, 3))
    sd = {k.replace("stem.", "stem_", 1).replace("stages.", "stages_", 1): v for k, v in model.state_dict().items()}
    feats.load_state_dict({k: v for k, v in sd.items() if not k.startswith("head.")})
    with torch.no_grad():
        return feats.eval()(x)


def test_timm_atto_loads_and_gives_timms_features(atto):
    model, path = atto
    yolo = YOLO("yolov8n-inceptionnext.yaml")
    report = load_backbone_weights(yolo, path, fold_imagenet_norm=False)
    backbone_keys = [k for k in model.state_dict() if not k.startswith("head.")]
    assert len(report.matched) == len(backbone_keys)
    assert report.missing == report.unexpected == report.mismatched == []
    assert sorted(report.ignored) == sorted(k for k in model.state_dict() if k.startswith("head."))
    x = torch.rand(2, 3, 96, 128)
    ours, ref = _backbone_features(yolo.model, x), _timm_features(model, x)
    assert [f.shape[1:] for f in ours] == [(80, 12, 16), (160, 6, 8), (320, 3, 4)]
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_folded_normalisation_takes_yolo_input(atto):
    model, path = atto
    net = DetectionModel("yolov8n-inceptionnext.yaml", verbose=False)
    assert load_backbone_weights(net, path).folded_norm
    x = torch.rand(1, 3, 64, 64)  # what Ultralytics feeds: RGB in [0, 1]
    normalised = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    for a, b in zip(_backbone_features(net, x), _timm_features(model, normalised)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_wrapped_and_prefixed_checkpoints_load(atto, tmp_path):
    model, _ = atto
    path = tmp_path / "official.pth"
    torch.save({"model": {f"module.{k}": v for k, v in model.state_dict().items()}, "epoch": 300}, path)
    report = load_backbone_weights(DetectionModel("yolov8n-inceptionnext.yaml", verbose=False), path)
    assert report.unexpected == [] and report.missing == [] and len(report.matched) > 200


def test_another_variant_is_refused_with_the_shapes(atto):
    _, path = atto
    tiny = DetectionModel("yolov8s-inceptionnext.yaml", verbose=False)  # s = InceptionNeXt-tiny
    with pytest.raises(InputError, match=r"no weight of .* is in this checkpoint, only \d+ BatchNorm step counters "
                                         r"\(matched \d+, .*shape-mismatched [1-9]"):
        load_backbone_weights(tiny, path)


@pytest.mark.parametrize(
    ("model", "content", "match"),
    [
        ("yolov8n-inceptionnext.yaml", None, "no such checkpoint"),
        ("yolov8n-inceptionnext.yaml", b"\x00\x01 binary, not a checkpoint", "not a readable"),
        ("yolov8n-incep.yaml", "atto", "InceptionNeXtStem"),
    ],
)
def test_bad_input_is_an_input_error(atto, tmp_path, model, content, match):
    path = atto[1] if content == "atto" else tmp_path / "w.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(InputError, match=match):
        load_backbone_weights(DetectionModel(model, verbose=False), path)


@pytest.fixture(scope="module")
def cli_checkpoint(atto, tmp_path_factory):
    """The `yolo-incep load-weights` output for timm atto weights."""
    out = tmp_path_factory.mktemp("cli") / "atto-yolo.pt"
    assert main(["load-weights", "yolov8n-inceptionnext.yaml", str(atto[1]), "-o", str(out)]) == 0
    return out


def test_cli_writes_a_loadable_checkpoint(atto, cli_checkpoint, capsys):
    model, _ = atto
    net = YOLO(cli_checkpoint).model.float()
    ref = model.stages[2].blocks[0].mlp.fc1.weight
    torch.testing.assert_close(net.model[3].blocks[0].mlp.fc1.weight, ref, rtol=1e-3, atol=1e-3)  # saved as fp16
    assert list(cli_checkpoint.parent.iterdir()) == [cli_checkpoint]  # no temporary file left behind, hidden or not


def test_cli_refuses_to_overwrite_its_inputs(atto, tmp_path, capsys):
    weights = tmp_path / "atto.pt"
    weights.write_bytes(atto[1].read_bytes())
    before = weights.read_bytes()
    assert main(["load-weights", "yolov8n-inceptionnext.yaml", str(weights), "-o", str(weights)]) == 2
    assert "is the input" in capsys.readouterr().err
    assert weights.read_bytes() == before


@pytest.fixture(scope="module")
def detection_pt(tmp_path_factory):
    """An Ultralytics detection checkpoint: a model, not ImageNet weights."""
    path = tmp_path_factory.mktemp("det") / "yolov8n-det.pt"
    YOLO("yolov8n.yaml").save(path)
    return path


@pytest.mark.parametrize(
    ("model", "weights", "match"),
    [
        ("yolov8n-inceptionnext.yaml", "text", r"w\.pt: a text file, not a PyTorch/safetensors checkpoint"),
        ("yolov8n-inceptionnext.yaml", "detection", r"an Ultralytics model checkpoint, not InceptionNeXt ImageNet"),
        ("notes.txt", "atto", r"model notes\.txt: expected a model YAML \(\.yaml\) or an Ultralytics checkpoint"),
        ("text.pt", "atto", r"model .*text\.pt: not a loadable Ultralytics checkpoint"),
        ("typo.yaml", "atto", r"typo\.yaml: layer row 1: unknown layer 'C2ff'"),
    ],
)
def test_cli_bad_files_are_one_line_errors_that_say_what_they_are(atto, detection_pt, tmp_path, monkeypatch, capsys,
                                                                  model, weights, match):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("some notes\n")
    (tmp_path / "text.pt").write_text("hello\n")
    (tmp_path / "typo.yaml").write_text(
        "nc: 2\nbackbone: [[-1, 1, Conv, [16, 3, 2]], [-1, 1, C2ff, [16]]]\nhead: [[[1], 1, Detect, [nc]]]\n")
    path = {"atto": atto[1], "detection": detection_pt, "text": tmp_path / "w.pt"}[weights]
    (tmp_path / "w.pt").write_text("101 not a checkpoint\n")
    assert main(["load-weights", model, str(path), "-o", str(tmp_path / "out.pt")]) == 2
    err = capsys.readouterr().err
    assert re.search(match, err) and len(err.strip().splitlines()) == 1 and "\x1b" not in err, err
    assert not (tmp_path / "out.pt").exists()


def test_a_yolo_without_a_model_is_named(atto, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("some notes\n")
    with pytest.raises(InputError, match=r"built from a model YAML or \.pt, got .*holding 'notes\.txt'"):
        load_backbone_weights(YOLO("notes.txt"), atto[1])


def test_a_rerun_removes_what_a_killed_write_left(atto, tmp_path):
    out = tmp_path / "atto-yolo.pt"
    stale = tmp_path / ".atto-yolo.pt.k1ll3d.tmp"  # the temp file of a write killed before its rename
    stale.write_bytes(b"")
    assert main(["load-weights", "yolov8n-inceptionnext.yaml", str(atto[1]), "-o", str(out)]) == 0
    assert list(tmp_path.iterdir()) == [out]


def test_cli_bad_output_name_exits_2(atto, tmp_path, capsys):
    assert main(["load-weights", "yolov8n-inceptionnext.yaml", str(atto[1]), "-o", str(tmp_path / "x.yaml")]) == 2
    assert "must end in .pt" in capsys.readouterr().err


@pytest.mark.slow
def test_stock_cli_trains_from_the_loaded_checkpoint(cli_checkpoint, synthetic_data, fresh_env, tmp_path):
    out = run_process(["yolo", "train", f"model={cli_checkpoint}", f"data={synthetic_data}", *TRAIN_ARGS,
                       f"project={tmp_path}", "name=run"], fresh_env, tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Transferred" in out.stdout + out.stderr  # the ImageNet backbone seeds the run
    assert (Path(tmp_path) / "run" / "weights" / "last.pt").is_file()
