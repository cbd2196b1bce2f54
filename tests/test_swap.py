"""`yolo-incep swap`: stock and user YAMLs become Inception YAMLs that build, keep their scale, and report leftovers."""

import copy

import pytest
import yaml
from ultralytics import YOLO
from ultralytics.nn.tasks import DetectionModel

from yolo_incep.cli import main
from yolo_incep.nn import InceptionDWConv2d


@pytest.mark.parametrize("source", ["yolov5n.yaml", "yolov8s.yaml", "yolov9c.yaml", "yolo11n.yaml", "yolo26n.yaml"])
def test_stock_configs_swap_to_yamls_that_build(source, tmp_path, capsys):
    out = tmp_path / "swapped.yaml"  # no scale letter in the name: the source's scale must still be built
    assert main(["swap", source, "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "before" in printed and "after" in printed and "GFLOPs" in printed
    swapped, stock = YOLO(out).model, YOLO(source).model
    assert any(isinstance(m, InceptionDWConv2d) for m in swapped.modules())
    # same scale as the source: identical output channels at every row (the blocks are drop-ins)
    assert [getattr(m, "f", None) for m in swapped.model] == [getattr(m, "f", None) for m in stock.model]
    assert swapped.model[0].conv.out_channels == stock.model[0].conv.out_channels
    assert swapped.model[-1].nc == stock.model[-1].nc and swapped.stride.tolist() == stock.stride.tolist()


def test_scale_letter_in_the_output_name_still_wins(tmp_path):
    out = tmp_path / "my-yolov8m.yaml"
    assert main(["swap", "yolov8s.yaml", "-o", str(out)]) == 0
    assert YOLO(out).model.model[0].conv.out_channels == 48  # 64 * 0.75: m, not the source's s
    assert next(iter(yaml.safe_load(out.read_text())["scales"])) == "s"


def test_where_limits_the_sections_and_unconvertible_rows_are_reported(tmp_path, capsys):
    out = tmp_path / "bb.yaml"
    assert main(["swap", "yolo11n.yaml", "-o", str(out), "--where", "backbone", "--rule", "all"]) == 0
    printed = capsys.readouterr().out
    assert "not converted: row 10 C2PSA" in printed
    d = yaml.safe_load(out.read_text())
    assert [r[2] for r in d["backbone"] if "C3k2" in r[2]] == ["C3k2Incep"] * 4
    assert [r[2] for r in d["head"] if "C3k2" in r[2]] == ["C3k2"] * 4
    assert "# 10 (kept: no Inception counterpart)" in out.read_text()


def test_user_file_round_trips_everything_else(tmp_path):
    src = tmp_path / "mine.yaml"
    d = {"nc": 3, "depth_multiple": 0.33, "width_multiple": 0.25, "activation": "nn.ReLU()",
         "backbone": [[-1, 1, "Conv", [64, 3, 2]], [-1, 1, "Conv", [128, 3, 2]], [-1, 3, "C2f", [128, True]],
                      [-1, 1, "Conv", [256, 3, 2]], [-1, 1, "ELAN1", [256, 256, 128]], [-1, 1, "Conv", [512, 3, 2]],
                      [-1, 1, "SPPF", [512, 5]]],
         "head": [[-1, 1, "nn.Upsample", ["None", 2, "nearest"]], [[-1, 4], 1, "Concat", [1]],
                  [-1, 1, "C3", [256, False]], [[9, 6], 1, "Detect", ["nc"]]]}
    src.write_text(yaml.safe_dump(d, sort_keys=False))
    out = tmp_path / "out.yaml"
    assert main(["swap", str(src), "-o", str(out), "--rule", "all"]) == 0  # p45 would keep these stride-4/8 rows
    got = yaml.safe_load(out.read_text())
    expected = copy.deepcopy(d)
    expected["backbone"][2][2], expected["backbone"][4][2], expected["head"][2][2] = "C2fIncep", "ELAN1Incep", "C3Incep"
    assert got == expected  # settings, arguments, other rows: all kept
    model = DetectionModel(str(out), nc=3, verbose=False)
    assert any(isinstance(m, InceptionDWConv2d) for m in model.modules())


def test_no_convertible_row_exits_nonzero_and_writes_nothing(tmp_path, capsys):
    src = tmp_path / "plain.yaml"
    src.write_text(yaml.safe_dump({"nc": 2, "backbone": [[-1, 1, "Conv", [16, 3, 2]], [-1, 1, "Conv", [32, 3, 2]]],
                                   "head": [[[1], 1, "Detect", ["nc"]]]}))
    out = tmp_path / "out.yaml"
    assert main(["swap", str(src), "-o", str(out)]) == 2
    assert "no convertible row" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == [src]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (None, "no such model YAML"),
        ({"nc": 2, "backbone": [[-1, 1, "C2f"]], "head": []}, "backbone row 0: expected"),
        ({"nc": 2, "backbone": [[-1, 1, "C2f", [16]]]}, "no 'head' list"),
    ],
)
def test_bad_sources_name_what_is_wrong(tmp_path, capsys, content, match):
    src = tmp_path / "bad.yaml"
    if content is not None:
        src.write_text(yaml.safe_dump(content))
    assert main(["swap", str(src), "-o", str(tmp_path / "out.yaml")]) == 2
    assert match in capsys.readouterr().err


