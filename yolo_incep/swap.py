"""`yolo-incep swap`: rewrite an Ultralytics model YAML so its CSP/ELAN block rows use our Inception counterparts.

The counterparts come from the blocks themselves: every yolo_incep block that subclasses the stock block named in
its `mirror` is a drop-in for that block's rows (same arguments, same channel/width/depth handling). Which rows
convert is a rule (RULES): by default p45, the measured design, which needs each row's stride: the stock model is
built once and every row's output map measured (row_strides), so any YAML's layout is read as Ultralytics builds it.

Scale letters: Ultralytics reads the scale from the file name (`yolov8s.yaml` -> 's') and, for a name without
one, builds the first entry of `scales`. The output therefore lists the source's scale first: `swap yolov8s.yaml
-o my.yaml` builds at 's', while a name that carries a letter (`my-yolov8m.yaml`) still picks that scale.
"""

from __future__ import annotations

import argparse
import copy
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .files import atomic_write_bytes, path_lock
from .errors import InputError, one_line, refuse_overwriting_input

SECTIONS = {"backbone": ("backbone",), "neck": ("head",), "all": ("backbone", "head")}  # Ultralytics' head = neck
# Which convertible rows become Inception rows. p45 (the default): backbone blocks at stride 16 and deeper only. The
# CPU protocol (yolov8n, 1,776 steps) found stride-8 Inception blocks costing P2 models AP_small (-0.003 [-0.006,
# -0.001], 3 seeds) and strides 16-32 under the stock head costing nothing measurable (-0.000 [-0.002, +0.002]), and
# stride-4 blocks are slower on CPU; on yolo26n every converted row adds CPU latency (model_yamls/yolo26-incep.yaml).
RULES = {"p45": "backbone block rows at strides 16-32 (and deeper)", "all": "every convertible row of --where"}
P45_MIN_STRIDE = 16
# Stock blocks with inner bottlenecks or attention that have no Inception counterpart (yet): reported, kept.
NO_COUNTERPART = frozenset(
    {"Bottleneck", "BottleneckCSP", "C1", "C2", "C2fAttn", "C2fCIB", "C2fPSA", "C2PSA", "C3Ghost", "C3TR", "C3x",
     "RepC3", "A2C2f", "GhostBottleneck", "HGBlock", "ResNetLayer"}
)


def counterparts() -> dict[str, str]:
    """Stock block name -> the yolo_incep block that is a drop-in for its rows (heads are not blocks: kept)."""
    from ultralytics.nn import tasks
    from ultralytics.nn.modules import Detect

    from .plugin import layer_classes

    out = {}
    for name, cls in layer_classes().items():
        stock = getattr(tasks, getattr(cls, "mirror", "") or "", None)
        # DetectIncep is chosen by YAML, not by swap: a new head shares no weights with the source's Detect
        if isinstance(stock, type) and issubclass(cls, stock) and not issubclass(stock, Detect):
            out[stock.__name__] = name
    return out


@dataclass
class SwapResult:
    """The rewritten model dict and what happened to each block row."""

    model: dict
    converted: list[tuple[int, str, str]] = field(default_factory=list)  # (row, stock name, our name)
    unconvertible: list[tuple[int, str]] = field(default_factory=list)  # (row, stock name)
    kept: list[tuple[int, str, int]] = field(default_factory=list)  # (row, stock name, stride): left stock by the rule


