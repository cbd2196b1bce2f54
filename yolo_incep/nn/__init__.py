"""InceptionNeXt layers and the YOLO blocks built from them."""

from .blocks import C2fIncep
from .layers import ConvMlp, InceptionDWConv2d, MetaNeXtBlock

__all__ = ("C2fIncep", "ConvMlp", "InceptionDWConv2d", "MetaNeXtBlock")
