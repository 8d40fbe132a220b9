"""The region an editing node changed, at a cell's size: for "PSNR outside the edited region".

`fill_edit` repaints the subject mask it records in its metadata (`{"fill_edit": {"mask":
"grounded_mask" | "foreground", "mask_dilate": px}}`, annotators/generative/fill_edit.py) and pastes the
target's own pixels outside it, so outside that (dilated) mask an edited image and its target
agree, and a model mapping one to the other should keep those pixels. `depth_edit` regenerates
the whole image: it has no region. A sample whose metadata names no mask (the Graph200K
release's edits) has none either; the scorer then skips the metric with that reason.
"""

from __future__ import annotations

import cv2
import numpy as np

from graph200k.layout import stored_instances

# Where each mask source fill_edit may name is stored.
MASK_FIELDS = {"grounded_mask": "grounded_mask", "foreground": "foreground_mask"}
MASK_THRESHOLD = 127


def edit_region(sample, edit_node: str, size: tuple[int, int], nodes) -> tuple[np.ndarray | None, str]:
    """(H, W) bool mask of the edited pixels at cell `size` (w, h), or None and why there is none.

    `sample` is the query's `sampler.pool.PoolSample` (its fields are read on access)."""
    from sampler.cells import decode_cell

    meta = sample.meta.get(edit_node)
    source = meta.get("mask") if isinstance(meta, dict) else None
    if source is None:
        return None, f"the query's {edit_node} metadata records no edit mask (no '{edit_node}.mask')"
    if source not in MASK_FIELDS:
        return None, f"{edit_node}.mask names {source!r}, not one of {', '.join(MASK_FIELDS)}"
    found = stored_instances(nodes.get(MASK_FIELDS[source]), sample.fields)
    if not found:
        return None, f"the query sample does not store the {source} mask its edit used"
    w, h = size
    mask = decode_cell(sample.fields[found[0].field], w, h, "L") > MASK_THRESHOLD
    dilate = meta.get("mask_dilate") or 0
    if dilate and sample.target_size[0] > 0:
        radius = max(1, round(dilate * w / sample.target_size[0]))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2)
        mask = cv2.dilate(mask.astype(np.uint8), kernel) > 0
    return mask, ""
