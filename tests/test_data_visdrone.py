"""VisDrone conversion: labels against an independent reference, ignored regions, idempotence, errors, splits."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from yolo_incep.data.split import resplit, sequence_id, split_by_sequence
from yolo_incep.data.visdrone import NAMES as VISDRONE_NAMES
from yolo_incep.data.visdrone import convert_visdrone, parse_annotations
from yolo_incep.errors import InputError

SAMPLE = Path(os.environ.get("YOLO_INCEP_VISDRONE_SAMPLE")
              or Path(__file__).resolve().parents[2] / "shared/data/visdrone2019-det-sample")
needs_sample = pytest.mark.skipif(not SAMPLE.is_dir(), reason=f"VisDrone sample not found at {SAMPLE}")
SRC = SAMPLE / "VisDrone2019-DET-train"


def quiet(_: str) -> None:
    """Swallow the conversion summary."""


def reference(annotation: Path, width: int, height: int) -> tuple[str, str]:
    """Standard conversion written independently: (YOLO label text, ignore sidecar text) of one annotation file."""
    labels, ignored = [], []
    for line in annotation.read_text().splitlines():
        x, y, w, h, score, cat = (int(v) for v in line.split(",")[:6])
        x1, y1 = min(max(x, 0), width), min(max(y, 0), height)
        x2, y2 = min(max(x + w, 0), width), min(max(y + h, 0), height)
        bw, bh = x2 - x1, y2 - y1
        if bw <= 0 or bh <= 0:
            continue
        row = f"{(x1 + bw / 2) / width:.6f} {(y1 + bh / 2) / height:.6f} {bw / width:.6f} {bh / height:.6f}\n"
        if score == 1 and 1 <= cat <= 10:
            labels.append(f"{cat - 1} {row}")
        else:
            ignored.append(row)
    return "".join(labels), "".join(ignored)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The shared sample converted once, with a 20% sequence val split."""
    if not SAMPLE.is_dir():
        pytest.skip(f"VisDrone sample not found at {SAMPLE}")
    dst = tmp_path_factory.mktemp("visdrone")
    report = convert_visdrone(SAMPLE, dst, val_fraction=0.2, seed=0, log=quiet)
    return dst, report


def small_source(root: Path, stems: list[str]) -> Path:
    """A VisDrone-layout source with the given sample images (linked) and annotations (copied, editable)."""
    src = root / "VisDrone2019-DET-train"
    (src / "images").mkdir(parents=True)
    (src / "annotations").mkdir()
    for stem in stems:
        os.symlink(SRC / "images" / f"{stem}.jpg", src / "images" / f"{stem}.jpg")
        shutil.copy(SRC / "annotations" / f"{stem}.txt", src / "annotations" / f"{stem}.txt")
    return root


@needs_sample
def test_labels_equal_standard_conversion(converted):
    dst, report = converted
    labels = sorted(dst.glob("labels/*/*.txt"))
    assert len(labels) == 299 and report.images == {"train": 239, "val": 60}
    for label in labels:
        image = dst / "images" / label.parent.name / f"{label.stem}.jpg"
        with Image.open(image) as im:
            expected_labels, expected_ignored = reference(SRC / "annotations" / label.name, *im.size)
        assert label.read_text() == expected_labels, label
        sidecar = dst / "ignore" / label.parent.name / label.name
        assert (sidecar.read_text() if sidecar.exists() else "") == expected_ignored, sidecar
        assert {int(line.split()[0]) for line in expected_labels.splitlines()} <= set(range(10))


@needs_sample
def test_summary_matches_the_sample_readme(converted):
    dst, report = converted
    assert sum(report.boxes) == 29656
    assert (report.ignored, report.regions, report.zero_area) == (1325 + 39, 1325, 0)
    assert 0.64 < report.small / sum(report.boxes) < 0.67  # the README's "65% under 32x32 px"
    assert sum(1 for _ in dst.glob("ignore/*/*.txt")) > 0
    image = next(dst.glob("images/train/*.jpg"))  # a copy: an in-place edit of it never reaches the source
    assert image.read_bytes() == (SRC / "images" / image.name).read_bytes()
    assert not os.path.samefile(image, SRC / "images" / image.name)


