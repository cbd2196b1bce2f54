"""Teach Ultralytics about yolo_incep: layer names in model YAMLs, YAML lookup by name, fusing and safe loading.

Nothing needs to call this by hand: the `yolo_incep.pth` file that the package installs runs
`yolo_incep._bootstrap` at interpreter start-up, which calls `install` right after Ultralytics imports
`ultralytics.nn.tasks`. `install()` is idempotent and may also be called explicitly. A model YAML with no row of
ours is parsed by the stock parser alone, exactly as without the plugin.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import math
import re
import sys
import threading
from pathlib import Path
from types import ModuleType

from .errors import InputError

SUPPORTED_RANGE = ((8, 4, 0), (8, 5, 0))  # [lowest tested, first untested): `make test` and `make test-oldest`
SUPPORTED_TEXT = "ultralytics>=8.4.0,<8.5.0"
MODEL_YAMLS = Path(__file__).resolve().parent / "model_yamls"  # a link to the checkout's model_yamls/, a copy in wheels
_lock = threading.RLock()  # parse_model rebinds module globals of ultralytics.nn.tasks while it runs
_registered: dict[str, type] = {}  # layers from outside the package (register_layers), by name


def version_tuple(version: str) -> tuple[int, int, int]:
    """'8.4.190' -> (8, 4, 190); pre-release or local suffixes are ignored."""
    parts = [int(p) for p in re.findall(r"\d+", version)[:3]]
    return tuple(parts + [0] * (3 - len(parts)))  # type: ignore[return-value]


def is_supported(version: str) -> bool:
    """Whether this Ultralytics version is inside the tested range."""
    return SUPPORTED_RANGE[0] <= version_tuple(version) < SUPPORTED_RANGE[1]


def layer_classes() -> dict[str, type]:
    """Every layer a model YAML may name, by name: the package's own and those given to register_layers."""
    ynn = importlib.import_module("yolo_incep.nn")
    return {**{name: getattr(ynn, name) for name in ynn.__all__}, **_registered}


def register_layers(*classes: type) -> None:
    """Make layer classes defined outside the package (e.g. experiments/heads.py) known by their class names to
    model YAMLs (parsing, `swap`) and to checkpoint safe-loading. A class with a `mirror` attribute (the stock
    layer name it subclasses) is built with that layer's row handling, as ours are. Registering the same class
    again does nothing; a name taken by another layer is an error."""
    import torch

    taken = layer_classes()
    for cls in classes:
        if not isinstance(cls, type):
            raise TypeError(f"register_layers: expected classes, got {cls!r}")
        if taken.get(cls.__name__, cls) is not cls:
            raise ValueError(f"register_layers: the layer name {cls.__name__!r} is taken by "
                             f"{taken[cls.__name__].__module__}.{taken[cls.__name__].__qualname__}")
        taken[cls.__name__] = _registered[cls.__name__] = cls
    torch.serialization.add_safe_globals(list(classes))  # checkpoints holding them load with weights_only=True


def model_scale(d: dict) -> str:
    """The scale Ultralytics builds for a model dict: its `scale`, else the first of `scales`; '' without `scales`."""
    scales = d.get("scales") or {}
    return (d.get("scale") or next(iter(scales))) if scales else ""


def layer_rows(d: dict, source: str) -> list[list]:
    """The backbone then head rows of a model dict, each checked to be [from, repeats, module, args]."""
    rows = []
    for section in ("backbone", "head"):
        part = d.get(section)
        if not isinstance(part, list):
            raise InputError(f"{source}: no '{section}' list of layer rows: not an Ultralytics model YAML")
        for row in part:
            if not (isinstance(row, list) and len(row) == 4 and isinstance(row[2], str) and isinstance(row[3], list)):
                raise InputError(f"{source}: {section} row {len(rows)}: expected [from, repeats, module, args], "
                                 f"got {row!r}")
            rows.append(row)
    return rows


