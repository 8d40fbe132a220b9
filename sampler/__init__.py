"""Sampler: turns shards into VisualCloze training grids."""

from .dataset import GridDataset
from .grid_sample import GridSample, collate_grids
from .instruction import InstructionConfig
from .sharing import RowSharing

__all__ = ["GridDataset", "GridSample", "InstructionConfig", "RowSharing", "collate_grids"]
