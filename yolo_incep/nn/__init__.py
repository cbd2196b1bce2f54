"""InceptionNeXt layers, the YOLO blocks and detection head built from them, and the InceptionNeXt backbone rows."""

import torch
from torchvision.ops import StochasticDepth

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

# Checkpoints holding our layers load with weights_only=True (ULTRALYTICS_SAFE_LOAD=1) once this package is imported;
# the plugin imports it as soon as Ultralytics imports its model parser, before any checkpoint can be read.
torch.serialization.add_safe_globals([*(globals()[name] for name in __all__), StochasticDepth])
