"""Run a script of scripts/ with the lab registered, so that it takes the lab's model YAMLs.

    python -m experiments.script scripts/bench_models.py \
        --pairs yolov8n-p2.yaml experiments/model_yamls/yolov8n-p2-narrowhead.yaml
"""

from __future__ import annotations

import runpy
import sys

from . import models


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for name in models.MODELS:  # the YAMLs are written from the table on demand
        models.write(name)
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
