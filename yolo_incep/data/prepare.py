"""Dataset preparation run by the `download:` steps of datasets/VisDrone2019-DET.yaml and datasets/visdrone-sample.yaml
(installed with the package: `data=VisDrone2019-DET.yaml` by name, see plugin.install_data)."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError
from .visdrone import convert_visdrone

VISDRONE_ZIPS = ["VisDrone2019-DET-train.zip", "VisDrone2019-DET-val.zip", "VisDrone2019-DET-test-dev.zip"]
SAMPLE_ENV = "YOLO_INCEP_VISDRONE_SAMPLE"
SAMPLE_DIR = Path("shared/data/visdrone2019-det-sample")  # beside the project checkout


def _has_sources(root: Path) -> bool:
    return any((root / z.removesuffix(".zip") / "annotations").is_dir() for z in VISDRONE_ZIPS)


def download_visdrone(root: Path) -> None:
    """Fetch the official VisDrone2019-DET zips into ROOT (unless unzipped there already), then convert in place."""
    root = Path(root)
    if not _has_sources(root):
        from ultralytics.utils import ASSETS_URL, is_online
        from ultralytics.utils.downloads import download

        if not is_online():  # an InputError: one line, also through `yolo train` (plugin's excepthook)
            raise InputError(
                f"VisDrone2019-DET is not in {root} and this machine is offline. Fetch "
                f"{', '.join(VISDRONE_ZIPS)} (from {ASSETS_URL} or https://github.com/VisDrone/VisDrone-Dataset), "
                f"unzip them into {root}, then run: yolo-incep convert visdrone {root} {root}")
        download([f"{ASSETS_URL}/{z}" for z in VISDRONE_ZIPS], dir=root, threads=3)
    # hard links (no second copy of the images): the linked originals are this download's own, kept for the
    # official toolkit, not the user's data; the conversion says so in its output
    convert_visdrone(root, root, link=True)


def find_sample(yaml_file: Path | str | None = None) -> Path:
    """The shared VisDrone sample: $YOLO_INCEP_VISDRONE_SAMPLE, else shared/data/... in a parent of the YAML (or us)."""
    if os.environ.get(SAMPLE_ENV):
        candidates = [Path(os.environ[SAMPLE_ENV])]
    else:
        start = Path(yaml_file or __file__).resolve().parent
        candidates = [p / SAMPLE_DIR for p in (start, *start.parents)]
    found = next((p for p in candidates if p.is_dir()), None)
    if found is None:
        raise InputError(f"VisDrone sample not found at {candidates[0]} (nor in a parent folder's {SAMPLE_DIR}); "
                         f"set {SAMPLE_ENV} to its path")
    return found


def prepare_sample(root: Path, yaml_file: Path | str | None = None, val_fraction: float = 0.2, seed: int = 0) -> Path:
    """Convert the shared sample into ROOT with a sequence-aware val split; returns ROOT/data.yaml."""
    convert_visdrone(find_sample(yaml_file), root, val_fraction=val_fraction, seed=seed)
    return Path(root) / "data.yaml"
