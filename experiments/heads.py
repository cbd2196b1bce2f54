"""The head experiments of the CPU protocol: DetectIncep with one or two of its parts changed, one class each.

Each class sets flags of `DetectIncepLab`, which rebuilds the product head (yolo_incep/nn/head.py) with them; each
asks one question of the P2 small-object gap (experiments/README.md). Importing this module registers them with the
plugin, so model YAMLs may name them, and makes the checkpoints kept before the lab moved out of the package (they
pickle `yolo_incep.nn.head.DetectIncepCls1`, ...) load again.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from ultralytics.nn.modules import Conv, Detect, DWConv

import yolo_incep.nn.head as product_head
from yolo_incep.nn import DetectIncep
from yolo_incep.plugin import register_layers


class DetectIncepLab(DetectIncep):
    """DetectIncep built from flags; with the defaults it equals DetectIncep (the same modules, in the same order)."""

    depth = 1  # depthwise-separable layers per branch (stock Detect has two dense 3x3 convs per branch)
    dense_box = 0  # dense 3x3 convs in the box branch, at the stock box width; 0: depthwise-separable
    dense_cls = 0  # dense 3x3 convs in the class branch, at the stock class width; 0: depthwise-separable
    narrow = True  # hidden width capped at each stride's input channels (32 at P2 for n); False: the box width
    shared_stem = True  # one stem per stride feeds both branches; False: each branch starts with its own stem
    inception_stem = True  # False: no stem; each branch reads the neck's map and widens to the stock width
    narrow_dense = False  # dense branches capped at their input's width (32 at P2 for n) instead of the stock width

    def __init__(self, nc: int = 80, reg_max: int = 16, end2end: bool = False, ch: list[int] | tuple[int, ...] = ()):
        Detect.__init__(self, nc, reg_max, end2end, ch)  # as DetectIncep: stock branches first, replaced below
        c2 = self.box_width(ch)
        c_ = [min(x, c2) if self.narrow else c2 for x in ch]
        c3 = max(ch[0], min(self.nc, 100))  # the stock class branch width
        if self.inception_stem:  # branches read the stem's output and keep its width
            stem = [self.stem_block(x, c) for x, c in zip(ch, c_)]
            c_in, h_box, h_cls = c_, c_, c_
        else:  # as YOLO11's class branch less its second 1x1 Conv: depthwise over the neck's map, then stock widths
            stem, c_in, h_box, h_cls = [nn.Identity() for _ in ch], list(ch), [c2] * len(ch), [c3] * len(ch)
        box = [self._dense(c, self._width(c, c2), 4 * self.reg_max, self.dense_box) if self.dense_box
               else self._branch(c, h, 4 * self.reg_max, self.depth) for c, h in zip(c_in, h_box)]
        cls = [self._dense(c, self._width(c, c3), self.nc, self.dense_cls) if self.dense_cls
               else self._branch(c, h, self.nc, self.depth) for c, h in zip(c_in, h_cls)]
        if self.inception_stem and not self.shared_stem:  # the stem moves into each branch (a copy each)
            box = [nn.Sequential(*s, *b) for s, b in zip(stem, box)]
            cls = [nn.Sequential(*copy.deepcopy(s), *b) for s, b in zip(stem, cls)]
            stem = [nn.Identity() for _ in ch]
        self.set_branches(stem, box, cls, end2end)

    def _width(self, c1: int, c2: int) -> int:
        """A dense branch's width: the stock width c2, or at most its input's c1 channels if narrow_dense."""
        return min(c1, c2) if self.narrow_dense else c2

    @staticmethod
    def _branch(c1: int, c_: int, c2: int, depth: int) -> nn.Sequential:
        """`depth` depthwise 3x3 convs (BN, SiLU), 1x1 Convs to c_ channels between them, then the output projection."""
        layers, c = [DWConv(c1, c1, 3)], c1
        for _ in range(depth - 1):
            layers += [Conv(c, c_, 1), DWConv(c_, c_, 3)]
            c = c_
        return nn.Sequential(*layers, nn.Conv2d(c, c2, 1))

    @staticmethod
    def _dense(c: int, c_: int, c2: int, depth: int) -> nn.Sequential:
        """`depth` dense 3x3 Convs of width c_, then the output projection (stock Detect's branch for depth 2)."""
        return nn.Sequential(*(Conv(c if i == 0 else c_, c_, 3) for i in range(depth)), nn.Conv2d(c_, c2, 1))


class DetectIncep2(DetectIncepLab):
    """Two depthwise-separable layers per branch: does branch depth close the gap?"""

    depth = 2


class DetectIncepCls1(DetectIncepLab):
    """One dense 3x3 conv in the class branch: do dense class convs close it?"""

    dense_cls = 1


class DetectIncepCls2(DetectIncepLab):
    """The stock two dense 3x3 convs in the class branch."""

    dense_cls = 2


class DetectIncepBox2(DetectIncepLab):
    """The stock two dense 3x3 convs in the box branch."""

    dense_box = 2


class DetectIncepWide(DetectIncepLab):
    """Hidden width = the box width (64 for n) at every stride, P2 included: does width close it?"""

    narrow = False


class DetectIncepDense(DetectIncepLab):
    """The stock dense box and class branches behind the shared Inception stem: is it the stem or the branches?"""

    dense_box = 2
    dense_cls = 2


class DetectIncepCls1Split(DetectIncepCls1):
    """DetectIncepCls1 whose box and class branches each start with their own stem instead of sharing one."""

    shared_stem = False


class DetectIncepStemless(DetectIncepLab):
    """No stem: two depthwise-separable layers per branch at the stock widths (YOLO11-style); a control."""

    inception_stem = False
    depth = 2


class DetectNarrow(DetectIncepLab):
    """Stock dense box and class branches, no stem, each at most as wide as its input: 32 instead of 64-80 at P2 (n).

    A control without an Inception layer (formerly DetectIncepNarrow): is narrowing the dense branches the cheaper
    way to a fast P2 model?"""

    inception_stem = False
    dense_box = 2
    dense_cls = 2
    narrow_dense = True


HEADS = (DetectIncepLab, DetectIncep2, DetectIncepCls1, DetectIncepCls2, DetectIncepBox2, DetectIncepWide,
         DetectIncepDense, DetectIncepCls1Split, DetectIncepStemless, DetectNarrow)
OLD_NAMES = {"DetectIncepNarrow": DetectNarrow}  # names the kept checkpoints pickle, where the class was renamed


def register() -> None:
    """Register the heads with the plugin and alias them where kept checkpoints look for them (idempotent)."""
    register_layers(*HEADS)
    old = {**{cls.__name__: cls for cls in HEADS if cls is not DetectIncepLab}, **OLD_NAMES}
    for name, cls in old.items():  # kept runs pickle yolo_incep.nn.head.<name>: found there, also by safe-loading
        setattr(product_head, name, cls)
    torch.serialization.add_safe_globals([(cls, f"{product_head.__name__}.{name}") for name, cls in old.items()])


register()
