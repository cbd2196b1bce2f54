"""Load InceptionNeXt ImageNet weights (a local timm or official checkpoint file) into a model's InceptionNeXt rows.

timm's names map onto YOLO rows by prefix: `stem.` -> the InceptionNeXtStem row, `stages.N.` -> the N-th
InceptionNeXtStage row. The classifier head (`head.*`) has no place in a detector and is reported as ignored.
"""

from __future__ import annotations

import argparse
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .files import atomic_path, path_lock
from .errors import InputError, one_line, refuse_overwriting_input

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # what timm's inception_next was trained on; YOLO feeds RGB in [0, 1]
IMAGENET_STD = (0.229, 0.224, 0.225)
TIMM_BN_EPS = 1e-5  # the eps the checkpoint's BatchNorms were trained with; Ultralytics builds models with 1e-3
_WRAPPERS = ("state_dict", "model", "module")  # official / training-script checkpoints nest the state dict
_FEATURES_ONLY = re.compile(r"^(stem|stages)_(\d+)\.")  # timm features_only models flatten `stages.1` to `stages_1`


@dataclass
class LoadReport:
    """What a checkpoint load did, by model key (matched, missing, mismatched) or checkpoint key (the rest)."""

    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # backbone keys the checkpoint has no value for
    unexpected: list[str] = field(default_factory=list)  # checkpoint keys with no backbone row to go to
    mismatched: list[str] = field(default_factory=list)  # same name, other shape (another variant): not loaded
    ignored: list[str] = field(default_factory=list)  # the ImageNet classifier head
    folded_norm: bool = False

    def __str__(self) -> str:
        lines = [
            f"matched {len(self.matched)}, missing {len(self.missing)}, unexpected {len(self.unexpected)}, "
            f"shape-mismatched {len(self.mismatched)}, ignored (classifier head) {len(self.ignored)}"
        ]
        for name in ("missing", "unexpected", "mismatched"):
            keys = getattr(self, name)
            if keys:
                lines.append(f"  {name}: {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}")
        if self.folded_norm:
            lines.append("  ImageNet mean/std folded into the stem conv (the model takes YOLO's [0, 1] RGB input)")
        return "\n".join(lines)


def _unreadable(path: Path, e: Exception) -> InputError:
    """Say what a file that torch cannot load as plain tensors is, as far as that can be told."""
    with open(path, "rb") as f:
        head = f.read(4096)
    if not head:
        return InputError(f"{path}: empty file, not a checkpoint")
    if b"\0" not in head:
        try:
            head.decode("utf-8")
            return InputError(f"{path}: a text file, not a PyTorch/safetensors checkpoint")
        except UnicodeDecodeError:
            pass
    if zipfile.is_zipfile(path):
        try:
            classes = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # noqa: BLE001 - a damaged archive: the load error below says so
            classes = []
        if any(c.startswith("ultralytics.") for c in classes):
            return InputError(f"{path}: an Ultralytics model checkpoint, not InceptionNeXt ImageNet weights (give it "
                              "as the model argument; the weights argument takes a timm / official state dict)")
        if classes:
            return InputError(f"{path}: holds objects other than tensors ({', '.join(classes[:3])}"
                              f"{' ...' if len(classes) > 3 else ''}), not a state dict")
    return InputError(f"{path}: not a readable PyTorch/safetensors checkpoint ({one_line(e)})")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file (.pth/.pt/.bin or .safetensors), unwrapped and with timm's canonical names."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such checkpoint file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any unreadable file is the user's input at fault
        raise _unreadable(path, e) from e
    while isinstance(sd, dict) and not any(isinstance(v, torch.Tensor) for v in sd.values()):
        inner = next((sd[k] for k in _WRAPPERS if isinstance(sd.get(k), dict)), None)
        if inner is None:
            break
        sd = inner
    if not isinstance(sd, dict) or not sd:
        raise InputError(f"{path}: holds no state dict (expected a mapping of parameter names to tensors)")
    return {_FEATURES_ONLY.sub(r"\1.\2.", k.removeprefix("module.")): v for k, v in sd.items()
            if isinstance(v, torch.Tensor)}


def backbone_prefixes(net: nn.Module) -> dict[str, str]:
    """timm prefix -> model prefix, for the InceptionNeXt stem and stage rows of a DetectionModel."""
    from .nn import InceptionNeXtStage, InceptionNeXtStem

    rows = list(getattr(net, "model", []))
    stems = [i for i, m in enumerate(rows) if isinstance(m, InceptionNeXtStem)]
    stages = [i for i, m in enumerate(rows) if isinstance(m, InceptionNeXtStage)]
    if len(stems) != 1 or not stages:
        raise InputError(
            f"model has {len(stems)} InceptionNeXtStem and {len(stages)} InceptionNeXtStage rows, needs 1 and >= 1: "
            "build it from an InceptionNeXt backbone YAML such as yolov8n-inceptionnext.yaml"
        )
    return {"stem.": f"model.{stems[0]}.", **{f"stages.{n}.": f"model.{i}." for n, i in enumerate(stages)}}