@needs_sample
def test_val_split_is_by_sequence_and_rerun_changes_nothing(converted, snapshot):
    dst, _ = converted
    train = {sequence_id(p.stem) for p in dst.glob("images/train/*")}
    val = {sequence_id(p.stem) for p in dst.glob("images/val/*")}
    assert train and val and not train & val
    before = snapshot(dst)
    convert_visdrone(SAMPLE, dst, val_fraction=0.2, seed=0, log=quiet)
    assert snapshot(dst) == before


@needs_sample
def test_split_command_matches_convert_split_and_is_idempotent(converted, tmp_path, run_cli, snapshot):
    dst = tmp_path / "ds"
    convert_visdrone(small_source(tmp_path / "src", [p.stem for p in sorted(SRC.glob("images/*"))[:40]]), dst, log=quiet)
    assert not (dst / "images/val").exists()
    assert run_cli("split", str(dst), "--val-fraction", "0.25", "--seed", "3")[0] == 0
    val = {p.stem for p in dst.glob("images/val/*")}
    assert val == split_by_sequence((p.stem for p in sorted(SRC.glob("images/*"))[:40]), 0.25, 3)
    assert {p.stem for p in dst.glob("labels/val/*")} == val
    before = snapshot(dst)
    resplit(dst, 0.25, 3)
    assert snapshot(dst) == before
    assert "val: images/val" in (dst / "data.yaml").read_text()


@given(st.lists(st.text("abc", min_size=1, max_size=2), min_size=2, max_size=12, unique=True),
       st.floats(0.05, 0.95), st.integers(0, 5))
def test_split_by_sequence_properties(sequences, fraction, seed):
    stems = [f"{s}_{f:05d}_d_{i}" for i, s in enumerate(sequences) for f in range(3)]
    val = split_by_sequence(stems, fraction, seed)
    assert val == split_by_sequence(reversed(stems), fraction, seed)  # deterministic, order-free
    assert 0 < len(val) < len(stems)  # both sides non-empty
    assert not {sequence_id(s) for s in val} & {sequence_id(s) for s in stems if s not in val}


@needs_sample
@pytest.mark.parametrize("row, message", [
    ("1,2,3", "expected 8 comma-separated fields"),
    ("1,2,x,4,1,4,0,0", "w is not a number"),
    ("1,2,-3,4,1,4,0,0", "negative box size"),
    ("1,2,3,4,1,12,0,0", "unknown category"),
    ("1,2,3,4,1,nan,0,0", "category is not a finite number"),
    ("0,0,1e23,4,1,4,0,0", "w=1e+23 h=4 reaches far outside its 960x540 image"),  # was a whole-image box
])
def test_corrupted_copy_fails_with_file_and_line(tmp_path, row, message, run_cli):
    stems = [p.stem for p in sorted(SRC.glob("images/*"))[:3]]
    src = small_source(tmp_path / "src", stems)
    bad = src / "VisDrone2019-DET-train/annotations" / f"{stems[1]}.txt"
    lines = bad.read_text().splitlines()
    bad.write_text("\n".join(lines[:4] + [row] + lines[4:]) + "\n")
    rc, _, err = run_cli("convert", "visdrone", str(src), str(tmp_path / "dst"))
    assert rc == 2 and f"{bad}:5:" in err and message in err and "Traceback" not in err
    assert not (tmp_path / "dst").exists()  # everything is checked before anything is written
    rc, out, _ = run_cli("convert", "visdrone", str(src), str(tmp_path / "dst"), "--skip-bad")
    assert rc == 0 and "malformed rows skipped (--skip-bad): 1" in out
    assert len(list((tmp_path / "dst/labels/train").glob("*.txt"))) == 3


@needs_sample
def test_missing_image_is_reported(tmp_path, run_cli):
    stems = [p.stem for p in sorted(SRC.glob("images/*"))[:3]]
    src = small_source(tmp_path / "src", stems)
    (src / f"VisDrone2019-DET-train/images/{stems[0]}.jpg").unlink()
    rc, _, err = run_cli("convert", "visdrone", str(src), str(tmp_path / "dst"))
    assert rc == 2 and f"{stems[0]}.txt: no image" in err
    rc, out, _ = run_cli("convert", "visdrone", str(src), str(tmp_path / "dst"), "--skip-bad")
    assert rc == 0 and "no image" in out and "train 2" in out


