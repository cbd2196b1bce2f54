"""`yolo-incep` command line: one subcommand per module, imported only when chosen (start-up stays fast)."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading

from .errors import InputError

# name -> (module defining add_arguments(parser) and run(args) -> int, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("yolo_incep.demo", "train and compare yolov8n-incep vs yolov8n on an embedded synthetic dataset"),
    "convert": ("yolo_incep.data.convert", "convert annotations to YOLO labels (formats: visdrone)"),
    "split": ("yolo_incep.data.split", "split a converted dataset into train/val by sequence id"),
    "tile": ("yolo_incep.data.tile", "slice images and labels into overlapping tiles"),
    "compare": ("yolo_incep.eval.compare", "COCO-style AP / AP_small of several models on one dataset"),
    "swap": ("yolo_incep.swap", "rewrite an Ultralytics model YAML to use Inception blocks"),
    "load-weights": ("yolo_incep.weights", "load InceptionNeXt ImageNet weights into a model's backbone"),
    "bench": ("yolo_incep.bench.cli", "models x seeds with equal steps on your data (or the VisDrone presets), compared"),
}


def _usage() -> str:
    lines = ["usage: yolo-incep COMMAND [ARGS...]   (yolo-incep COMMAND --help for its arguments)", "", "commands:"]
    lines += [f"  {name:<14}{help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a subcommand; bad input ends with a one-line error and exit status 2, never a traceback."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    if argv[0] in {"-V", "--version"}:
        from . import __version__

        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"yolo-incep: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, help_ = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"yolo-incep {name}", description=help_)
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    main_thread = threading.current_thread() is threading.main_thread()  # where Python lets a handler be set
    previous = signal.signal(signal.SIGTERM, _terminated) if main_thread else None  # `kill`: as Ctrl-C, so writers
    # clean up (a dataset's consistency never depends on it: SIGKILL gives no chance, see data/journal.py)
    try:
        return int(module.run(args) or 0)
    except InputError as e:
        print(f"yolo-incep {name}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # stdout closed early (`| head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes at exit
        return 141
    except OSError as e:  # a file that cannot be read or written (read-only folder, full disk): the user's to fix
        if e.filename is None:
            raise
        print(f"yolo-incep {name}: error: {e.filename}: {e.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"yolo-incep {name}: interrupted", file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's KeyboardInterrupt would be (a KeyboardInterrupt, so handled alike)."""


def _terminated(signum, frame):
    raise Terminated


if __name__ == "__main__":
    sys.exit(main())
