"""Tiling: window coverage, label clipping against brute force, pixel-exact crops, and a stock-CLI epoch on tiles."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from yolo_incep.cli import main
from yolo_incep.data.yolo import format_labels, read_labelled, read_regions, to_corners
from yolo_incep.data.tile import crop_annotations, tile_dataset, tile_windows
from yolo_incep.data.visdrone import convert_visdrone
from yolo_incep.errors import InputError

SAMPLE = Path(os.environ.get("YOLO_INCEP_VISDRONE_SAMPLE")
              or Path(__file__).resolve().parents[2] / "shared/data/visdrone2019-det-sample")


@given(st.integers(1, 3000), st.integers(1, 3000), st.integers(64, 1024), st.floats(0.0, 0.9))
def test_windows_cover_the_image_inside_it(width, height, size, overlap):
    windows = tile_windows(width, height, size, overlap)
    xs = sorted({w[0] for w in windows})
    ys = sorted({w[1] for w in windows})
    assert len(windows) == len(xs) * len(ys)
    for x0, y0, x1, y1 in windows:
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        assert (x1 - x0, y1 - y0) == (min(size, width), min(size, height))
    for starts, length in ((xs, width), (ys, height)):  # no gap, and neighbours overlap by >= `overlap` of a tile
        assert starts[0] == 0 and starts[-1] + min(size, length) == length
        for a, b in zip(starts, starts[1:]):
            assert 0 < b - a <= max(1, round(size * (1 - overlap)))


def test_bad_tile_arguments_are_input_errors():
    with pytest.raises(InputError, match="--overlap"):
        tile_windows(100, 100, 64, 1.0)
    with pytest.raises(InputError, match="--size"):
        tile_windows(100, 100, 0, 0.2)


coords = st.floats(-50, 250, allow_nan=False)
boxes = st.lists(st.tuples(st.integers(0, 9), coords, coords, st.floats(0.5, 120), st.floats(0.5, 120)).map(
    lambda b: (b[0], (b[1], b[2], b[1] + b[3], b[2] + b[4]))), max_size=20)


@given(boxes, st.integers(0, 150), st.integers(0, 150), st.integers(8, 100), st.floats(0.05, 1.0))
def test_crop_annotations_against_brute_force(labelled, x0, y0, size, threshold):
    window = (x0, y0, x0 + size, y0 + size)
    labels, cut, regions = crop_annotations(labelled, [b for _, b in labelled], window, threshold)
    expected_kept, expected_cut = [], 0
    for c, (bx1, by1, bx2, by2) in labelled:
        ix = max(0.0, min(bx2, x0 + size) - max(bx1, x0))
        iy = max(0.0, min(by2, y0 + size) - max(by1, y0))
        visible = ix * iy
        if visible > 0 and visible >= threshold * (bx2 - bx1) * (by2 - by1):
            expected_kept.append((c, pytest.approx(visible)))
        elif visible > 0:
            expected_cut += 1
    assert [(c, (b[2] - b[0]) * (b[3] - b[1])) for c, b in labels] == expected_kept
    assert len(cut) == expected_cut and len(regions) == len(expected_kept) + expected_cut
    for _, b in labels:
        assert 0 <= b[0] < b[2] <= size and 0 <= b[1] < b[3] <= size
    assert all(0 < float(v) <= 1 for line in format_labels(labels, size, size).splitlines() for v in line.split()[1:])


def test_tiles_are_exact_crops_with_clipped_labels(tmp_path):
    src = tmp_path / "src"
    pixels = np.random.default_rng(0).integers(0, 255, (80, 100, 3), dtype=np.uint8)
    (src / "images/train").mkdir(parents=True)
    (src / "labels/train").mkdir(parents=True)
    (src / "ignore/train").mkdir(parents=True)
    Image.fromarray(pixels).save(src / "images/train/0000001_00001_d_1.png")
    # box A (5..25, 5..25) and box B (40..70, 10..30) are cut differently by the six 64-px tiles
    (src / "labels/train/0000001_00001_d_1.txt").write_text("0 0.150000 0.187500 0.200000 0.250000\n"
                                                           "3 0.550000 0.250000 0.300000 0.250000\n")
    (src / "ignore/train/0000001_00001_d_1.txt").write_text("0.900000 0.900000 0.100000 0.100000\n")
    (src / "data.yaml").write_text("names: {0: a, 1: b, 2: c, 3: d}\n")
    report = tile_dataset(src, tmp_path / "dst", size=64, overlap=0.5)
    assert tile_windows(100, 80, 64, 0.5) == [(0, 0, 64, 64), (32, 0, 96, 64), (36, 0, 100, 64),
                                              (0, 16, 64, 80), (32, 16, 96, 80), (36, 16, 100, 80)]
    assert report.tiles == 6
    for x0, y0, x1, y1 in tile_windows(100, 80, 64, 0.5):
        name = f"0000001_00001_d_1_{x0}_{y0}"
        tile = np.asarray(Image.open(tmp_path / f"dst/images/train/{name}.png"))
        assert np.array_equal(tile, pixels[y0:y1, x0:x1])
        got = read_labelled(tmp_path / f"dst/labels/train/{name}.txt", 64, 64)
        expected = []
        for c, (bx1, by1, bx2, by2) in ((0, (5, 5, 25, 25)), (3, (40, 10, 70, 30))):
            ix1, iy1, ix2, iy2 = max(bx1, x0), max(by1, y0), min(bx2, x1), min(by2, y1)
            if ix2 > ix1 and iy2 > iy1 and (ix2 - ix1) * (iy2 - iy1) >= 0.5 * (bx2 - bx1) * (by2 - by1):
                expected.append((c, (ix1 - x0, iy1 - y0, ix2 - x0, iy2 - y0)))
        assert [(c, pytest.approx(b, abs=1e-3)) for c, b in expected] == got
        regions = to_corners(read_regions(tmp_path / f"dst/ignore/train/{name}.txt"), 64, 64)
        assert ((85 - x0, 68 - y0, 95 - x0, 76 - y0) in [tuple(round(v) for v in r) for r in regions]) == (x0 >= 32 and y0 == 16)
    assert "train: images/train" in (tmp_path / "dst/data.yaml").read_text()


def test_malformed_label_names_file_and_line(tmp_path, capsys):
    src = tmp_path / "src"
    (src / "images/train").mkdir(parents=True)
    (src / "labels/train").mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(src / "images/train/a.png")
    (src / "labels/train/a.txt").write_text("0 0.5 0.5 0.1 0.1\n0 0.5 zero 0.1 0.1\n")
    (src / "data.yaml").write_text("names: [x]\n")
    assert main(["tile", str(src), str(tmp_path / "dst"), "--size", "16"]) == 2
    assert f"{src / 'labels/train/a.txt'}:2:" in capsys.readouterr().err


@pytest.fixture(scope="module")
def sample_tiles(tmp_path_factory):
    """Twelve sample images converted (with a sequence val split) and their train split tiled at 640."""
    if not SAMPLE.is_dir():
        pytest.skip(f"VisDrone sample not found at {SAMPLE}")
    root = tmp_path_factory.mktemp("tiles")
    src = root / "src/VisDrone2019-DET-train"
    for kind in ("images", "annotations"):
        (src / kind).mkdir(parents=True)
    for image in sorted((SAMPLE / "VisDrone2019-DET-train/images").glob("*.jpg"))[:12]:
        os.symlink(image, src / "images" / image.name)
        os.symlink(image.parents[1] / "annotations" / f"{image.stem}.txt", src / "annotations" / f"{image.stem}.txt")
    convert_visdrone(root / "src", root / "yolo", val_fraction=0.3, seed=0, log=lambda _: None)
    report = tile_dataset(root / "yolo", root / "tiles", size=640, overlap=0.2, splits=["train"])
    return root, report


def test_sample_tiles_carry_labels_and_ignored_regions(sample_tiles):
    root, report = sample_tiles
    assert report.images == len(list((root / "yolo/images/train").iterdir())) and report.tiles > report.images
    assert len(list((root / "tiles/labels/train").glob("*.txt"))) == report.tiles
    assert list((root / "tiles/ignore/train").glob("*.txt"))  # ignored regions travel with the tiles
    for label in (root / "tiles/labels/train").glob("*.txt"):
        for line in label.read_text().splitlines():
            c, *box = line.split()
            assert 0 <= int(c) <= 9 and all(0 <= float(v) <= 1 for v in box)
    data = (root / "tiles/data.yaml").read_text()
    assert f"val: {(root / 'yolo/images/val').resolve()}" in data  # untiled splits are referenced, not copied


@pytest.mark.slow
def test_one_epoch_on_tiles_with_the_stock_yolo_cli(sample_tiles):
    root, _ = sample_tiles
    yolo = shutil.which("yolo", path=str(Path(sys.executable).parent))
    assert yolo, "the stock `yolo` console script is not installed beside this interpreter"
    cmd = [yolo, "train", "model=yolov8n.yaml", f"data={root / 'tiles/data.yaml'}", "epochs=1", "imgsz=160",
           "batch=8", "workers=0", "device=cpu", "amp=False", "plots=False", "pretrained=False", "max_det=1000",
           f"project={root / 'runs'}", "name=tiles", "exist_ok=True"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=root)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (root / "runs/tiles/weights/last.pt").is_file() and (root / "runs/tiles/results.csv").is_file()


def small_dataset(root: Path, splits=("train",), size=(100, 80), mode="RGB", name="0000001_00001_d_1.png") -> Path:
    """A YOLO dataset with one image per split and one box, names in data.yaml only."""
    for split in splits:
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        pixels = np.random.default_rng(1).integers(0, 255, (size[1], size[0], len(mode)), dtype=np.uint8)
        Image.fromarray(pixels, mode).save(root / "images" / split / name, format="PNG")
        (root / "labels" / split / f"{Path(name).stem}.txt").write_text("0 0.5 0.5 0.2 0.25\n")
    (root / "data.yaml").write_text("names: [a]\n")
    return root


def test_tile_without_val_writes_a_data_yaml_ultralytics_trains_on(tmp_path, capsys):
    from ultralytics.data.utils import check_det_dataset

    src = small_dataset(tmp_path / "src")
    assert main(["tile", str(src), str(tmp_path / "dst"), "--size", "64"]) == 0
    assert "SRC has no val split: val is images/train" in capsys.readouterr().out
    data = check_det_dataset(str(tmp_path / "dst/data.yaml"))  # what `yolo train data=...` runs first
    assert Path(data["val"]) == Path(data["train"]) == (tmp_path / "dst/images/train").resolve()
    assert data["names"] == {0: "a"}


def test_tile_count_that_would_explode_is_refused_before_writing(tmp_path, capsys):
    src = small_dataset(tmp_path / "src", size=(1360, 765))
    assert main(["tile", str(src), str(tmp_path / "dst"), "--size", "16", "--overlap", "0.99"]) == 2
    err = capsys.readouterr().err
    n = (1360 - 16 + 1) * (765 - 16 + 1)  # step 1 px: every position
    assert f"would cut this 1360x765 image into {n} tiles (more than --max-tiles 1000)" in err
    assert not (tmp_path / "dst").exists()
    assert main(["tile", str(src), str(tmp_path / "dst"), "--size", "640", "--overlap", "0.999"]) == 2
    assert "into 90846 tiles" in capsys.readouterr().err  # the count for one such frame
    assert main(["tile", str(src), str(tmp_path / "dst"), "--size", "640", "--max-tiles", "6"]) == 0


def test_tiles_of_another_size_never_mix(tmp_path):
    src = small_dataset(tmp_path / "src")
    dst = tmp_path / "dst"
    assert tile_dataset(src, dst, size=64).tiles == 4
    assert tile_dataset(src, dst, size=64).tiles == 4  # a rerun is no foreign output
    names = {f"0000001_00001_d_1_{w[0]}_{w[1]}" for w in tile_windows(100, 80, 48, 0.2)}
    stale = [p for p in dst.rglob("*.*") if p.parent != dst and p.stem not in names]
    assert stale  # 64-px tiles that a 48-px tiling does not make
    with pytest.raises(InputError, match=rf"holds {len(stale)} file\(s\) this tiling would not write .* --overwrite"):
        tile_dataset(src, dst, size=48)
    assert len(list(dst.glob("images/train/*"))) == 4  # nothing changed
    report = tile_dataset(src, dst, size=48, overwrite=True)
    assert {p.stem for p in dst.glob("images/train/*")} == {p.stem for p in dst.glob("labels/train/*")} == names
    assert report.tiles == len(names) > 4 and f"removed {len(stale)} file(s)" in str(report)
    assert not any(p.exists() for p in stale)


@pytest.mark.parametrize("inside", ["images", ".", "images/train"])
def test_dst_inside_src_is_refused(tmp_path, inside):
    src = small_dataset(tmp_path / "src")
    before = sorted(p for p in src.rglob("*"))
    with pytest.raises(InputError, match="must not lie inside one another"):
        tile_dataset(src, src / inside, size=64)
    with pytest.raises(InputError, match="must not lie inside one another"):
        tile_dataset(src, tmp_path, size=64)  # SRC inside DST
    assert sorted(p for p in src.rglob("*")) == before


def test_png_named_jpg_tiles_losslessly_as_png(tmp_path):
    src = small_dataset(tmp_path / "src", mode="RGBA", name="0000001_00001_d_1.jpg")
    report = tile_dataset(src, tmp_path / "dst", size=64)
    pixels = np.asarray(Image.open(src / "images/train/0000001_00001_d_1.jpg"))
    tiles = sorted((tmp_path / "dst/images/train").iterdir())
    assert report.tiles == len(tiles) == 4 and all(t.suffix == ".png" for t in tiles)
    for x0, y0, x1, y1 in tile_windows(100, 80, 64, 0.2):
        tile = np.asarray(Image.open(tmp_path / f"dst/images/train/0000001_00001_d_1_{x0}_{y0}.png"))
        assert np.array_equal(tile, pixels[y0:y1, x0:x1])


def test_exif_rotated_source_is_tiled_as_ultralytics_sees_it(tmp_path):
    import cv2

    src = small_dataset(tmp_path / "src")
    image = src / "images/train/0000001_00001_d_1.png"
    (src / "images/train/0000001_00001_d_1.png").unlink()
    exif = Image.Exif()
    exif[0x0112] = 6
    yy, xx = np.mgrid[0:40, 0:70]
    pixels = np.stack([xx * 3, yy * 6, xx + yy], axis=-1).astype(np.uint8)  # smooth, so JPEG keeps it closely
    Image.fromarray(pixels).save(image.with_suffix(".jpg"), exif=exif, quality=100, subsampling=0)
    seen = cv2.imread(str(image.with_suffix(".jpg")))[..., ::-1]  # Ultralytics' loader applies the orientation
    tile_dataset(src, tmp_path / "dst", size=64)
    tiles = {p.stem: np.asarray(Image.open(p)) for p in (tmp_path / "dst/images/train").iterdir()}
    assert seen.shape[:2] == (70, 40) and set(tiles) == {"0000001_00001_d_1_0_0", "0000001_00001_d_1_0_6"}
    assert np.abs(tiles["0000001_00001_d_1_0_6"].astype(int) - seen[6:70].astype(int)).mean() < 3  # JPEG noise only


def test_splits_only_referenced_by_the_source_stay_referenced(tmp_path):
    src = small_dataset(tmp_path / "src")
    (src / "data.yaml").write_text(f"path: {src}\ntrain: images/train\nval: {tmp_path / 'frames/images/val'}\n"
                                   f"test: [../elsewhere/a, ../elsewhere/b]\nnames: [a]\n")  # as a tile output has
    tile_dataset(src, tmp_path / "dst", size=64)
    data = yaml.safe_load((tmp_path / "dst/data.yaml").read_text())
    assert data["train"] == "images/train" and data["val"] == str(tmp_path / "frames/images/val")
    assert data["test"] == [str(tmp_path / "elsewhere/a"), str(tmp_path / "elsewhere/b")]
