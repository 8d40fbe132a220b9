"""Which keys `python -m graph200k shards --holdout ...` writes into `heldout-*.tar` instead of `train-*.tar`.

The rule is the trainer's (`graph200k.holdout`: a key's hash score, read as a number in [0, 1)), so a
FRACTION here and `validation.holdout` with the same value pick the same keys. A FRACTION depends on
each key alone: adding images never moves a key between the splits. A COUNT (`--holdout 500`) takes
the keys of lowest score in this pack, so a later pack of a grown dataset can move a held-out key to
training (never the other way) when new keys score lower; use a FRACTION or `--holdout-keys` for a
split that must never change. Named keys (`--holdout-keys FILE`) are held out as well as the rule's.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from .holdout import check_fraction, holdout_score
from .nodes import Graph200kError


@dataclass(frozen=True)
class HoldoutSpec:
    """`count` keys of lowest score, or the keys scoring under `fraction`, plus the named `keys`."""

    count: int = 0
    fraction: float = 0.0
    keys: frozenset[str] = field(default_factory=frozenset)
    keys_file: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.count or self.fraction or self.keys)

    def describe(self) -> dict:
        """The rule as the card records it."""
        return {"count": self.count, "fraction": self.fraction, "named_keys": len(self.keys),
                "keys_file": self.keys_file, "score": "graph200k.holdout.holdout_score (blake2b of the key)"}

    def selector(self, all_keys: Callable[[], Iterable[str]]) -> Callable[[str], bool]:
        """A key -> held out? test; `all_keys` (every key of the pack) is read only for a count."""
        lowest: frozenset[str] = frozenset()
        if self.count:
            lowest = frozenset(heapq.nsmallest(self.count, set(all_keys()), key=lambda k: (holdout_score(k), k)))
        fraction, named = self.fraction, self.keys
        return lambda key: key in named or key in lowest or (fraction > 0 and holdout_score(key) < fraction)


def parse_holdout(text: str | None, keys_file: str | Path | None = None) -> HoldoutSpec:
    """`--holdout N|FRACTION` (0 or absent: none) and `--holdout-keys FILE` (one key a line, `#` comments)."""
    count, fraction = 0, 0.0
    if text is not None and str(text).strip() not in ("", "0"):
        raw = str(text).strip()
        try:
            number = float(raw)
        except ValueError:
            raise Graph200kError(f"--holdout {raw!r}: give a key count (e.g. 500) or a fraction in (0, 1) "
                                 "(e.g. 0.01); 0 holds nothing out") from None
        if number >= 1:
            if number != int(number) or any(c in raw for c in ".eE"):
                raise Graph200kError(f"--holdout {raw!r}: a count of keys is a whole number (e.g. 500); "
                                     "a fraction lies in (0, 1)")
            count = int(number)
        else:
            try:
                fraction = check_fraction(number)
            except ValueError as err:
                raise Graph200kError(f"--holdout {raw!r}: {err}") from None
    keys: frozenset[str] = frozenset()
    if keys_file is not None:
        path = Path(keys_file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as err:
            raise Graph200kError(f"--holdout-keys {path}: cannot read it ({err.strerror}); give a text file "
                                 "with one sample key a line") from None
        keys = frozenset(k for k in (line.split("#", 1)[0].strip() for line in lines) if k)
        if not keys:
            raise Graph200kError(f"--holdout-keys {path} names no key; give one sample key a line "
                                 "(as index.jsonl's `key`)")
    return HoldoutSpec(count=count, fraction=fraction, keys=keys,
                       keys_file=str(keys_file) if keys_file is not None else None)
