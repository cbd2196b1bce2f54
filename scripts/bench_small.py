#!/usr/bin/env python
"""Small-object benchmark on the shared VisDrone sample: the same as `yolo-incep bench` (yolo_incep/bench/).

    python scripts/bench_small.py --budget smoke|cpu|gpu [--arms ...] [--sitting-minutes 9]
"""

import sys

from yolo_incep import cli

if __name__ == "__main__":
    sys.exit(cli.main(["bench", *sys.argv[1:]]))
