"""Detection head whose box and class branches are Inception depthwise + pointwise convs instead of dense 3x3 convs.

Dense 3x3 convs of 64-80 channels made the stock Detect head about half of yolov8n-p2's CPU time, most of it in the
stride-4 branch, which runs over 160x160 px at 640 (scripts/bench_layer_cost.py, README). Here every stride shares
one Inception depthwise stem between its box and class branches, each branch is one depthwise-separable conv, and all
of them are at most as wide as the stock box branch.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from ultralytics.nn.modules import Conv, Detect, DWConv
from ultralytics.nn.modules.block import DFL

from .layers import InceptionDWConv2d


class MatmulDFL(DFL):
    """DFL as a softmax over contiguous bins and a matmul with the bin values: same state dict, ~5x faster on CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Decode distributions (B, 4 * c1, A) into expected box distances (B, 4, A)."""
        b, _, a = x.shape
        # stock DFL softmaxes a transposed (strided) view, which is what makes it slow over P2's 34k anchors
        return torch.matmul(self.conv.weight.view(1, 1, 1, self.c1), x.view(b, 4, self.c1, a).softmax(2)).view(b, 4, a)


class DetectIncep(Detect):
    """Detect head: per stride a shared Inception depthwise stem, then depthwise-separable box and class branches."""

    mirror = "Detect"
    depth = 1  # depthwise-separable layers per branch (stock Detect has two dense 3x3 convs per branch)
    dense_box = 0  # dense 3x3 convs in the box branch, at the stock box width; 0: depthwise-separable
    dense_cls = 0  # dense 3x3 convs in the class branch, at the stock class width; 0: depthwise-separable
    narrow = True  # hidden width capped at each stride's input channels (32 at P2 for n); False: the box width
    shared_stem = True  # one stem per stride feeds both branches; False: each branch starts with its own stem
    inception_stem = True  # False: no stem; each branch reads the neck's map and widens to the stock width
    narrow_dense = False  # dense branches capped at their input's width (32 at P2 for n) instead of the stock width

    def __init__(self, nc: int = 80, reg_max: int = 16, end2end: bool = False, ch: list[int] | tuple[int, ...] = ()):
        super().__init__(nc, reg_max, end2end, ch)
        # one hidden width for both branches: the input's, capped at the stock box branch width (64 for reg_max 16;
        # the stock class branch is wider, max(ch[0], nc)), as at P2 every channel spans 160x160 px at 640
        c2 = max(16, ch[0] // 4, 4 * self.reg_max)
        c_ = [min(x, c2) if self.narrow else c2 for x in ch]
        c3 = max(ch[0], min(self.nc, 100))  # the stock class branch width
        if self.inception_stem:  # branches read the stem's output and keep its width
            # branch_ratio 1/4: the head has no MLP after the mixer, so 3/4 of the channels get spatial context (the
            # backbone's 1/8 leaves 5/8 as identity)
            stem = [nn.Sequential(InceptionDWConv2d(x, band_kernel_size=11, branch_ratio=0.25), Conv(x, c, 1))
                    for x, c in zip(ch, c_)]
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
        self.stem, self.cv2, self.cv3 = nn.ModuleList(stem), nn.ModuleList(box), nn.ModuleList(cls)
        if self.reg_max > 1:
            self.dfl = MatmulDFL(self.reg_max)
        if end2end:
            self.one2one_stem = copy.deepcopy(self.stem)
            self.one2one_cv2 = copy.deepcopy(self.cv2)
            self.one2one_cv3 = copy.deepcopy(self.cv3)

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

    def fuse(self) -> None:
        """Drop the branch that inference does not use, if there is a one-to-one head."""
        # the plugin fuses every yolo_incep module, and Ultralytics 8.4.0's Detect.fuse drops cv2/cv3 unconditionally
        if getattr(self, "one2one_cv2", None) is not None:
            super().fuse()
            if self.cv2 is None:  # 8.4.0 drops cv2/cv3 by name only
                self.stem = None

    @property
    def one2many(self):
        """Box, class and stem modules of the one-to-many head."""
        return {**super().one2many, "stem": self.stem}

    @property
    def one2one(self):
        """Box, class and stem modules of the one-to-one head."""
        return {**super().one2one, "stem": self.one2one_stem}

    def forward_head(
        self, x: list[torch.Tensor], box_head: nn.Module | None = None, cls_head: nn.Module | None = None,
        stem: nn.Module | None = None,
    ) -> dict[str, torch.Tensor]:
        """Run each stride's stem, then the stock box/class concatenation on its output."""
        if stem is None:  # the branch removed by fuse()
            return {}
        preds = super().forward_head([stem[i](x[i]) for i in range(self.nl)], box_head, cls_head)
        return {**preds, "feats": x} if preds else preds  # feats: the neck's maps, as stock (anchors from shapes)


class DetectIncep2(DetectIncep):
    """DetectIncep with two depthwise-separable layers per branch: the CPU protocol's test of branch depth."""

    depth = 2


class DetectIncepCls1(DetectIncep):
    """DetectIncep with one dense 3x3 conv in the class branch: the CPU protocol's test of dense class convs."""

    dense_cls = 1


class DetectIncepCls2(DetectIncep):
    """DetectIncep with the stock two dense 3x3 convs in the class branch."""

    dense_cls = 2


class DetectIncepBox2(DetectIncep):
    """DetectIncep with the stock two dense 3x3 convs in the box branch."""

    dense_box = 2


class DetectIncepWide(DetectIncep):
    """DetectIncep whose hidden width is the box width (64 for n) at every stride, P2 included."""

    narrow = False


class DetectIncepDense(DetectIncep):
    """DetectIncep with the stock dense box and class branches: stock Detect behind the shared Inception stem."""

    dense_box = 2
    dense_cls = 2


class DetectIncepCls1Split(DetectIncepCls1):
    """DetectIncepCls1 whose box and class branches each start with their own stem instead of sharing one."""

    shared_stem = False


class DetectIncepStemless(DetectIncep):
    """DetectIncep without its stem: two depthwise-separable layers per branch at the stock widths (YOLO11-style)."""

    inception_stem = False
    depth = 2


class DetectIncepNarrow(DetectIncep):
    """Stock dense box and class branches, no stem, each at most as wide as its input: 32 instead of 64-80 at P2 (n)."""

    inception_stem = False
    dense_box = 2
    dense_cls = 2
    narrow_dense = True
