"""Sampler: turns shards into VisualCloze training grids.

The names below are loaded on first use (PEP 562), so importing a light submodule
(`sampler.instruction`, `sampler.sharing`: the trainer's config sections are their classes)
does not import torch with `GridDataset`.
"""

from importlib import import_module

_EXPORTS = {
    "GridDataset": "dataset", "GridSample": "grid_sample", "collate_grids": "grid_sample",
    "InstructionConfig": "instruction", "RowSharing": "sharing",
}

__all__ = ["GridDataset", "GridSample", "InstructionConfig", "RowSharing", "collate_grids"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value
