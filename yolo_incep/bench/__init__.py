"""The small-object benchmark, apart from the product: `yolo-incep bench` (cli.py) on your data and models (study.py;
docs/bench.md) or the VisDrone presets, and the timed GPU sitting (sitting.py); docs/design.md, "The GPU sitting" and
"A study", says how its modules work together."""