def fold_input_norm(conv: nn.Conv2d, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> None:
    """Make `conv(x)` equal the old `conv((x - mean) / std)`; exact because the stem conv has no padding."""
    m = torch.tensor(mean, dtype=conv.weight.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=conv.weight.dtype).view(1, -1, 1, 1)
    with torch.no_grad():
        shift = (conv.weight * m / s).sum(dim=(1, 2, 3))
        conv.weight.div_(s)
        conv.bias.sub_(shift)


def load_backbone_weights(model, path: str | Path, fold_imagenet_norm: bool = True) -> LoadReport:
    """Load an InceptionNeXt checkpoint into `model` (a `YOLO` or `DetectionModel`); return what matched.

    With `fold_imagenet_norm`, ImageNet's input normalisation is folded into the stem conv, so the backbone fed
    Ultralytics' [0, 1] RGB images computes what timm computes on normalised ones. The backbone's BatchNorms get
    timm's eps back; note that Ultralytics' trainer rebuilds the model, which resets every BatchNorm eps to 1e-3.
    A `YOLO` is marked as loaded from weights, so `model.train()` starts from them (unless `pretrained=False`).
    """
    from ultralytics.engine.model import Model

    net = model.model if isinstance(model, Model) else model  # YOLO wraps a DetectionModel
    if not isinstance(net, nn.Module):  # YOLO("x.txt") keeps the path as its model
        raise InputError(f"expected a YOLO or DetectionModel built from a model YAML or .pt, got {model!r} holding "
                         f"{net!r}")
    prefixes = backbone_prefixes(net)
    own = net.state_dict()
    report, update = LoadReport(), {}
    for key, value in read_state_dict(path).items():
        prefix = next((p for p in prefixes if key.startswith(p)), None)
        if prefix is None:
            (report.ignored if key.startswith("head.") else report.unexpected).append(key)
            continue
        target = prefixes[prefix] + key[len(prefix):]
        if target not in own:
            report.unexpected.append(key)
        elif own[target].shape != value.shape:
            report.mismatched.append(f"{target} {tuple(value.shape)}->{tuple(own[target].shape)}")
        else:
            update[target] = value
            report.matched.append(target)
    if not any(v.is_floating_point() and v.ndim for v in update.values()):  # BN step counters alone are no match
        counters = f", only {len(report.matched)} BatchNorm step counters" if report.matched else ""
        raise InputError(f"{path}: no weight of the model's InceptionNeXt backbone is in this checkpoint{counters} "
                         f"({' '.join(str(report).split())})")
    targets = tuple(prefixes.values())
    report.missing = [k for k in own if k.startswith(targets) and k not in update]
    net.load_state_dict(update, strict=False)
    for prefix in targets:  # the loaded statistics are only exact with the eps they were computed for
        for m in net.get_submodule(prefix[:-1]).modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eps = TIMM_BN_EPS
    stem_conv = net.model[int(prefixes["stem."].split(".")[1])][0]
    if fold_imagenet_norm and f"{prefixes['stem.']}0.weight" in update and stem_conv.in_channels == 3:
        fold_input_norm(stem_conv)
        report.folded_norm = True
    if net is not model:
        model.load(net)  # Ultralytics' own way to say "train from this module's weights"
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """CLI arguments of `yolo-incep load-weights`."""
    parser.add_argument("model", help="model YAML (e.g. yolov8n-inceptionnext.yaml) or .pt with InceptionNeXt rows")
    parser.add_argument("weights", help="local timm / official InceptionNeXt checkpoint (.pth, .pt, .safetensors)")
    parser.add_argument("-o", "--output", required=True, help="Ultralytics checkpoint to write (.pt)")
    parser.add_argument("--no-fold-norm", action="store_true",
                        help="keep the stem as in the checkpoint (inputs must then be ImageNet-normalised)")


def _load_model(name: str):
    """The YOLO a model argument names: a model YAML (checked as `swap` checks it) or an Ultralytics checkpoint."""
    from ultralytics import YOLO

    suffix = Path(name).suffix
    if suffix in {".yaml", ".yml"}:
        from .swap import load_source

        load_source(name)
        return YOLO(name, task="detect")
    if suffix != ".pt":
        raise InputError(f"model {name}: expected a model YAML (.yaml) or an Ultralytics checkpoint (.pt)")
    if not Path(name).is_file():
        raise InputError(f"model {name}: no such checkpoint file")
    try:
        return YOLO(name, task="detect")
    except Exception as e:  # Ultralytics' own reasons a checkpoint does not load, often several lines long
        raise InputError(f"model {name}: not a loadable Ultralytics checkpoint ({one_line(e)})") from e


def run(args: argparse.Namespace) -> int:
    """Build the model, load the backbone, print the report and save a checkpoint `yolo train model=` accepts."""
    out = Path(args.output)
    if out.suffix != ".pt":
        raise InputError(f"--output {out}: must end in .pt (an Ultralytics checkpoint)")
    refuse_overwriting_input(out, args.weights, args.model)
    with path_lock(out, flag="--output"):  # one writer per output file (a lock beside it: its folder stays free)
        return _write(args, out)


def _write(args: argparse.Namespace, out: Path) -> int:
    yolo = _load_model(args.model)
    report = load_backbone_weights(yolo, args.weights, fold_imagenet_norm=not args.no_fold_norm)
    print(f"{args.weights} -> {args.model}: {report}")
    with atomic_path(out) as tmp:
        yolo.save(tmp)
    print(f"saved {out} (train with: yolo train model={out} data=...)")
    return 0