def swap_dict(d: dict, where: str = "all", source: str = "<model dict>", rule: str = "all",
              scale: str = "") -> SwapResult:
    """Return a copy of model dict `d` with the convertible rows of the chosen sections that `rule` picks replaced
    (`scale`: the scale the p45 rule builds `d` at to find each row's stride)."""
    from .plugin import layer_rows

    if where not in SECTIONS:
        raise InputError(f"--where {where!r}: choose one of {', '.join(SECTIONS)}")
    if rule not in RULES:
        raise InputError(f"--rule {rule!r}: choose one of {', '.join(RULES)}")
    table = counterparts()
    result = SwapResult(copy.deepcopy(d))
    rows = layer_rows(result.model, source)
    n_backbone = len(result.model["backbone"])
    strides = row_strides(d, scale) if rule == "p45" else [None] * len(rows)
    for i, row in enumerate(rows):
        if ("backbone" if i < n_backbone else "head") in SECTIONS[where]:
            if row[2] in table and rule == "p45" and (i >= n_backbone or (strides[i] or 0) < P45_MIN_STRIDE):
                result.kept.append((i, row[2], strides[i]))
            elif row[2] in table:
                result.converted.append((i, row[2], table[row[2]]))
                row[2] = table[row[2]]
            elif row[2] in NO_COUNTERPART:
                result.unconvertible.append((i, row[2]))
    return result


