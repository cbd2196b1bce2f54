"""`yolo-incep convert FORMAT ...`: one converter module per source annotation format.

A converter is a module with `add_arguments(parser)` (its own arguments, after the format name) and `run(args)`;
the first line of its docstring is its help. Adding a format is that file and its line in FORMATS.
"""

from __future__ import annotations

import argparse
import importlib

FORMATS = {  # format name -> converter module
    "visdrone": "yolo_incep.data.visdrone",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`convert FORMAT`, then that format's arguments (`yolo-incep convert visdrone --help`)."""
    formats = parser.add_subparsers(dest="format", metavar="FORMAT", required=True,
                                    help=f"source annotation format: {', '.join(FORMATS)}")
    for name, module_name in FORMATS.items():
        module = importlib.import_module(module_name)
        help_ = (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else None
        sub = formats.add_parser(name, help=help_, description=help_)
        sub.set_defaults(converter=module)
        module.add_arguments(sub)


def run(args: argparse.Namespace) -> int:
    """Run the chosen format's converter."""
    return int(args.converter.run(args) or 0)
