"""Which sample keys are held out for validation: one rule for the trainer and `graph200k shards`.

A key is held out when its hash, read as a number in [0, 1), falls under `fraction`.
The decision depends on the key alone: adding or removing other samples never moves a
key between the training and the validation side, every process and every tool agree
without sharing a list, and about `fraction` of any large key set is held out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

_PERSON = b"graph200k-holdou"  # blake2b personalisation (16 bytes): this rule's own hash space


def holdout_score(key: str) -> float:
    """The key's position in [0, 1), uniform over keys (blake2b, 64 bits)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8, person=_PERSON).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def check_fraction(fraction: float) -> float:
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"holdout fraction must be within [0, 1) (0 holds nothing out), got {fraction!r}")
    return float(fraction)


def is_held_out(key: str, fraction: float) -> bool:
    """True when `key` belongs to the validation side at this holdout `fraction`."""
    return holdout_score(key) < check_fraction(fraction)


@dataclass(frozen=True)
class HoldoutFilter:
    """A picklable key filter (DataLoader workers): keeps held-out keys, or with `held_out=False` the others."""

    fraction: float
    held_out: bool = True

    def __post_init__(self):
        check_fraction(self.fraction)

    def __call__(self, key: str) -> bool:
        return (holdout_score(key) < self.fraction) == self.held_out
