"""Sample keys: `[A-Za-z0-9_-]+`, stable across runs, collisions resolved the same way every time.

webdataset splits a tar member's name at the first dot of its basename, so a
key must not contain one; spaces and non-ASCII characters make keys awkward in
shells and URLs. `sanitise_key` folds a name to the allowed characters;
`assign_keys` gives every input a distinct key: the first input (in sorted
order of the original names) keeps the plain sanitised key, every later one
that folds to the same key (e.g. `photo.jpg` beside `photo.png`, or
`a b.jpg` beside `a_b.jpg`) gets `-<8 hex digits of sha1(original name)>`, which
depends only on its own name, so keys never shift when other inputs come or go.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from typing import Mapping

KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
_BAD = re.compile(r"[^A-Za-z0-9_-]+")


def sanitise_key(name: str) -> str:
    """Fold `name` to `[A-Za-z0-9_-]+`: accents dropped, other runs of characters to `_`."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    key = _BAD.sub("_", ascii_name).strip("_")
    return key or "sample"


def _suffix(original: str) -> str:
    return hashlib.sha1(original.encode("utf-8")).hexdigest()[:8]


@dataclass(frozen=True)
class Collision:
    """Inputs whose names fold to the same key, and the keys they were given."""

    key: str
    originals: tuple[str, ...]
    assigned: tuple[str, ...]

    def to_json(self) -> dict:
        return {"key": self.key, "inputs": list(self.originals), "assigned": list(self.assigned)}


def assign_keys(stems: Mapping[str, str]) -> tuple[dict[str, str], list[Collision]]:
    """Give each input a unique key; also return the collisions that were resolved.

    `stems` maps an input's unique original name (a file name, a tar member key,
    an Arrow row id) to the stem its key is folded from."""
    groups: dict[str, list[str]] = {}
    for original in sorted(stems):
        groups.setdefault(sanitise_key(stems[original]), []).append(original)
    keys: dict[str, str] = {}
    taken = set(groups)
    collisions: list[Collision] = []
    for key, members in groups.items():
        keys[members[0]] = key
        assigned = [key]
        for original in members[1:]:
            candidate = f"{key}-{_suffix(original)}"
            n = 1
            while candidate in taken:
                candidate = f"{key}-{_suffix(original)}-{n}"
                n += 1
            taken.add(candidate)
            keys[original] = candidate
            assigned.append(candidate)
        if len(members) > 1:
            collisions.append(Collision(key, tuple(members), tuple(assigned)))
    return keys, collisions
