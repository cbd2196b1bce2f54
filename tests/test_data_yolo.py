"""YOLO dataset I/O (data/yolo.py) against Ultralytics' own rules, and what the data tools do with bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from yolo_incep.data import yolo
from yolo_incep.files import atomic_path, atomic_write_bytes, check_writable, remove_stale_temps
from yolo_incep.errors import InputError


def visdrone_source(root: Path, stems: list[str], size: tuple[int, int] = (64, 48)) -> Path:
    """A VisDrone-layout source of plain images, one box each: root/VisDrone2019-DET-train/{images,annotations}."""
    folder = root / "VisDrone2019-DET-train"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "annotations").mkdir(exist_ok=True)
    for i, stem in enumerate(stems):
        Image.new("RGB", size, (i * 20 % 255, 90, 40)).save(folder / "images" / f"{stem}.jpg")
        (folder / "annotations" / f"{stem}.txt").write_text("4,5,12,10,1,4,0,0\n0,30,8,8,0,0,0,0\n")
    return root


# ---- paths, images, labels ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("image", ["/d/images/train/a.jpg", "/d/images/x/images/b.c.png", "/images/a.JPG",
                                   "/d/images/train/sub/a.jpeg", "/x/images_v2/images/a.jpg"])
def test_label_path_is_ultralytics_rule(image):
    from ultralytics.data.utils import img2label_paths

    assert yolo.label_path(Path(image)) == Path(img2label_paths([image])[0])
    assert yolo.label_path(Path(image), "ignore") == Path(img2label_paths([image], label_dir="ignore")[0])


def test_label_path_without_images_folder_is_named():
    with pytest.raises(InputError, match=r"a\.jpg: image path has no 'images' folder"):
        yolo.label_path(Path("/data/pictures/a.jpg"))


@pytest.mark.parametrize("line, message", [
    ("0 0.5 0.5 0.1", r"a\.txt:2: expected 5 numbers 'class cx cy w h'"),
    ("0 0.5 zero 0.1 0.1", r"a\.txt:2: expected 5 numbers"),
    ("0 0.5 0.5 1e23 0.1", r"a\.txt:2: box .* is not normalised"),
    ("0 0.5 0.5 -0.1 0.1", r"a\.txt:2: box .* is not normalised"),
    ("0 0.5 0.5 0.1 inf", r"a\.txt:2: expected 5 numbers"),
    ("3 0.5 0.5 0.1 0.1", r"a\.txt:2: class id 3 is outside names \(0\.\.2\)"),
    ("1.5 0.5 0.5 0.1 0.1", r"a\.txt:2: class id 1\.5 is outside names"),
])
def test_bad_label_lines_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "a.txt"
    path.write_text(f"0 0.5 0.5 0.1 0.1\n{line}\n")
    with pytest.raises(InputError, match=message):
        yolo.read_labels(path, nc=3)


def test_labels_read_as_ultralytics_reads_them(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes("\ufeff1 0.5 0.25 0.2 0.1\n\n2.0 1.005 0.5 0.01 0.3\n".encode())  # BOM, blank line, 1% tolerance
    rows = yolo.read_labels(path, nc=3)
    assert rows.tolist() == [[1, 0.5, 0.25, 0.2, 0.1], [2, 1.005, 0.5, 0.01, 0.3]]
    assert yolo.read_labels(tmp_path / "missing.txt").shape == (0, 5)
    assert yolo.read_labelled(path, 100, 200)[0] == (1, pytest.approx((40, 40, 60, 60)))
    assert yolo.to_xywh(rows[:, 1:], 100, 200)[0].tolist() == pytest.approx([40, 40, 20, 20])


def test_image_size_is_the_decoded_size_with_exif(tmp_path):
    import cv2

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    Image.new("RGB", (40, 20)).save(tmp_path / "r.jpg", exif=exif)
    decoded = cv2.imread(str(tmp_path / "r.jpg"))  # what Ultralytics' loader decodes
    assert yolo.image_size(tmp_path / "r.jpg") == (decoded.shape[1], decoded.shape[0]) == (20, 40)


def test_images_ultralytics_would_drop_are_input_errors(tmp_path):
    noise = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "ok.jpg")
    assert yolo.image_size(tmp_path / "ok.jpg") == (160, 120)
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) * 3 // 4])  # header intact, pixel data cut short
    with pytest.raises(InputError, match=r"cut\.jpg: truncated JPEG"):
        yolo.image_size(tmp_path / "cut.jpg")
    Image.new("RGB", (64, 8)).save(tmp_path / "thin.png")
    with pytest.raises(InputError, match=r"thin\.png: image is 64x8 px"):
        yolo.image_size(tmp_path / "thin.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(InputError, match=r"text\.png: unreadable image"):
        yolo.image_size(tmp_path / "text.png")


def test_two_images_with_one_stem_are_named(tmp_path):
    for suffix in (".jpg", ".png"):
        Image.new("RGB", (16, 16)).save(tmp_path / f"a{suffix}")
    with pytest.raises(InputError, match=r"a\.jpg and .*a\.png share one label file"):
        yolo.list_images(tmp_path)


def test_add_split_keeps_everything_else(tmp_path):
    data = tmp_path / "data.yaml"
    text = "# my dataset\npath: .  # here\ntrain: images/train # 10 images\ntest: /elsewhere/test\n" \
           "names: [a]\ndownload: |\n  print('hi')\n"
    data.write_text(text)
    yolo.add_split(data, "val", "images/val")
    assert data.read_text() == text.replace("# 10 images\n", "# 10 images\nval: images/val\n")
    data.write_text("names: [a]")
    yolo.add_split(data, "val", "images/val")
    assert data.read_text() == "names: [a]\nval: images/val\n"


# ---- atomic writes, temp files, writability ----------------------------------------------------------------------

def test_atomic_writers_leave_no_temp_files(tmp_path):
    with pytest.raises(KeyboardInterrupt), atomic_path(tmp_path / "a.txt") as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    stale = [tmp_path / ".a.txt.k3x_9qzr.tmp", tmp_path / ".b.jpg.0123abcd.tmp"]  # as a killed run leaves them
    for p in stale:
        p.write_bytes(b"")
    (tmp_path / ".keep.tmp").write_text("not ours")
    atomic_write_bytes(tmp_path / "a.txt", "x")
    assert not stale[0].exists()  # a write of a.txt removes a.txt's own leftovers
    assert remove_stale_temps([tmp_path, tmp_path / "missing"]) == 1  # a rerun removes the rest
    assert sorted(p.name for p in tmp_path.iterdir()) == [".keep.tmp", "a.txt"]


def test_reruns_remove_stale_temp_files(tmp_path, run_cli):
    src = visdrone_source(tmp_path / "src", ["0000001_00001_d_1"])
    assert run_cli("convert", "visdrone", src, tmp_path / "dst")[0] == 0
    stale = tmp_path / "dst/labels/train/.0000001_00001_d_1.txt.abcd1234.tmp"
    stale.write_bytes(b"")
    assert run_cli("convert", "visdrone", src, tmp_path / "dst")[0] == 0
    assert not stale.exists()
    stale = tmp_path / "tiles/images/train/.0000001_00001_d_1_0_0.jpg.abcd1234.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"")
    assert run_cli("tile", tmp_path / "dst", tmp_path / "tiles", "--size", "32")[0] == 0
    assert not stale.exists()


def test_check_writable_names_the_folder(tmp_path, read_only):
    (tmp_path / "ro").mkdir()
    check_writable([tmp_path / "ro" / "new" / "deeper"])
    with read_only(tmp_path / "ro"), pytest.raises(InputError, match=r"ro: cannot write there"):
        check_writable([tmp_path / "ok", tmp_path / "ro" / "new" / "deeper"])


def test_read_only_outputs_fail_before_any_change(tmp_path, run_cli, snapshot, read_only):
    stems = [f"000000{i}_00001_d_1" for i in range(1, 5)]
    src = visdrone_source(tmp_path / "src", stems)
    dst = tmp_path / "dst"
    assert run_cli("convert", "visdrone", src, dst)[0] == 0
    before = snapshot(dst)
    with read_only(dst / "labels/train"):  # a re-split must move labels: it would have lost images before
        rc, _, err = run_cli("convert", "visdrone", src, dst, "--val-fraction", "0.5")
        assert rc == 2 and "labels/train: cannot write there" in err and "Traceback" not in err
        rc, _, err = run_cli("split", dst, "--val-fraction", "0.5")
        assert rc == 2 and "labels/train: cannot write there" in err
    assert snapshot(dst) == before
    (tmp_path / "tiles").mkdir()
    with read_only(tmp_path / "tiles"):
        rc, _, err = run_cli("tile", dst, tmp_path / "tiles", "--size", "32")
        assert rc == 2 and "tiles: cannot write there" in err and "Traceback" not in err
    assert list((tmp_path / "tiles").iterdir()) == []
