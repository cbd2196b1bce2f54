"""The InceptionNeXt backbone (arXiv 2303.16900) as YAML rows: a stride-4 stem and four MetaNeXt stages.

Parameter names inside each row match timm's `inception_next` (`stem.*`, `stages.N.downsample.*`,
`stages.N.blocks.M.*`), so ImageNet weights load by swapping the prefix (see `yolo_incep.weights`).
The mirrors give the rows stock treatment: the stem is a width-scaled (c1, c2) row like AConv, a stage a
width- and depth-scaled (c1, c2, n, ...) row like C2f.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import MetaNeXtBlock


class InceptionNeXtStem(nn.Sequential):
    """Patchify stem: 4x4 conv with stride 4, then BatchNorm (timm `stem.0`, `stem.1`)."""

    mirror = "AConv"

    def __init__(self, c1: int, c2: int, patch: int = 4):
        super().__init__(nn.Conv2d(c1, c2, patch, stride=patch), nn.BatchNorm2d(c2))


class InceptionNeXtStage(nn.Module):
    """One InceptionNeXt stage: optional BN + 2x2 strided conv downsample, then `depth` MetaNeXt blocks."""

    mirror = "C2f"

    def __init__(
        self,
        c1: int,
        c2: int,
        depth: int = 1,
        stride: int = 2,
        mlp_ratio: float = 4,
        band_kernel_size: int = 11,
        branch_ratio: float = 0.125,
        ls_init_value: float = 1e-6,
        drop_path: float = 0.0,
    ):
        super().__init__()
        if stride > 1 or c1 != c2:
            self.downsample = nn.Sequential(nn.BatchNorm2d(c1), nn.Conv2d(c1, c2, stride, stride=stride))
        else:
            self.downsample = nn.Identity()
        self.blocks = nn.Sequential(
            *(
                MetaNeXtBlock(c2, mlp_ratio, ls_init_value, drop_path, band_kernel_size=band_kernel_size,
                              branch_ratio=branch_ratio)
                for _ in range(depth)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Downsample, then the residual blocks."""
        return self.blocks(self.downsample(x))
