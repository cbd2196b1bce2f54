"""The small-object benchmark, apart from the product: grids of arms x seeds trained under one budget and compared
with intervals (`yolo-incep bench`), and the timed GPU sitting that trains a grid at once on a lent machine.

    grids.py       the grids (arms x seeds) and how the lab adds its own
    runs.py        one run's life: data, training, resuming, keeping its predictions
    report.py      the comparison of kept runs and its bench.json
    cli.py         `yolo-incep bench`: resumable grids, the GPU sitting, `--from` its files
    machine.py     the lent GPU machine's one profile: packages, wheels, limits; the rehearsal's import and
                   network blocks
    resources.py   what this machine reports now, and the plan of runs, threads, loader workers and caches from it
    supervisor.py  processes of one sitting: started, streamed, bounded, stopped, found again after a crash
    steps.py       one step count for runs side by side: progress reports, timing, the plan, trainer callbacks
    sitting.py     the GPU sitting: speed measurement, timing, the plan, bounds, outputs as they happen
    worker.py      one run of the sitting in its own process
    gpu_speed.py   training and inference speed ratios on the GPU (the sitting's first minutes)
"""
