"""Models for `compare`: arms from the command line, loading with checks, whole-image and SAHI sliced prediction."""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError, one_line

MODEL_SUFFIXES = {".pt", ".yaml", ".yml"}
# Exported formats Ultralytics runs on a CPU with a package from the registry: format -> (module the runtime imports,
# its distribution, our extra). Others (TensorRT, CoreML, the NPU formats) need a device or an OS this is not.
CPU_RUNTIMES = {"torchscript": ("torch", "torch", None), "onnx": ("onnxruntime", "onnxruntime", "onnx"),
                "openvino": ("openvino", "openvino", "openvino"), "ncnn": ("ncnn", "ncnn", "ncnn"),
                "mnn": ("MNN", "MNN", "mnn"), "executorch": ("executorch", "executorch", "executorch"),
                "litert": ("ai_edge_litert", "ai-edge-litert", "litert"),
                "paddle": ("paddle", "paddlepaddle", "paddle")}


@dataclass
class Arm:
    """One model of the comparison: a name and one checkpoint per training seed (most arms have one)."""

    name: str
    sources: list[str]

    def row_names(self) -> list[str]:
        """Report name of each source: the arm's name, or 'NAME.1', 'NAME.2', ... for several seeds."""
        return [self.name] if len(self.sources) == 1 else [f"{self.name}.{j}" for j in range(1, len(self.sources) + 1)]


def parse_arms(args: list[str]) -> list[Arm]:
    """'[NAME=]SOURCE[,SOURCE...]' arguments -> arms with unique, file-safe names (an existing path is taken whole)."""
    named = []
    for arg in args:
        name, sep, rest = arg.partition("=")
        if not sep or Path(arg).exists() or not name:
            name, rest = None, arg
        sources = [rest] if Path(rest).exists() else [s for s in rest.split(",") if s]
        if not sources:
            raise InputError(f"model {arg!r}: no checkpoint or model YAML given")
        named.append((name or default_name(sources[0]), sources))
    return [Arm(n, s) for n, (_, s) in zip(unique_names([n for n, _ in named]), named)]


def default_name(source: str) -> str:
    """A report name for a model: the YAML/checkpoint stem, or the run folder of an Ultralytics '.../weights/*.pt'."""
    p = Path(source)
    if p.parent.name == "weights" and p.parent.parent.name:
        return p.parent.parent.name + ("" if p.stem == "best" else f"-{p.stem}")
    if p.name.lower().endswith((".json", ".json.gz", ".json.xz")):  # saved predictions ('predictions_<name>.json')
        return re.sub(r"\.json(\.gz|\.xz)?$", "", p.name, flags=re.I).removeprefix("predictions_")
    return p.stem


def unique_names(names: list[str]) -> list[str]:
    """File-safe names, '-2', '-3', ... appended to repeats."""
    out: list[str] = []
    for n in names:
        base = re.sub(r"[^A-Za-z0-9._+-]", "_", n) or "model"
        name, k = base, 1
        while name in out:
            k += 1
            name = f"{base}-{k}"
        out.append(name)
    return out


def load_model(source: str, names: list[str], by_index: bool = False):
    """A detection YOLO for `source`: a YAML (built untrained for these classes, seeded) or a checkpoint whose class
    names are the dataset's `names` (or, with `by_index`, only as many: class i is scored as the dataset's class i)."""
    suffix = Path(source).suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        raise InputError(f"model {source}: expected a .pt checkpoint, a model YAML (.yaml), an exported model "
                         f"({', '.join(CPU_RUNTIMES)}) or saved predictions (.json, .json.gz, .json.xz), got "
                         f"{suffix or 'no suffix'}")
    yolo = _build(source, names) if suffix in {".yaml", ".yml"} else _load(source)
    from ultralytics.nn.modules import Detect

    head = yolo.model.model[-1]
    if yolo.task != "detect" or not isinstance(head, Detect):
        raise InputError(f"model {source}: a {yolo.task!r} model with a {type(head).__name__} head; "
                         "compare needs a detection model")
    _check_names(source, {int(k): v for k, v in yolo.names.items()}, names, by_index)
    return yolo


def _check_names(source: str, own: dict[int, str], names: list[str], by_index: bool) -> None:
    """The model's class names must be the dataset's (with `by_index`, only as many)."""
    if len(own) != len(names):
        raise InputError(f"model {source}: {len(own)} classes, but the dataset names {len(names)}")
    listed = [str(own[i]) for i in range(len(names))]
    if listed != names and not by_index:
        i = next(i for i, (a, b) in enumerate(zip(listed, names)) if a != b)
        raise InputError(f"model {source}: class {i} is {listed[i]!r}, the dataset's is {names[i]!r} (model "
                         f"{listed}, dataset {names}); pass --map-classes-by-index to score class i as the "
                         "dataset's class i")


