"""The small-object benchmark, apart from the product: `yolo-incep bench` (cli.py) and the timed GPU sitting
(sitting.py); docs/design.md, "The GPU sitting", says how its modules work together."""
