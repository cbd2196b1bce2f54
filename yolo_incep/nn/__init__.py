"""InceptionNeXt layers, the YOLO blocks and detection head built from them, and the InceptionNeXt backbone rows."""

from .backbone import InceptionNeXtStage, InceptionNeXtStem
from .blocks import C2fIncep, C3Incep, C3k2Incep, ELAN1Incep, RepNCSPELAN4Incep
from .head import DetectIncep, MatmulDFL
from .layers import ConvMlp, InceptionDWConv2d, MetaNeXtBlock

__all__ = (
    "C2fIncep",
    "C3Incep",
    "C3k2Incep",
    "ConvMlp",
    "DetectIncep",
    "ELAN1Incep",
    "InceptionDWConv2d",
    "InceptionNeXtStage",
    "InceptionNeXtStem",
    "MatmulDFL",
    "MetaNeXtBlock",
    "RepNCSPELAN4Incep",
)

# Importing this package can import Ultralytics' parser, whose plugin install skips registering a half-imported us.
from ..plugin import register_layers  # noqa: E402

register_layers()
