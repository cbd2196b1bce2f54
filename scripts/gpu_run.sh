#!/usr/bin/env bash
# On the GPU machine, from the checkout's root, with .gpu/ beside it (`make gpu-kit`): install the travelling wheels,
# then run one of the two commands; their files land in $OUT. README: "Running the benchmark on a GPU machine
# without network".
#   bash scripts/gpu_run.sh bench   # the grid in one sitting: at most 9 minutes, 3 files
#   bash scripts/gpu_run.sh speed   # training and inference speed ratios: at most ~3 minutes, 1 file
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/wheels/*.whl
export PYTHONPATH="$PWD:/tmp/site" PYTHONUNBUFFERED=1 YOLO_OFFLINE=1
export YOLO_INCEP_VISDRONE_SAMPLE="$PWD/.gpu/visdrone2019-det-sample"
OUT="${OUT:-runs/gpu-sitting}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
case "${1:-bench}" in
  bench) python3 -m yolo_incep.cli bench --budget gpu --work /tmp/sitting --out "$OUT" ;;
  speed) timeout 170 python3 scripts/bench_gpu_speed.py --device 0 --out "$OUT/gpu_speed.json" ;;
  *) echo "usage: bash scripts/gpu_run.sh bench|speed" >&2; exit 2 ;;
esac
