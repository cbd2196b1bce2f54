"""`yolo-incep swap`: rewrite an Ultralytics model YAML so its CSP/ELAN block rows use our Inception counterparts.

The counterparts come from the blocks themselves: every yolo_incep block that subclasses the stock block named in
its `mirror` is a drop-in for that block's rows (same arguments, same channel/width/depth handling).

Scale letters: Ultralytics reads the scale from the file name (`yolov8s.yaml` -> 's') and, for a name without
one, builds the first entry of `scales`. The output therefore lists the source's scale first: `swap yolov8s.yaml
-o my.yaml` builds at 's', while a name that carries a letter (`my-yolov8m.yaml`) still picks that scale.
"""

from __future__ import annotations

import argparse
import copy
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .data.common import atomic_write_bytes
from .errors import InputError, one_line, refuse_overwriting_input

SECTIONS = {"backbone": ("backbone",), "neck": ("head",), "all": ("backbone", "head")}  # Ultralytics' head = neck
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


def swap_dict(d: dict, where: str = "all", source: str = "<model dict>") -> SwapResult:
    """Return a copy of model dict `d` with convertible rows of the chosen sections replaced."""
    from .plugin import layer_rows

    if where not in SECTIONS:
        raise InputError(f"--where {where!r}: choose one of {', '.join(SECTIONS)}")
    table = counterparts()
    result = SwapResult(copy.deepcopy(d))
    rows = layer_rows(result.model, source)
    n_backbone = len(result.model["backbone"])
    for i, row in enumerate(rows):
        if ("backbone" if i < n_backbone else "head") in SECTIONS[where]:
            if row[2] in table:
                result.converted.append((i, row[2], table[row[2]]))
                row[2] = table[row[2]]
            elif row[2] in NO_COUNTERPART:
                result.unconvertible.append((i, row[2]))
    return result


def stock_twin(d: dict) -> dict:
    """A copy of model dict `d` with every Inception block row put back to the stock block it mirrors."""
    ours = {v: k for k, v in counterparts().items()}
    twin = copy.deepcopy(d)
    for row in twin["backbone"] + twin["head"]:
        row[2] = ours.get(row[2], row[2])
    return twin


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


def run(args: argparse.Namespace) -> int:
    """Convert, check that the result builds, write it atomically, print rows and params/GFLOPs before and after."""
    d, scale, resolved = load_source(args.source)
    refuse_overwriting_input(args.output, resolved)
    result = swap_dict(d, args.where, args.source)
    for i, name in result.unconvertible:
        print(f"not converted: row {i} {name} (no Inception counterpart)")
    if not result.converted:
        known = ", ".join(sorted(counterparts()))
        raise InputError(f"{args.source}: no convertible row in --where {args.where} (convertible: {known})")
    out = Path(args.output)
    header = [
        f"Generated by `yolo-incep swap {args.source} --where {args.where}` from {resolved}.",
    ]
    if scale and scale in (d.get("scales") or {}):
        header.append(f"Scale '{scale}' is listed first: it is built when this file's name has no scale letter.")
    notes = {i: f"(was {a})" for i, a, _ in result.converted}
    notes.update({i: "(kept: no Inception counterpart)" for i, _ in result.unconvertible})
    text = dump(scale_first(result.model, scale), header, notes)
    new = yaml.safe_load(text)  # build what is written, not what was meant
    before, after = build_stats(d, scale), build_stats(new, scale)
    atomic_write_bytes(out, text)
    for i, a, b in result.converted:
        print(f"converted: row {i} {a} -> {b}")
    label = f" (scale {scale})" if scale else ""
    print(f"before{label}: {before[0] / 1e6:.2f}M params, {before[1]:.1f} GFLOPs at 640  {resolved}")
    print(f"after{label}:  {after[0] / 1e6:.2f}M params, {after[1]:.1f} GFLOPs at 640  {out}")
    return 0
