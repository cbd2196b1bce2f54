"""Small-object data tools: VisDrone conversion with ignored regions, sequence-aware splits, tiling."""

from .split import resplit, split_by_sequence
from .tile import tile_dataset, tile_windows
from .visdrone import NAMES as VISDRONE_NAMES
from .visdrone import convert_visdrone

__all__ = ["VISDRONE_NAMES", "convert_visdrone", "resplit", "split_by_sequence", "tile_dataset", "tile_windows"]