def export_format(source: str | Path) -> str | None:
    """Ultralytics' format name of an exported model ('onnx', 'openvino', 'ncnn', ...) by the name its exporter
    gives it (`best.onnx`, `best_int8_openvino_model/`); None for a checkpoint, YAML or anything else.

    The longest matching suffix wins ('_edgetpu.tflite' over '.tflite', '_qnn.onnx' over '.onnx')."""
    from ultralytics.engine.exporter import export_formats

    table = export_formats()
    name = Path(source).name.lower()
    found = [(len(s), f) for s, f in zip(table["Suffix"], table["Argument"]) if f != "-" and name.endswith(s.lower())]
    return max(found)[1] if found else None


@dataclass
class Exported:
    """An exported model, run by Ultralytics' own runtime wrapper (AutoBackend) as `YOLO(path)` runs it.

    `yolo` predicts (it loads its own AutoBackend); `backend` is the one loaded for the checks and the timing."""

    format: str
    yolo: object
    backend: object = field(repr=False)
    imgsz: list[int]
    batch: int
    dynamic: bool
    stride: int
    precision: str  # what the export was asked for: fp32, fp16, int8 (its `quantize`)

    def info(self) -> dict:
        """What the report says of it: format, precision, input it was fixed to, runtime package and version."""
        dist = CPU_RUNTIMES[self.format][1]
        return {"format": self.format, "precision": self.precision, "imgsz": None if self.dynamic else self.imgsz,
                "batch": None if self.dynamic else self.batch, "runtime": f"{dist} {package_version(dist)}"}

    def latency_ms(self, reps: int) -> float:
        """Median ms per image of the runtime's forward pass on a zero batch of the export's own shape (batch images
        of imgsz), interleaved-median timing as a checkpoint's; the ms of one call divided by its batch."""
        import torch

        from ..cost import interleaved_medians

        x = torch.zeros(self.batch, 3, *self.imgsz)
        return round(interleaved_medians({"m": lambda: self.backend(x)}, reps)["m"] * 1e3 / self.batch, 3)


def load_export(source: str, names: list[str], by_index: bool, imgsz: int, batch: int, device: str,
                nms_free: bool, slice_size: int) -> Exported:
    """An exported model, checked against the command before anything is predicted: a format Ultralytics runs on
    this machine with its runtime installed, a detection model with the dataset's classes, exported at `imgsz`
    (Ultralytics would silently predict a fixed-size export at its own size), a fixed batch that divides `batch`,
    raw outputs (no NMS inside) and the head `nms_free` asks for."""
    fmt = export_format(source)
    path = Path(source)
    if not path.exists():
        raise InputError(f"model {source}: no such exported model")
    if fmt not in CPU_RUNTIMES:
        raise InputError(f"model {source}: a {fmt!r} export; compare runs the exports Ultralytics runs on a CPU "
                         f"({', '.join(CPU_RUNTIMES)})")
    module, dist, extra = CPU_RUNTIMES[fmt]
    if importlib.util.find_spec(module) is None:  # else Ultralytics would try to pip-install it mid-run
        raise InputError(f"model {source}: a {fmt} export, but its runtime ({dist}) is not installed: "
                         f"pip install 'yolo-incep[{extra}]'")
    if slice_size:
        raise InputError(f"model {source}: --slice runs a model at the slice size as well as at --imgsz; an exported "
                         "model has one input size: compare its checkpoint with --slice instead")
    from ultralytics import YOLO
    from ultralytics.nn.autobackend import AutoBackend
    from ultralytics.utils.torch_utils import select_device

    try:
        backend = AutoBackend(source, device=select_device(device, verbose=False), verbose=False)
    except Exception as e:  # each runtime raises its own types for a file it cannot read
        raise InputError(f"model {source}: not a loadable {fmt} export ({one_line(e)})") from e
    meta = backend.metadata or {}
    if not meta.get("imgsz"):
        raise InputError(f"model {source}: a {fmt} file without Ultralytics' export metadata (task, imgsz, class "
                         "names); export it with `yolo export`")
    if meta.get("task", backend.task) != "detect":
        raise InputError(f"model {source}: a {meta.get('task', backend.task)!r} export; compare needs a detection "
                         "model")
    _check_names(source, backend.names, names, by_index)
    args = meta.get("args", {})
    dynamic, fixed = bool(meta.get("dynamic")), [int(v) for v in backend.imgsz]
    if not dynamic and fixed != [imgsz, imgsz]:
        raise InputError(f"model {source}: exported at imgsz {fixed[0] if fixed[0] == fixed[1] else fixed}, this "
                         f"comparison runs at --imgsz {imgsz}; export again with imgsz={imgsz} (or dynamic=True), "
                         f"or compare at --imgsz {fixed[0]}")
    if not dynamic and batch % backend.batch:
        raise InputError(f"model {source}: exported with a fixed batch of {backend.batch}; --batch {batch} is not a "
                         f"multiple of it (every call would be padded to {backend.batch} images)")
    if args.get("nms"):
        raise InputError(f"model {source}: exported with nms=True (NMS inside the model, at its own conf and "
                         "max_det); compare scores raw outputs: export with nms unset")
    if meta.get("end2end") and not nms_free:
        raise InputError(f"model {source}: exported with the NMS-free one-to-one head (nms=False); pass --nms-free "
                         "to score every end-to-end model that way, or export with nms unset")
    quantize = args.get("quantize") or (8 if args.get("int8") else 16 if args.get("half") else None)  # 8.4.0: int8
    precision = {8: "int8", 16: "fp16"}.get(quantize, "fp32" if quantize in (None, 32) else str(quantize))
    return Exported(fmt, YOLO(source, task="detect"), backend, fixed, int(backend.batch), dynamic,
                    int(backend.stride), precision)


