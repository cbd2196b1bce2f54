"""`yolo-incep demo` refuses bad arguments before it writes anything (the full run is `make demo`)."""

import pytest

from yolo_incep.cli import main


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--models", "yolov8n.yaml", "nonexist.yaml"], "nonexist.yaml: no such model YAML"),
        (["--models", "missing.pt"], "--models missing.pt: no such checkpoint file"),
        (["--imgsz", "0"], "--imgsz 0: must be at least 32"),
        (["--epochs", "0"], "--epochs 0: must be at least 1"),
    ],
)
def test_bad_arguments_fail_before_the_dataset_is_written(tmp_path, monkeypatch, capsys, args, match):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--out", str(tmp_path / "out"), *args]) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()
