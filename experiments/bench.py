"""`yolo-incep bench` with the lab's grids: the CPU grid's ablation arms and the layer-scale study.

    python -m experiments.bench --budget cpu --arms yolov8n-p2 yolov8n-p2-narrowhead   # from the repository root
    python -m experiments.bench --budget study

Arguments are `yolo-incep bench`'s (yolo_incep/bench/cli.py); this only registers the lab's arms first.
"""

from __future__ import annotations

import sys

from yolo_incep import cli

from . import grids


def main(argv: list[str] | None = None) -> int:
    grids.register()
    return cli.main(["bench", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