def row_strides(d: dict, scale: str = "") -> list[int | None]:
    """Output stride of every row of model dict `d` built at `scale` (None for a row whose output is not one map)."""
    import torch
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel({**copy.deepcopy(d), "scale": scale} if scale else copy.deepcopy(d), verbose=False).eval()
    size = 2 * int(max(model.stride.tolist()))
    strides: list[int | None] = []
    hooks = [m.register_forward_hook(lambda m, i, o: strides.append(
        size // o.shape[-1] if isinstance(o, torch.Tensor) and o.ndim == 4 else None)) for m in model.model]
    try:
        with torch.no_grad():
            model(torch.zeros(1, model.yaml.get("channels", 3), size, size))
    finally:
        for h in hooks:
            h.remove()
    return strides


def stock_twin(d: dict) -> dict:
    """A copy of model dict `d` with every Inception block row put back to the stock block it mirrors."""
    ours = {v: k for k, v in counterparts().items()}
    twin = copy.deepcopy(d)
    for row in twin["backbone"] + twin["head"]:
        row[2] = ours.get(row[2], row[2])
    return twin


def stock_file(stem: str, twin: dict, scale: str) -> str | None:
    """The stock Ultralytics file (with the scale letter) whose rows equal the twin's of zoo YAML `stem`, if there is
    one (the zoo table's counterpart column)."""
    from ultralytics.nn.tasks import yaml_model_load

    from .plugin import layer_rows

    name = stem.replace("-incep", "", 1) + ".yaml"
    try:
        stock = yaml_model_load(name)
    except FileNotFoundError:
        return None
    if layer_rows(stock, name) != layer_rows(twin, stem):
        return None
    return re.sub(r"^(yolo(?:v)?\d+)", rf"\g<1>{scale}", name[:-5]) if stock.get("scales") else name[:-5]


def scale_first(d: dict, scale: str) -> dict:
    """`d` with `scale` moved to the front of `scales`, so a name without a scale letter builds at it."""
    scales = d.get("scales")
    if not scale or not isinstance(scales, dict) or scale not in scales:
        return d
    return {**d, "scales": {scale: scales[scale], **{k: v for k, v in scales.items() if k != scale}}}


def dump(d: dict, header: list[str], notes: dict[int, str]) -> str:
    """YAML text in Ultralytics' layout: one flow-style row per line, each with its index (and note) as comment."""

    def flow(value) -> str:  # dumped inside a list: a bare scalar would get a document-end marker
        return yaml.safe_dump([value], default_flow_style=True, width=10**9, sort_keys=False).strip()[1:-1]

    lines = [f"# {h}" for h in header] + [""]
    for key, value in d.items():  # settings: scalars inline, mappings (scales) one entry a line
        if key in ("backbone", "head"):
            continue
        if isinstance(value, dict):
            lines += [f"{flow(key)}:"] + [f"  {flow(k)}: {flow(v)}" for k, v in value.items()]
        else:
            lines.append(f"{flow(key)}: {flow(value)}")
    i = 0
    for section in ("backbone", "head"):
        lines += ["", f"{section}:"]
        for row in d[section]:
            lines.append(f"  - {flow(row)} # {i}{' ' + notes[i] if i in notes else ''}")
            i += 1
    return "\n".join(lines) + "\n"


def load_source(src: str) -> tuple[dict, str, str]:
    """Model dict, scale letter and resolved path of a YAML name or path, looked up as Ultralytics does; the dict's
    rows are checked to be rows of layers that Ultralytics or yolo_incep knows."""
    from ultralytics.nn.tasks import yaml_model_load

    from .plugin import check_layer_names, model_scale

    if Path(src).suffix not in {".yaml", ".yml"}:
        raise InputError(f"{src}: not a model YAML (expected a .yaml or .yml file or name)")
    try:
        d = yaml_model_load(src)
    except FileNotFoundError as e:
        raise InputError(f"{src}: no such model YAML (neither a file nor an Ultralytics / yolo-incep name)") from e
    except (ValueError, yaml.YAMLError) as e:  # Ultralytics' reasons: not YAML, not a mapping
        raise InputError(f"{src}: not a model YAML ({one_line(e)})") from e
    if not isinstance(d, dict):
        raise InputError(f"{src}: not a model YAML (top level is not a mapping)")
    resolved, scale = d.pop("yaml_file", src), model_scale(d)
    d.pop("scale", None)  # from the file name; the output's scale comes from its own name (see the module text)
    check_layer_names(d, src)
    return d, scale, resolved


def build_stats(d: dict, scale: str) -> tuple[int, float]:
    """Parameters and GFLOPs at 640 of a model dict built at `scale`."""
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils.torch_utils import get_flops

    model = DetectionModel({**copy.deepcopy(d), "scale": scale}, verbose=False)
    return sum(p.numel() for p in model.parameters()), get_flops(model, 640)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """CLI arguments of `yolo-incep swap`."""
    parser.add_argument("source", help="model YAML: a file, or a name like yolov8s.yaml / yolo11n.yaml / yolov9c.yaml")
    parser.add_argument("-o", "--output", required=True, help="YAML file to write")
    parser.add_argument("--where", choices=tuple(SECTIONS), default="all",
                        help="rows to convert: backbone, neck (the YAML's head section) or all (default)")
    parser.add_argument("--rule", choices=tuple(RULES), default="p45",
                        help="p45 (default): only backbone block rows at strides 16-32, the measured design (stride-8 "
                             "blocks cost P2 models small-object AP, stride-4 ones CPU time); all: every convertible "
                             "row of --where")


def _unified(name: str) -> str:
    """A model YAML name without its scale letter, as Ultralytics looks it up (yolov8n-p2.yaml -> yolov8-p2.yaml)."""
    return re.sub(r"(\d+)([nslmx])(.+)?$", r"\1\3", name)


def shadowed(name: str) -> str | None:
    """Whose model a file called `name` would replace for YOLO(name) run from its folder: None when nobody's."""
    import ultralytics

    from .plugin import MODEL_YAMLS

    names = {name, _unified(name)}
    if any((MODEL_YAMLS / n).is_file() for n in names):
        return "yolo-incep's zoo model"
    if any(p.name in names for p in (Path(ultralytics.__file__).parent / "cfg" / "models").rglob("*.y*ml")):
        return "Ultralytics' model"
    return None


def zoo_note(source: str, model: dict) -> str | None:
    """A note when a stock source name has a zoo model (yolov8n.yaml -> yolov8n-incep.yaml) with other rows than
    `model`, the swapped dict: users take one for the other."""
    from ultralytics.nn.tasks import yaml_model_load

    from .plugin import MODEL_YAMLS

    p = Path(source)
    name = f"{p.stem}-incep{p.suffix}"
    if p.exists() or len(p.parts) != 1 or not any((MODEL_YAMLS / n).is_file() for n in (name, _unified(name))):
        return None
    zoo = yaml_model_load(name)
    if [r[:4] for r in zoo["backbone"] + zoo["head"]] == [r[:4] for r in model["backbone"] + model["head"]]:
        return None
    return (f"note: this is not the zoo's {name}, whose rows differ (a design of its own, not a swap); for that "
            f"model use YOLO('{name}')")


def run(args: argparse.Namespace) -> int:
    """Convert, check that the result builds, write it atomically, print rows and params/GFLOPs before and after."""
    with path_lock(Path(args.output), flag="--output"):  # one writer per output file (a lock beside it: its folder
        try:                                                # stays free)
            return _swap(args)
        except InputError as e:  # the plugin names a model dict built from the source by the source's name
            if not str(e).startswith("<model dict>: "):
                raise
            raise InputError(f"{args.source}: {str(e).removeprefix('<model dict>: ')}") from e
        except (TypeError, ValueError, IndexError, ZeroDivisionError):  # the stock parser on a bad row argument
            name_bad_row(args.source)
            raise


def name_bad_row(source: str) -> None:
    """Raise the plugin's InputError naming file, row and layer of a bad row argument in `source`, if it finds one.

    The stock parser names nothing (`'<' not supported between 'float' and 'str'`); with every convertible row
    swapped the plugin's parser, which tracks its row, builds the same rows and names the one at fault."""
    from ultralytics.nn.tasks import DetectionModel

    d, scale, _ = load_source(source)
    probe = swap_dict(d, "all", source)
    if probe.converted:
        DetectionModel({**probe.model, "scale": scale, "yaml_file": source}, verbose=False)


def _swap(args: argparse.Namespace) -> int:
    d, scale, resolved = load_source(args.source)
    refuse_overwriting_input(args.output, resolved)
    if owner := shadowed(Path(args.output).name):
        raise InputError(f"--output {args.output}: is the name of {owner}; a file of that name replaces it for "
                         f"YOLO('{Path(args.output).name}') run from its folder: choose another name, e.g. "
                         f"my-{Path(args.output).name}")
    result = swap_dict(d, args.where, args.source, args.rule, scale)
    for i, name in result.unconvertible:
        print(f"not converted: row {i} {name} (no Inception counterpart)")
    for i, name, stride in result.kept:
        print(f"kept stock: row {i} {name} (stride {stride}{' neck' if i >= len(d['backbone']) else ''}; "
              f"--rule p45 converts backbone rows at strides 16-32, --rule all every row)")
    if not result.converted:
        known = ", ".join(sorted(counterparts()))
        raise InputError(f"{args.source}: no convertible row in --where {args.where} with --rule {args.rule} "
                         f"(convertible: {known}; --rule p45 converts only backbone rows at strides 16-32)")
    out = Path(args.output)
    header = [
        f"Generated by `yolo-incep swap {args.source} --where {args.where} --rule {args.rule}` from {resolved}.",
    ]
    if scale and scale in (d.get("scales") or {}):
        header.append(f"Scale '{scale}' is listed first: it is built when this file's name has no scale letter.")
    notes = {i: f"(was {a})" for i, a, _ in result.converted}
    notes.update({i: "(kept: no Inception counterpart)" for i, _ in result.unconvertible})
    notes.update({i: f"(kept by --rule {args.rule}: stride {stride})" for i, _, stride in result.kept})
    text = dump(scale_first(result.model, scale), header, notes)
    new = yaml.safe_load(text)  # build what is written, not what was meant
    before, after = build_stats(d, scale), build_stats(new, scale)
    atomic_write_bytes(out, text)
    for i, a, b in result.converted:
        print(f"converted: row {i} {a} -> {b}")
    label = f" (scale {scale})" if scale else ""
    print(f"before{label}: {before[0] / 1e6:.2f}M params, {before[1]:.1f} GFLOPs at 640  {resolved}")
    print(f"after{label}:  {after[0] / 1e6:.2f}M params, {after[1]:.1f} GFLOPs at 640  {out}")
    if note := zoo_note(args.source, new):
        print(note)
    return 0
