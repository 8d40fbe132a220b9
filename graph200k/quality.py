"""The reference-quality rule: when a sample's subject reference may be used.

Graph200K rates how well the reference shows the same subject as the target
(`quality.objectConsistency`, 1-5). Packing (which node types a sample counts
for, in the index and the card) and the sampler (which tasks a sample may
serve) apply this one rule, through `graph200k.layout.usable_nodes`, so they
never disagree about a sample. The threshold is declared here once; the rule's
text (`REFERENCE_RULE`, in the card and in the catalog's `reference` entry) is
derived from it.
"""

from __future__ import annotations

import math

MIN_OBJECT_CONSISTENCY = 3  # Graph200K: a subject reference is usable at objectConsistency >= 3
REFERENCE_RULE = (f"reference counts only when quality.objectConsistency is absent or a number "
                  f">= {MIN_OBJECT_CONSISTENCY}")


def reference_usable(meta: object) -> bool:
    """False when the sample's metadata rates its reference below the threshold, or rates it with
    something that is not a number ("high", NaN): a rating we cannot read is not trusted. No metadata,
    no `quality` or no score: usable (most inputs are not rated at all)."""
    quality = meta.get("quality") if isinstance(meta, dict) else None
    score = quality.get("objectConsistency") if isinstance(quality, dict) else None
    if score is None:
        return True
    if isinstance(score, bool):
        return False
    try:
        value = float(score)
    except (TypeError, ValueError):
        return False
    return math.isfinite(value) and value >= MIN_OBJECT_CONSISTENCY