def package_version(dist: str) -> str:
    """An installed distribution's version, "?" when it is not installed."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def _build(source: str, names: list[str]):
    """An untrained model from a YAML, seeded (the same report twice), with the dataset's classes."""
    import torch
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel, guess_model_task, yaml_model_load

    try:
        cfg = yaml_model_load(source)
    except FileNotFoundError as e:
        raise InputError(f"model {source}: no such model YAML ({e})") from e
    except ValueError as e:  # Ultralytics' words for a file that is not a YAML mapping
        raise InputError(f"model {source}: not a model YAML ({e})") from e
    task = guess_model_task(cfg)
    if task != "detect":
        raise InputError(f"model {source}: a {task!r} model YAML; compare needs a detection model")
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            yolo = YOLO(source, task="detect")
            if yolo.model.yaml.get("nc") != len(names):
                yolo.model = DetectionModel(cfg, nc=len(names), verbose=False)
    except KeyError as e:  # Ultralytics' parser looks layer names up in its module namespace
        raise InputError(f"model {source}: unknown layer {e} (not an Ultralytics or yolo-incep module)") from e
    except (TypeError, ValueError, IndexError, AttributeError, RuntimeError) as e:
        raise InputError(f"model {source}: cannot build this model YAML ({type(e).__name__}: {e})") from e
    yolo.model.names = dict(enumerate(names))
    return yolo


def _load(source: str):
    """A checkpoint; missing files are refused here (Ultralytics would try to download unknown '*.pt' names)."""
    from ultralytics import YOLO

    if not Path(source).is_file():
        raise InputError(f"model {source}: no such checkpoint (give a .pt path or a model YAML name)")
    try:
        return YOLO(source)
    except Exception as e:  # torch.load and Ultralytics raise many types for a file that is not a checkpoint
        first = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip().splitlines()[0] if str(e).strip() else ""
        raise InputError(f"model {source}: not a loadable Ultralytics checkpoint ({type(e).__name__}: {first})") from e


def max_stride(yolo) -> int:
    """The model's largest stride (input sizes must be multiples of it)."""
    return int(max(yolo.model.stride.tolist()))


def _result(image_id: int, xyxy, score: float, cls: int) -> dict:
    """One COCO results entry; rounding happens here so the evaluated list is exactly the written one."""
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    bbox = [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)]
    return {"image_id": image_id, "category_id": int(cls) + 1, "bbox": bbox, "score": round(float(score), 5)}