def _known_layer(name: str, tasks: ModuleType, ours: dict[str, type]) -> bool:
    """Whether parse_model resolves a row's layer name, as it resolves it (torch.nn., torchvision.ops., its own
    globals), or the name is one of `ours` (layer_classes())."""
    import torch
    import torchvision

    if name.startswith("nn."):
        return isinstance(getattr(torch.nn, name[3:], None), type)
    if name.startswith("torchvision.ops."):
        return isinstance(getattr(torchvision.ops, name[16:], None), type)
    return isinstance(tasks.__dict__.get(name), type) or name in ours


def _unknown_layer(source: str, i: int, name: str, tasks: ModuleType) -> InputError:
    """The error for row `i` naming an unknown layer, with the nearest names of ours or Ultralytics'."""
    known = [*layer_classes(), *(k for k, v in tasks.__dict__.items() if isinstance(v, type))]
    near = difflib.get_close_matches(name, known, n=2)
    hint = f"; did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
    return InputError(f"{source}: layer row {i}: unknown layer {name!r} (neither Ultralytics nor yolo_incep has it)"
                      f"{hint}")


def check_layer_names(d: dict, source: str) -> None:
    """Check that every row of a model dict names a layer that the parser can resolve, as parse_model resolves it."""
    from ultralytics.nn import tasks

    ours = layer_classes()
    for i, row in enumerate(layer_rows(d, source)):
        if not _known_layer(row[2], tasks, ours):
            raise _unknown_layer(source, i, row[2], tasks)


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


class _Parse:
    """One run of parse_model over a model dict with rows of ours: which row it is at, and what each row builds."""

    def __init__(self, yaml_file: str, keys: list[str], ours: dict[int, type]):
        self.yaml_file, self.keys, self.ours = yaml_file, keys, ours
        self.row: int | None = None  # set by _Cursor while parse_model is at a row

    def changed(self, what: str) -> RuntimeError:
        """The error for a parse_model whose shape no longer matches what the plugin relies on."""
        return RuntimeError(f"yolo_incep: {what} in ultralytics {_ultralytics_version()}'s parse_model while "
                            f"building {self.yaml_file}: its parser changed; yolo_incep supports {SUPPORTED_TEXT}")


class _Backbone(list):
    """The backbone rows handed to parse_model; `backbone + head`, the list it enumerates, is a _Cursor."""

    def __init__(self, rows: list, parse: _Parse):
        super().__init__(rows)
        self.parse = parse

    def __add__(self, head: list) -> _Cursor:
        return _Cursor([*self, *head], self.parse)


class _Cursor(list):
    """All rows of a model dict; iterating them sets `parse.row` to the index of the row being built."""

    def __init__(self, rows: list, parse: _Parse):
        super().__init__(rows)
        self.parse = parse

    def __iter__(self):
        for self.parse.row, row in enumerate(super().__iter__()):
            yield row
        self.parse.row = None


def _stand_in(key: str, base: type, parse: _Parse) -> type:
    """A subclass of `base` to bind to the name `key` in ultralytics.nn.tasks while parse_model runs.

    parse_model picks a row's channel, width and depth handling by the identity of the class its name resolves to;
    our rows are handed to it under the name of the stock block they mirror (`key`), so they get exactly that
    row's handling. Called, the stand-in builds what the current row names: our class, or the stock one.
    """

    def __new__(cls, *args, **kwargs):
        i = parse.row
        if i is None or parse.keys[i] != key:
            raise parse.changed(f"{key} was built outside its own row ({i})")
        for name in vars(cls).keys() - own:  # class attributes parse_model set through the name (Detect.legacy)
            setattr(base, name, vars(cls)[name])  # belong to the stock class, as they would without us
        target = parse.ours.get(i, base)
        cls.__module__, cls.__qualname__ = target.__module__, target.__qualname__  # parse_model records str(class)
        if target is base:
            return base(*args, **kwargs)
        try:
            return target(*args, **kwargs)
        except (TypeError, ValueError, RuntimeError, ZeroDivisionError) as e:
            raise InputError(f"{parse.yaml_file}: layer row {i} ({target.__name__}): bad arguments {list(args)}: {e}"
                             ) from e

    cls = type(f"_{key}Row", (base,), {"__new__": __new__})
    own = set(vars(cls)) | {"__module__", "__qualname__"}
    return cls


