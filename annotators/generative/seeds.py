"""Per-instance seeds: stable across runs, workers and machines, so a rerun regenerates the same bytes."""

from __future__ import annotations

import hashlib


def instance_seed(base_seed: int, node: str, key: str, index: int) -> int:
    """A 31-bit seed for instance `index` of `node` in sample `key`, stable across runs and machines."""
    digest = hashlib.sha256(f"{base_seed}/{node}/{key}/{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