def test_val_fraction_out_of_range_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="--val-fraction"):
        split_by_sequence(["a_1", "b_1"], 1.5)


numbers = st.one_of(st.integers(-50, 200), st.floats(allow_nan=True, allow_infinity=True), st.just(""),
                    st.text(max_size=3))
rows = st.one_of(
    st.tuples(st.integers(-20, 120), st.integers(-20, 120), st.integers(0, 90), st.integers(0, 90),
              st.integers(0, 1), st.integers(0, 11), st.integers(0, 2), st.integers(0, 2)).map(
        lambda r: ",".join(map(str, r))),
    st.lists(numbers, min_size=0, max_size=10).map(lambda r: ",".join(map(str, r))),
    st.text(max_size=20),
)


def check_outputs(labels: str, sidecar: str) -> None:
    """Every label has a class in 0..9 and a box inside the image; every region lies inside the image."""
    for line in labels.splitlines():
        c, *box = line.split()
        assert 0 <= int(c) <= 9
        check_box([float(v) for v in box])
    for line in sidecar.splitlines():
        check_box([float(v) for v in line.split()])


def check_box(box: list[float]) -> None:
    """A normalised cx cy w h box lies inside the unit square with positive size."""
    cx, cy, w, h = box
    assert w > 0 and h > 0
    assert 0 <= cx - w / 2 + 1e-6 and cx + w / 2 - 1e-6 <= 1 and 0 <= cy - h / 2 + 1e-6 and cy + h / 2 - 1e-6 <= 1


@given(st.lists(rows, max_size=15), st.integers(1, 100), st.integers(1, 100))
def test_parse_never_leaks_a_bad_class_or_box(lines, width, height):
    text = "\n".join(lines)
    from yolo_incep.data.yolo import format_labels, format_regions

    try:
        ann = parse_annotations(text, "a.txt", width, height)
    except InputError as e:
        assert str(e).startswith("a.txt:")  # names file:line
        ann = parse_annotations(text, "a.txt", width, height, skip_bad=True)  # never raises
        assert ann.skipped >= 1
    check_outputs(format_labels(ann.boxes, width, height), format_regions(ann.ignored, width, height))


@settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rows, max_size=10), st.binary(max_size=8), st.booleans())
def test_cli_on_random_annotation_files_never_shows_a_traceback(run_cli, lines, junk, skip_bad):
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "VisDrone2019-DET-train"
        (src / "images").mkdir(parents=True)
        (src / "annotations").mkdir()
        Image.new("RGB", (100, 60)).save(src / "images/0000001_00001_d_0000001.jpg")
        (src / "annotations/0000001_00001_d_0000001.txt").write_bytes("\n".join(lines).encode() + junk)
        rc, _, err = run_cli("convert", "visdrone", str(src), str(Path(tmp) / "dst"), *(["--skip-bad"] * skip_bad))
        assert "Traceback" not in err
        assert rc == 0 if skip_bad else rc in (0, 2)
        if rc == 0:
            label = Path(tmp) / "dst/labels/train/0000001_00001_d_0000001.txt"
            sidecar = Path(tmp) / "dst/ignore/train/0000001_00001_d_0000001.txt"
            check_outputs(label.read_text(), sidecar.read_text() if sidecar.exists() else "")
        else:
            assert ".txt:" in err  # file:line


@needs_sample
def test_download_step_converts_unzipped_folders_in_place_and_explains_offline(tmp_path, monkeypatch):
    import ultralytics.utils

    from yolo_incep.data.prepare import download_visdrone

    root = small_source(tmp_path / "VisDrone", [p.stem for p in sorted(SRC.glob("images/*"))[:3]])
    monkeypatch.setattr(ultralytics.utils, "is_online", lambda: False)
    for _ in range(2):  # SRC == DST, as the VisDrone2019-DET.yaml download step runs it; the rerun must work too
        download_visdrone(root)
    assert len(list((root / "labels/train").glob("*.txt"))) == 3
    with pytest.raises(InputError, match="offline.*yolo-incep convert visdrone"):  # one line through `yolo train`
        download_visdrone(tmp_path / "empty")


