"""Sampler: turns shards into VisualCloze training grids."""

from .dataset import GridDataset
from .grid_sample import GridSample, collate_grids
from .instruction import InstructionConfig

__all__ = ["GridDataset", "GridSample", "InstructionConfig", "collate_grids"]
