"""Teach Ultralytics about yolo_incep: layer names in model YAMLs, YAML lookup by name, fusing and safe loading.

Nothing needs to call this by hand: the `yolo_incep.pth` file that the package installs runs
`yolo_incep._bootstrap` at interpreter start-up, which calls `install` right after Ultralytics imports
`ultralytics.nn.tasks`. `install()` is idempotent and may also be called explicitly.
"""

from __future__ import annotations

import functools
import re
import sys
import threading
from pathlib import Path
from types import ModuleType

from .errors import InputError
from .train_metric import install_from_env as install_train_metric

SUPPORTED_RANGE = ((8, 4, 0), (8, 5, 0))  # [lowest tested, first untested): `make test` and `make test-oldest`
SUPPORTED_TEXT = "ultralytics>=8.4.0,<8.5.0"
MODEL_YAMLS = Path(__file__).resolve().parent / "model_yamls"  # a link to the checkout's model_yamls/, a copy in wheels
_lock = threading.RLock()  # parse_model rebinds module globals of ultralytics.nn.tasks while it runs


def version_tuple(version: str) -> tuple[int, int, int]:
    """'8.4.190' -> (8, 4, 190); pre-release or local suffixes are ignored."""
    parts = [int(p) for p in re.findall(r"\d+", version)[:3]]
    return tuple(parts + [0] * (3 - len(parts)))  # type: ignore[return-value]


def is_supported(version: str) -> bool:
    """Whether this Ultralytics version is inside the tested range."""
    return SUPPORTED_RANGE[0] <= version_tuple(version) < SUPPORTED_RANGE[1]


def layer_classes() -> dict[str, type]:
    """Every layer a model YAML may name, by name."""
    from . import nn as ynn

    return {name: getattr(ynn, name) for name in ynn.__all__}


def resolve_model_yaml(path):
    """Map a bare name like 'yolov8n-incep.yaml' to our model_yamls/ when neither it nor a local file matches."""
    p = Path(path)
    if p.suffix not in {".yaml", ".yml"} or len(p.parts) != 1 or p.exists():
        return path
    unified = re.sub(r"(\d+)([nslmx])(.+)?$", r"\1\3", p.name)  # the scale letter is dropped, as Ultralytics does
    for name in (p.name, unified):
        if (MODEL_YAMLS / name).is_file():
            return MODEL_YAMLS / p.name  # Ultralytics strips the scale from this path itself and keeps the letter
    return path


class _RowDispatch(type):
    """Metaclass of the stand-ins bound to a stock layer name (and our names) while parse_model runs.

    parse_model decides a row's channel, width and depth handling by the identity of the class its name resolves
    to. Binding a stand-in to both 'C2f' and 'C2fIncep' makes our rows take exactly the stock C2f path; the stand-in
    then builds the class the row actually names, found by the row index `i` of the running parse_model.
    """

    def __call__(cls, *args, **kwargs):
        frame = sys._getframe(1)
        while frame is not None and frame.f_code is not cls.parse_code:
            frame = frame.f_back
        i = frame.f_locals["i"] if frame is not None else None
        target = cls.rows.get(i, cls.stock)
        type.__setattr__(cls, "built", target)
        if target is cls.stock:
            return target(*args, **kwargs)
        try:
            return target(*args, **kwargs)
        except (TypeError, ValueError, RuntimeError, ZeroDivisionError) as e:
            name = target.__name__
            raise InputError(f"{cls.yaml_file}: layer row {i} ({name}): bad arguments {list(args)}: {e}") from e

    def __repr__(cls):
        return repr(cls.built)  # parse_model records str(m) as the layer type

    # parse_model also reads and sets class attributes through the name (Conv.default_act, Detect.legacy)
    def __getattr__(cls, name):
        return getattr(cls.stock, name)

    def __setattr__(cls, name, value):
        setattr(cls.stock, name, value)


def _stand_in(name: str, stock, rows: dict[int, type], parse_code, yaml_file: str):
    from torch import nn

    attrs = {"stock": stock, "rows": rows, "built": stock, "parse_code": parse_code, "yaml_file": yaml_file}
    return _RowDispatch(f"_{name}Row", (nn.Module,), attrs)


