"""YOLO blocks whose inner bottlenecks are MetaNeXt blocks with the Inception depthwise mixer.

Each block subclasses the Ultralytics block it mirrors and names it in `mirror`, so the plugin gives its YAML
rows the stock row's treatment (channels, width, depth) and Ultralytics' own isinstance checks still apply.
"""

from __future__ import annotations

from torch import nn
from ultralytics.nn.modules import C2f

from .layers import MetaNeXtBlock


class C2fIncep(C2f):
    """C2f with MetaNeXt blocks; `shortcut` and `g` are accepted for YAML parity, MetaNeXt blocks are always residual."""

    mirror = "C2f"

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False, g: int = 1, e: float = 0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        self.m = nn.ModuleList(MetaNeXtBlock(self.c) for _ in range(n))
