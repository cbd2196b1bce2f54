"""Detection head whose box and class branches are Inception depthwise + pointwise convs instead of dense 3x3 convs.

Dense 3x3 convs of 64-80 channels made the stock Detect head about half of yolov8n-p2's CPU time, most of it in the
stride-4 branch, which runs over 160x160 px at 640 (scripts/bench_layer_cost.py). Here every stride shares one
Inception depthwise stem between its box and class branches, each branch is one depthwise-separable conv, and all of
them are at most as wide as the stock box branch. It is cheap, not free: in the CPU protocol (docs/) every P2 model
with it scored below stock yolov8n-p2 on AP_small, which is why the product P2 YAMLs keep stock Detect. The head
experiments of that protocol (deeper, dense or split branches) are subclasses in experiments/heads.py.
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

    def __init__(self, nc: int = 80, reg_max: int = 16, end2end: bool = False, ch: list[int] | tuple[int, ...] = ()):
        super().__init__(nc, reg_max, end2end, ch)
        # one hidden width for both branches: the input's, capped at the stock box branch width (64 for reg_max 16;
        # the stock class branch is wider, max(ch[0], nc)), as at P2 every channel spans 160x160 px at 640
        c_ = [min(x, self.box_width(ch)) for x in ch]
        stem = [self.stem_block(x, c) for x, c in zip(ch, c_)]
        box = [self.separable(c, 4 * self.reg_max) for c in c_]
        cls = [self.separable(c, self.nc) for c in c_]
        self.set_branches(stem, box, cls, end2end)

    def box_width(self, ch) -> int:
        """Stock Detect's box branch width for these input channels."""
        return max(16, ch[0] // 4, 4 * self.reg_max)

    @staticmethod
    def stem_block(c1: int, c2: int) -> nn.Sequential:
        """Inception depthwise mixing of the neck's map, then a 1x1 Conv to the branch width."""
        # branch_ratio 1/4: the head has no MLP after the mixer, so 3/4 of the channels get spatial context (the
        # backbone's 1/8 leaves 5/8 as identity)
        return nn.Sequential(InceptionDWConv2d(c1, band_kernel_size=11, branch_ratio=0.25), Conv(c1, c2, 1))

    @staticmethod
    def separable(c1: int, c2: int) -> nn.Sequential:
        """One depthwise 3x3 conv (BN, SiLU), then the 1x1 output projection."""
        return nn.Sequential(DWConv(c1, c1, 3), nn.Conv2d(c1, c2, 1))

    def set_branches(self, stem: list, box: list, cls: list, end2end: bool) -> None:
        """Install per-stride stem, box and class modules (and their one-to-one copies) and the matmul DFL."""
        self.stem, self.cv2, self.cv3 = nn.ModuleList(stem), nn.ModuleList(box), nn.ModuleList(cls)
        if self.reg_max > 1:
            self.dfl = MatmulDFL(self.reg_max)
        if end2end:
            self.one2one_stem = copy.deepcopy(self.stem)
            self.one2one_cv2 = copy.deepcopy(self.cv2)
            self.one2one_cv3 = copy.deepcopy(self.cv3)

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
