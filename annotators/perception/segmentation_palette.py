"""Semantic label maps coloured with the ADE20K palette, as ControlNet's (and Graph200K's) `uniformer` maps."""

from __future__ import annotations

from functools import cache

import numpy as np


@cache
def ade20k_palette() -> np.ndarray:
    """(150, 3) uint8: the colour of ADE20K class i (0 wall, 2 sky, 12 person, ...), controlnet_aux's table."""
    from controlnet_aux.util import ade_palette  # imported late: controlnet_aux's import is slow

    return np.array(ade_palette(), dtype=np.uint8)


def colourise_labels(labels: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 colour map of an (H, W) array of ADE20K class ids."""
    labels = np.asarray(labels)
    palette = ade20k_palette()
    if labels.size and (labels.min() < 0 or labels.max() >= len(palette)):
        raise ValueError(f"ADE20K class ids are 0..{len(palette) - 1}; got {labels.min()}..{labels.max()} "
                         "(is the model trained on ADE20K's 150 classes?)")
    return palette[labels.astype(np.int64)]