def test_output_equal_to_the_source_is_refused_and_the_source_kept(tmp_path, capsys):
    src = tmp_path / "a.yaml"
    text = yaml.safe_dump({"nc": 2, "backbone": [[-1, 1, "Conv", [16, 3, 2]], [-1, 1, "C2f", [16]]],
                           "head": [[[1], 1, "Detect", ["nc"]]]})
    src.write_text(text)
    (tmp_path / "link.yaml").symlink_to(src)
    for out in (src, tmp_path / "link.yaml"):
        assert main(["swap", str(src), "-o", str(out)]) == 2
        assert "is the input" in capsys.readouterr().err
    assert src.read_text() == text


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("model.txt", "nc: 2\n", "not a model YAML (expected a .yaml"),
        ("image.yaml", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" * 8, "image.yaml: not a model YAML"),
        ("list.yaml", "- 1\n- 2\n", "not a valid YAML mapping"),
        ("typo.yaml", yaml.safe_dump({"nc": 2, "backbone": [[-1, 1, "Conv", [16, 3, 2]], [-1, 1, "C2ff", [16]]],
                                      "head": [[[1], 1, "Detect", ["nc"]]]}), "layer row 1: unknown layer 'C2ff'"),
    ],
)
def test_files_that_are_not_model_yamls_are_one_line_errors(tmp_path, capsys, name, content, match):
    src = tmp_path / name
    src.write_bytes(content) if isinstance(content, bytes) else src.write_text(content)
    assert main(["swap", str(src), "-o", str(tmp_path / "out.yaml")]) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out.yaml").exists()


def test_a_read_only_output_folder_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    import errno
    import tempfile

    folder = tmp_path / "ro"
    folder.mkdir()

    def read_only(*args, dir=None, **kwargs):  # what a read-only folder answers, also to root (who may write anywhere)
        raise PermissionError(errno.EACCES, "Permission denied", str(dir))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    assert main(["swap", "yolov8n.yaml", "-o", str(folder / "out.yaml")]) == 2
    err = capsys.readouterr().err
    assert f"{folder}: Permission denied" in err and len(err.strip().splitlines()) == 1, err
    assert list(folder.iterdir()) == []


def test_an_output_folder_that_is_a_file_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "taken").write_text("a file, not a folder")
    assert main(["swap", "yolov8n.yaml", "-o", str(tmp_path / "taken" / "out.yaml")]) == 2
    err = capsys.readouterr().err
    assert "taken" in err and len(err.strip().splitlines()) == 1, err