def _layer_scale(d: dict, yaml_file: str, default: float | None) -> float | None:
    """The model dict's `layer_scale:` as MetaNeXtBlock's ls_init_value (None: no layer scale), `default` if absent."""
    if "layer_scale" not in d:
        return default
    value = d["layer_scale"]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{yaml_file}: layer_scale: expected a number, or null / 0 for no layer scale; got {value!r}")
    return float(value) or None


def _resolve_per_scale_args(d: dict, rows: list, yaml_file: str) -> None:
    """Replace a row argument naming a top-level mapping of scale letters (e.g. `branch_ratio: {n: 0.25, s: 0.125}`)
    by its value at the scale being built, the way Ultralytics replaces `nc` by the class count."""
    scale = model_scale(d)
    per_scale = {k: v for k, v in d.items() if k not in {"scales", "backbone", "head"} and isinstance(v, dict)}
    for i, row in enumerate(rows):
        for j, a in enumerate(row[3]):
            if isinstance(a, str) and a in per_scale:
                if scale not in per_scale[a]:
                    raise InputError(f"{yaml_file}: layer row {i}: '{a}' has no value for scale {scale!r}")
                row[3][j] = per_scale[a][scale]


def _parse_ours(tasks: ModuleType, original, d: dict, ch, verbose: bool, rows: list, ours: dict[int, type]):
    """Run the stock parse_model over a model dict with rows of ours (by index), each given its mirror's treatment."""
    from torch import nn

    from .nn import MetaNeXtBlock

    yaml_file = d.get("yaml_file", "<model dict>")
    require_supported(f": refusing to build {yaml_file}, whose rows {sorted(ours)} use yolo_incep layers")
    _resolve_per_scale_args(d, rows, yaml_file)
    keys = [getattr(ours[i], "mirror", None) or ours[i].__name__ if i in ours else r[2] for i, r in enumerate(rows)]
    parse = _Parse(yaml_file, keys, ours)
    n_backbone = len(d["backbone"])
    renamed = [[f, n, key, args] for (f, n, _, args), key in zip(rows, keys)]  # the same args lists, as stock
    parsed = {**d, "backbone": _Backbone(renamed[:n_backbone], parse), "head": renamed[n_backbone:]}
    with _lock:
        bindings = {}
        for i, cls in ours.items():
            if keys[i] not in bindings:
                base = getattr(tasks, cls.mirror) if getattr(cls, "mirror", None) else cls
                bindings[keys[i]] = _stand_in(keys[i], base, parse)
        saved = {name: tasks.__dict__[name] for name in bindings if name in tasks.__dict__}
        ls_default = MetaNeXtBlock.ls_init_default
        MetaNeXtBlock.ls_init_default = _layer_scale(d, yaml_file, ls_default)  # for this parse, as `activation:`
        tasks.__dict__.update(bindings)
        try:
            model, save = original(parsed, ch, verbose)
        except (TypeError, ValueError, IndexError, ZeroDivisionError) as e:  # not KeyError: an unknown name, as stock
            if isinstance(e, InputError) or parse.row is None:
                raise
            # the stock parser's own arithmetic on a bad argument ('<' between int and str): name file, row, layer
            i = parse.row
            raise InputError(f"{yaml_file}: layer row {i} ({rows[i][2]}): bad arguments {rows[i][3]}: "
                             f"{type(e).__name__}: {e}") from e
        finally:
            for name in bindings:
                tasks.__dict__.pop(name)
            tasks.__dict__.update(saved)
            MetaNeXtBlock.ls_init_default = ls_default
    for i, cls in ours.items():  # what each row built: a parser that walks rows differently must not go unnoticed
        built = model[i] if isinstance(model[i], cls) or type(model[i]) is not nn.Sequential else model[i][0]
        if not isinstance(built, cls):
            raise parse.changed(f"row {i} built {type(built).__name__}, not {cls.__name__},")
    return model, save


