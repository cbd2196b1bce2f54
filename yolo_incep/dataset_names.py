"""Our dataset YAMLs by bare name (`data=VisDrone2019-DET.yaml`), as the plugin finds our model YAMLs: a leaf module
(standard library only), so that the plugin and the dataset reader share it without importing each other."""

from __future__ import annotations

from pathlib import Path

DATASET_YAMLS = Path(__file__).resolve().parent / "datasets"  # a link to the checkout's datasets/, a copy in wheels


def resolve_dataset_yaml(file):
    """Map a bare name like 'visdrone-sample.yaml' to our datasets/ when no local file has it. Ultralytics ships no
    dataset YAML of those names (ours are named apart from its own VisDrone.yaml), so its names resolve as before."""
    p = Path(str(file))
    if p.suffix in {".yaml", ".yml"} and len(p.parts) == 1 and not p.exists() and (DATASET_YAMLS / p.name).is_file():
        return str(DATASET_YAMLS / p.name)
    return file