@functools.cache  # one class: Model.predict keeps its predictor only while the class is the same
def predictor_class() -> type:
    """Ultralytics' DetectionPredictor whose NMS has no time limit, so machine load never changes the detections.

    Ultralytics' NMS stops after 2 s + 0.05 s per image of the batch and returns what it has (the later images of
    the batch empty) with only a warning: at conf 0.001 a P2 model's 150k anchors at 1536 px took that long on a
    loaded 2-core CPU. Its per-image allowance `max_time_img` is an argument: infinite, the limit never passes.
    An end-to-end model (YOLO26's one-to-one head, picked by `nms=False`) goes through the same call, which for it
    only keeps the head's top-k rows above `conf`, at most `max_det`, exactly as YOLO.predict: no second NMS.
    """
    import math

    from ultralytics.models.yolo.detect import DetectionPredictor
    from ultralytics.utils import nms, ops

    class UnlimitedNMSPredictor(DetectionPredictor):
        def postprocess(self, preds, img, orig_imgs, **kwargs):
            dets = nms.non_max_suppression(preds, self.args.conf, kwargs.pop("iou", self.args.iou), self.args.classes,
                                           self.args.agnostic_nms, max_det=self.args.max_det,
                                           end2end=getattr(self.model, "end2end", False), max_time_img=math.inf)
            if not isinstance(orig_imgs, list):  # a tensor source: the stock predictor's conversion
                orig_imgs = ops.convert_torch2numpy_batch(orig_imgs)[..., ::-1]
            return self.construct_results(dets, img, orig_imgs, **kwargs)

    return UnlimitedNMSPredictor


def predict(yolo, images: list[Path], imgsz: int, device: str, batch: int, conf: float, iou: float,
            max_det: int, nms: bool | None = None, progress=None) -> list[dict]:
    """COCO results of whole-image inference, `batch` images at a time; image ids are 1-based positions in `images`.

    `nms` is Ultralytics' own setting: None (its default) predicts with the one-to-many branch and NMS, False with
    an end-to-end model's NMS-free one-to-one head (the head keeps the top max(max_det, 300), then max_det).
    `progress(n)`, if given, is called with the number of images of each finished batch."""
    ids = {str(p.absolute()): i for i, p in enumerate(images, 1)}  # results are keyed by path, whatever their order
    out = []
    # Ultralytics reads a list source into memory and infers it as one batch, whatever `batch` says: the 60 val
    # frames at 1536 px then held ~17 GB with a P2 model. One call per batch keeps it to one batch's activations.
    # rect=False: every image letterboxed to imgsz x imgsz, as a batch of mixed shapes is; rect=True (predict's
    # default) would pad a batch of equal shapes less, so an image's boxes would depend on its batch neighbours.
    for start in range(0, len(images), batch):
        chunk = [str(p) for p in images[start:start + batch]]
        for r in yolo.predict(chunk, stream=True, imgsz=imgsz, device=device, batch=batch, conf=conf, iou=iou,
                              max_det=max_det, nms=nms, rect=False, verbose=False, save=False,
                              predictor=predictor_class()):
            b = r.boxes
            out += [_result(ids[r.path], *row) for row in zip(b.xyxy.tolist(), b.conf.tolist(), b.cls.tolist())]
        if progress is not None:
            progress(len(chunk))
    return out


class _UnlimitedYOLO:
    """A YOLO for SAHI whose calls go through predictor_class() with our `nms` setting (SAHI calls the model with
    Ultralytics' default predictor, time limit included, and its default head); everything else is the YOLO's."""

    def __init__(self, yolo, nms: bool | None):
        self._yolo, self._nms = yolo, nms

    def __getattr__(self, name):
        return getattr(self._yolo, name)

    def __call__(self, source, **kwargs):
        return self._yolo.predict(source, predictor=predictor_class(), nms=self._nms, **kwargs)


def has_sahi() -> bool:
    """Whether SAHI, which sliced inference needs, can be imported (an optional extra; the GPU machine has none)."""
    try:
        import sahi  # noqa: F401
    except ImportError:
        return False
    return True


def predict_sliced(yolo, images: list[Path], device: str, conf: float, size: int,
                   overlap: float, nms: bool | None = None) -> tuple[list[dict], float]:
    """COCO results of SAHI sliced inference (plus SAHI's full-image pass), and the median ms per image end to end.

    Slices are predicted at their own size (1:1), the scale a model trained on native-resolution tiles knows;
    at `imgsz` a 320-px slice would be upscaled 4.8x for a 1536-px run, and cost 23x the pixels. `nms` as predict's.
    """
    import statistics

    from sahi.models.ultralytics import UltralyticsDetectionModel
    from sahi.predict import get_sliced_prediction

    dm = UltralyticsDetectionModel(model=_UnlimitedYOLO(yolo, nms), confidence_threshold=conf, device=device or None,
                                   image_size=size)
    out, times = [], []
    for image_id, p in enumerate(images, 1):
        t = time.perf_counter()
        pred = get_sliced_prediction(str(p), dm, slice_height=size, slice_width=size, overlap_height_ratio=overlap,
                                     overlap_width_ratio=overlap, verbose=0)
        times.append((time.perf_counter() - t) * 1e3)
        for o in pred.object_prediction_list:
            out.append(_result(image_id, o.bbox.to_xyxy(), o.score.value, o.category.id))
    return out, round(statistics.median(times), 3)