def _wrap_parse_model(tasks: ModuleType, original):
    @functools.wraps(original)
    def parse_model(d, ch, verbose=True):
        source = d.get("yaml_file", "<model dict>")
        try:
            rows = layer_rows(d, source)
        except InputError:  # not a well-formed model dict: the stock parser reports it as it always has
            return original(d, ch, verbose)
        layers = layer_classes()
        ours = {i: layers[r[2]] for i, r in enumerate(rows) if r[2] in layers}
        for i, row in enumerate(rows):  # the stock parser's bare KeyError names neither file nor row
            # a YAML of ours (a row of ours), or a misspelling of one of ours: our error; else stock, untouched
            if not _known_layer(row[2], tasks, layers) and (ours or difflib.get_close_matches(row[2], layers, n=1)):
                raise _unknown_layer(source, i, row[2], tasks)
        if not ours:
            return original(d, ch, verbose)
        return _parse_ours(tasks, original, d, ch, verbose, rows, ours)

    parse_model.__wrapped_by_yolo_incep__ = True
    return parse_model


def _wrap_yaml_model_load(original):
    @functools.wraps(original)
    def yaml_model_load(path):
        return original(resolve_model_yaml(path))

    return yaml_model_load


def _wrap_check_file(original):
    from .dataset_names import resolve_dataset_yaml  # a leaf module: the data side uses it too

    @functools.wraps(original)
    def check_file(file, *args, **kwargs):
        return original(resolve_dataset_yaml(file), *args, **kwargs)

    return check_file


def _one_line_input_errors(previous):
    """A sys.excepthook printing an uncaught InputError (a YAML row of ours, our dataset's download step) as the one
    line it is, as `yolo-incep` does, through Ultralytics' own entry points (`yolo train`, a script's YOLO(...));
    every other exception goes to `previous`. The exit status stays Python's 1 for an uncaught exception."""

    def excepthook(kind, error, tb):
        if issubclass(kind, InputError):
            program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] not in ("", "-c", "-") else "python"
            print(f"{program}: error: {error}", file=sys.stderr, flush=True)
        else:
            previous(kind, error, tb)

    excepthook.__yolo_incep__ = True
    return excepthook


def _wrap_fuse(original):
    @functools.wraps(original)
    def fuse(self, *args, **kwargs):
        from .nn import MetaNeXtBlock

        for m in self.modules():  # fold our blocks first; Ultralytics then fuses its own Conv+BN pairs
            if isinstance(m, MetaNeXtBlock):
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
    if not getattr(sys.excepthook, "__yolo_incep__", False):
        sys.excepthook = _one_line_input_errors(sys.excepthook)
    from .train_metric import install_from_env  # here, not at module level: it is the only non-parsing part

    install_from_env()  # opt-in by $YOLO_INCEP_AP_SMALL: nothing happens (and no eval code loads) unless it is set
    # Our layers put themselves on torch's safe-load allow-list when imported; checkpoints may be loaded next. When
    # yolo_incep.nn is itself importing Ultralytics (and so us), this returns it half-imported and it finishes later.
    importlib.import_module("yolo_incep.nn")


def install_data(utils: ModuleType | None = None) -> None:
    """Patch `ultralytics.data.utils` (imported if not given) so that `data=` finds our dataset YAMLs by bare name,
    as `model=` finds our model YAMLs; safe to call repeatedly."""
    if utils is None:
        import ultralytics.data.utils as utils
    if getattr(utils, "__yolo_incep_installed__", False):
        return
    utils.__yolo_incep_installed__ = True
    utils.check_file = _wrap_check_file(utils.check_file)  # check_det_dataset looks its dataset name up through it


def require_supported(context: str = "") -> None:
    """Raise a clear error when the installed Ultralytics is outside the tested range."""
    version = _ultralytics_version()
    if not is_supported(version):
        raise ImportError(f"yolo_incep supports {SUPPORTED_TEXT}, found ultralytics {version}{context}")
