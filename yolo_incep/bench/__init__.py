"""The small-object benchmark and the speed benchmarks, apart from the product: `yolo-incep bench` (cli.py), the timed
GPU sitting (sitting.py), compare_speed.py; docs/design.md, "The GPU sitting", says how its modules work together."""
