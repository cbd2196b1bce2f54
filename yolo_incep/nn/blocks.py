"""YOLO blocks whose inner bottlenecks are MetaNeXt blocks with the Inception depthwise mixer.

Each block subclasses the Ultralytics block it mirrors and names it in `mirror`, so the plugin gives its YAML
rows the stock row's treatment (channels, width, depth) and Ultralytics' own isinstance checks still apply.
`shortcut`, `g` and kernel arguments are accepted for YAML parity only: MetaNeXt blocks are always residual.
"""

from __future__ import annotations

from torch import nn
from ultralytics.nn.modules import C3, ELAN1, C2f, C3k2, Conv, RepNCSPELAN4
from ultralytics.nn.modules.block import PSABlock

from .layers import MetaNeXtBlock


class C2fIncep(C2f):
    """C2f with MetaNeXt blocks; `shortcut` and `g` are accepted for YAML parity, MetaNeXt blocks are always residual."""

    mirror = "C2f"

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False, g: int = 1, e: float = 0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        self.m = nn.ModuleList(MetaNeXtBlock(self.c) for _ in range(n))


class C3Incep(C3):
    """C3 (YOLOv5 CSP block) with a chain of MetaNeXt blocks on its hidden branch."""

    mirror = "C3"

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        self.m = nn.Sequential(*(MetaNeXtBlock(int(c2 * e)) for _ in range(n)))


class C3k2Incep(C3k2):
    """C3k2 (YOLO11/26) whose Bottleneck / C3k inner blocks become MetaNeXt / C3Incep(n=2); attention is kept."""

    mirror = "C3k2"

    def __init__(
        self,
        c1: int,
        c2: int,
        n: int = 1,
        c3k: bool = False,
        e: float = 0.5,
        attn: bool = False,
        g: int = 1,
        shortcut: bool = True,
    ):
        super().__init__(c1, c2, n, c3k, e, attn, g, shortcut)
        self.m = nn.ModuleList(self._inner(self.c, c3k, attn) for _ in range(n))

    @staticmethod
    def _inner(c: int, c3k: bool, attn: bool) -> nn.Module:
        """One inner block, following the stock choice between plain, C3k-style and attention blocks."""
        if attn:
            return nn.Sequential(MetaNeXtBlock(c), PSABlock(c, attn_ratio=0.5, num_heads=max(c // 64, 1)))
        return C3Incep(c, c, 2) if c3k else MetaNeXtBlock(c)


class RepNCSPELAN4Incep(RepNCSPELAN4):
    """YOLOv9 CSP-ELAN block whose two RepCSP branches are C3Incep blocks."""

    mirror = "RepNCSPELAN4"

    def __init__(self, c1: int, c2: int, c3: int, c4: int, n: int = 1):
        super().__init__(c1, c2, c3, c4, n)
        self.cv2 = nn.Sequential(C3Incep(c3 // 2, c4, n), Conv(c4, c4, 3, 1))
        self.cv3 = nn.Sequential(C3Incep(c4, c4, n), Conv(c4, c4, 3, 1))


class ELAN1Incep(ELAN1):
    """YOLOv9 ELAN1 block whose two 3x3 convs become a 1x1 projection + MetaNeXt block and a MetaNeXt block."""

    mirror = "ELAN1"

    def __init__(self, c1: int, c2: int, c3: int, c4: int):
        super().__init__(c1, c2, c3, c4)
        self.cv2 = nn.Sequential(Conv(c3 // 2, c4, 1, 1), MetaNeXtBlock(c4))
        self.cv3 = MetaNeXtBlock(c4)