def _resolve_per_scale_args(d: dict, rows: list, yaml_file: str) -> None:
    """Replace a row argument naming a top-level mapping of scale letters (e.g. `branch_ratio: {n: 0.25, s: 0.125}`)
    by its value at the scale being built, the way Ultralytics replaces `nc` by the class count."""
    scales = d.get("scales") or {}
    scale = d.get("scale") or next(iter(scales), "")
    per_scale = {k: v for k, v in d.items() if k not in {"scales", "backbone", "head"} and isinstance(v, dict)}
    for i, row in enumerate(rows):
        if len(row) != 4 or not isinstance(row[3], list):
            continue
        for j, a in enumerate(row[3]):
            if isinstance(a, str) and a in per_scale:
                if scale not in per_scale[a]:
                    raise InputError(f"{yaml_file}: layer row {i}: '{a}' has no value for scale {scale!r}")
                row[3][j] = per_scale[a][scale]


def _wrap_parse_model(tasks: ModuleType, original):
    @functools.wraps(original)
    def parse_model(d, ch, verbose=True):
        layers = layer_classes()
        rows = list(d.get("backbone", [])) + list(d.get("head", []))
        ours = {i: layers[r[2]] for i, r in enumerate(rows) if len(r) == 4 and isinstance(r[2], str) and r[2] in layers}
        yaml_file = d.get("yaml_file", "<model dict>")
        _resolve_per_scale_args(d, rows, yaml_file)
        if ours:
            require_supported(f": refusing to build {yaml_file}, whose rows {sorted(ours)} use yolo_incep layers")
        with _lock:
            bindings = {}
            for name, cls in layers.items():
                mirror = getattr(cls, "mirror", None)
                key = mirror or name
                if key not in bindings:
                    mine = {i: c for i, c in ours.items() if (getattr(c, "mirror", None) or c.__name__) == key}
                    stock = getattr(tasks, mirror) if mirror else None
                    bindings[key] = _stand_in(key, stock, mine, original.__code__, yaml_file)
                bindings[name] = bindings[key]
            saved = {name: tasks.__dict__[name] for name in bindings if name in tasks.__dict__}
            tasks.__dict__.update(bindings)
            try:
                return original(d, ch, verbose)
            finally:
                for name in bindings:
                    tasks.__dict__.pop(name)
                tasks.__dict__.update(saved)

    parse_model.__wrapped_by_yolo_incep__ = True
    return parse_model


def _wrap_yaml_model_load(original):
    @functools.wraps(original)
    def yaml_model_load(path):
        return original(resolve_model_yaml(path))

    return yaml_model_load


def _wrap_fuse(original):
    @functools.wraps(original)
    def fuse(self, *args, **kwargs):
        for m in list(self.modules()):  # fold our blocks first; Ultralytics then fuses its own Conv+BN pairs
            if type(m).__module__.startswith("yolo_incep.") and callable(getattr(m, "fuse", None)):
                m.fuse()
        return original(self, *args, **kwargs)

    return fuse


def _ultralytics_version() -> str:
    import ultralytics

    return ultralytics.__version__


def install(tasks: ModuleType | None = None) -> None:
    """Patch `ultralytics.nn.tasks` (imported if not given) so that it knows our layers; safe to call repeatedly."""
    if tasks is None:
        import ultralytics.nn.tasks as tasks  # the import hook may already install us here
    if getattr(tasks, "__yolo_incep_installed__", False):
        return
    tasks.__yolo_incep_installed__ = True
    tasks.parse_model = _wrap_parse_model(tasks, tasks.parse_model)
    tasks.yaml_model_load = _wrap_yaml_model_load(tasks.yaml_model_load)
    tasks.BaseModel.fuse = _wrap_fuse(tasks.BaseModel.fuse)
    install_train_metric()  # opt-in by $YOLO_INCEP_AP_SMALL: nothing happens unless it is set
    ynn = sys.modules.get("yolo_incep.nn")
    if ynn is None or hasattr(ynn, "__all__"):  # else yolo_incep.nn is importing us: it registers when complete
        register_layers()


def register_layers() -> None:
    """Make our layer names resolvable in ultralytics.nn.tasks and loadable under ULTRALYTICS_SAFE_LOAD=1."""
    tasks = sys.modules.get("ultralytics.nn.tasks")
    if tasks is None:  # install() registers once Ultralytics' parser is imported
        return
    layers = layer_classes()
    tasks.__dict__.update(layers)  # names resolve outside parse_model too

    import torch
    from torchvision.ops import StochasticDepth

    # safe loading unpickles with weights_only=True: our classes must be on torch's allow-list before any load
    torch.serialization.add_safe_globals([*layers.values(), StochasticDepth])


def require_supported(context: str = "") -> None:
    """Raise a clear error when the installed Ultralytics is outside the tested range."""
    version = _ultralytics_version()
    if not is_supported(version):
        raise ImportError(f"yolo_incep supports {SUPPORTED_TEXT}, found ultralytics {version}{context}")
