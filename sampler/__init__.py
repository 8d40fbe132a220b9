"""Sampler: turns shards into VisualCloze training grids.

The names below are loaded on first use (PEP 562), so importing a light submodule
(`sampler.instruction`, `sampler.sharing`: the trainer's config sections are their classes)
does not import torch with `GridDataset`.
"""

from graph200k.lazy_exports import lazy_exports

_EXPORTS = {
    "GridDataset": "dataset", "GridSample": "grid_sample", "collate_grids": "grid_sample",
    "InstructionConfig": "instruction", "RowSharing": "sharing",
}

__all__ = ["GridDataset", "GridSample", "InstructionConfig", "RowSharing", "collate_grids"]

__getattr__ = lazy_exports(__name__, _EXPORTS)