@needs_sample
def test_images_ultralytics_would_not_train_on_are_named_before_writing(tmp_path, run_cli):
    stems = [p.stem for p in sorted(SRC.glob("images/*"))[:3]]
    src = small_source(tmp_path / "src", stems)
    images = src / "VisDrone2019-DET-train/images"
    (images / f"{stems[0]}.jpg").unlink()
    data = (SRC / "images" / f"{stems[0]}.jpg").read_bytes()
    (images / f"{stems[0]}.jpg").write_bytes(data[: len(data) // 2])  # header intact, the rest cut off
    rc, _, err = run_cli("convert", "visdrone", str(src), str(tmp_path / "dst"))
    assert rc == 2 and f"{stems[0]}.jpg: truncated JPEG" in err and "Traceback" not in err
    (images / f"{stems[0]}.jpg").write_bytes(data)
    Image.open(images / f"{stems[1]}.jpg").save(images / f"{stems[1]}.png")  # was: the .jpg silently dropped
    rc, _, err = run_cli("convert", "visdrone", str(src), str(tmp_path / "dst"))
    assert rc == 2 and f"{stems[1]}.jpg and " in err and f"{stems[1]}.png share one label file" in err
    assert not (tmp_path / "dst").exists()


@needs_sample
def test_convert_never_mixes_with_an_earlier_conversion(tmp_path, run_cli, snapshot):
    stems = [p.stem for p in sorted(SRC.glob("images/*"))[:8]]
    dst = tmp_path / "dst"
    convert_visdrone(small_source(tmp_path / "big", stems), dst, log=quiet)
    small = small_source(tmp_path / "small", stems[:4])
    before = snapshot(dst)
    n = sum(1 for p in dst.glob("*/train/*") if p.stem in stems[4:])  # images, labels and sidecars of the other 4
    rc, _, err = run_cli("convert", "visdrone", str(small), str(dst))
    assert rc == 2 and f"holds {n} file(s) of another conversion" in err and "--overwrite" in err
    assert snapshot(dst) == before
    rc, out, _ = run_cli("convert", "visdrone", str(small), str(dst), "--overwrite")
    assert rc == 0 and "train 4" in out and f"removed {n} file(s) of an earlier conversion" in out
    assert sorted(p.stem for p in dst.glob("images/train/*")) == sorted(p.stem for p in dst.glob("labels/train/*")) \
        == stems[:4]
    assert all(p.stem in stems[:4] for p in dst.glob("ignore/*/*"))


@needs_sample
def test_split_keeps_the_users_data_yaml(tmp_path, run_cli):
    stems = [p.stem for p in sorted(SRC.glob("images/*"))[:40]]
    dst = tmp_path / "ds"
    convert_visdrone(small_source(tmp_path / "src", stems), dst, log=quiet)
    names = "".join(f"  {i}: {n}\n" for i, n in enumerate(VISDRONE_NAMES))  # every class the labels use
    text = (f"# my copy of the sample\npath: {dst}  # absolute\ntrain: images/train\ntest: /data/elsewhere/test\n"
            f"names:\n{names}download: |\n  print('fetch')\n")
    (dst / "data.yaml").write_text(text)
    assert run_cli("split", str(dst), "--val-fraction", "0.25")[0] == 0
    assert (dst / "data.yaml").read_text() == text.replace("train: images/train\n",
                                                           "train: images/train\nval: images/val\n")
    mtime = (dst / "data.yaml").stat().st_mtime_ns
    assert run_cli("split", str(dst), "--val-fraction", "0.3")[0] == 0  # val: images/val is there now: left alone
    assert (dst / "data.yaml").stat().st_mtime_ns == mtime


@needs_sample
def test_split_refuses_a_tile_output_whose_val_is_untiled(tmp_path, run_cli, snapshot):
    from yolo_incep.data.tile import tile_dataset

    stems = [p.stem for p in sorted(SRC.glob("images/*"))[:12]]
    convert_visdrone(small_source(tmp_path / "src", stems), tmp_path / "yolo", val_fraction=0.3, log=quiet)
    tile_dataset(tmp_path / "yolo", tmp_path / "tiles", size=640, splits=["train"])
    before = snapshot(tmp_path / "tiles")
    rc, _, err = run_cli("split", str(tmp_path / "tiles"), "--val-fraction", "0.2")
    assert rc == 2 and "val is '" in err and "split the source, then tile it again" in err
    assert snapshot(tmp_path / "tiles") == before
