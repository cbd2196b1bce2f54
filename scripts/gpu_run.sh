#!/usr/bin/env bash
# On the lent GPU machine, from the checkout's root, with .gpu/ beside it (`make gpu-kit`): install the travelling
# wheels, then the sitting (yolo_incep/bench/sitting.py): the GPU speed measurement (at most 2 minutes) while the
# data are prepared, then the grid; it ends by itself within MINUTES (default 8.5), its files in $OUT as they are
# written. README: "Running the benchmark on a GPU machine without network".
#   bash scripts/gpu_run.sh              # the sitting (give the command 10 minutes)
#   MINUTES=5 bash scripts/gpu_run.sh    # a rerun in what is left of the lease
#   bash scripts/gpu_run.sh speed        # the speed measurement alone, at most 2 minutes
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .gpu/wheels/*.whl
export PYTHONPATH="$PWD:/tmp/site" PYTHONUNBUFFERED=1 YOLO_OFFLINE=1
export YOLO_INCEP_VISDRONE_SAMPLE="$PWD/.gpu/visdrone2019-det-sample"
OUT="${OUT:-runs/gpu-sitting}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
case "${1:-bench}" in
  # the same scratch folder every time: a rerun finds and stops what an earlier sitting left running
  bench) exec python3 -m yolo_incep.cli bench --budget gpu --work /tmp/sitting --out "$OUT" \
           --minutes "${MINUTES:-8.5}" ;;
  speed) exec timeout 120 python3 -m yolo_incep.bench.gpu_speed --device 0 --out "$OUT/gpu_speed.json" --quiet ;;
  *) echo "usage: [MINUTES=N] bash scripts/gpu_run.sh [bench|speed]" >&2; exit 2 ;;
esac
