"""What the rows of one grid share: the one setting that decides it.

An in-context row must demonstrate the same task as the query without handing
the model the query's answer. So by default rows share the *kind* of an online
degradation (its node, sub-method and severity: the examples show the same
corruption at the same strength) but every row draws its own spatial
randomness (noise seeds, dot and streak positions, holes, warp fields), and
every row of a style task draws its own style instance, as the paper does.

degradation:
  "kind"   (default) method and severity come from the query, everything else
           is drawn per row;
  "none"   every row draws everything, method and severity included (the
           reference's behaviour, spec item 17);
  "exact"  every row replays the query's whole params dict, seeds included
           (debugging and tests only: the rows then carry the query's residual).
style:
  "independent" (default) each row picks its own style instance;
  "prefer_same" each row picks an instance made from the query's style
           reference when it has one.

The planner applies `style` (plans stay pixel-free), the renderer
`degradation`; every row's params come back in `GridSample.degradations`.
tests/test_sampler_rows.py measures the leak: under "kind" an example row's
changed pixels overlap the query's as two independent masks would (~1.0x),
under "exact" up to ~50x (salt-and-pepper).
"""

from __future__ import annotations

from dataclasses import dataclass

DEGRADATION_SHARING = ("kind", "none", "exact")
STYLE_SHARING = ("independent", "prefer_same")

# The params keys that make up a degradation's "kind": shared across rows under "kind".
KIND_KEYS = ("severity", "method")


@dataclass(frozen=True)
class RowSharing:
    """How the rows of a grid relate to the query row (see the module docstring)."""

    degradation: str = "kind"
    style: str = "independent"

    def __post_init__(self):
        if self.degradation not in DEGRADATION_SHARING:
            raise ValueError(f"row sharing degradation={self.degradation!r}: expected one of "
                             f"{', '.join(DEGRADATION_SHARING)}")
        if self.style not in STYLE_SHARING:
            raise ValueError(f"row sharing style={self.style!r}: expected one of {', '.join(STYLE_SHARING)}")


def check_sharing(sharing) -> RowSharing:
    """`sharing` if it is a `RowSharing`; otherwise a TypeError saying what to pass."""
    if not isinstance(sharing, RowSharing):
        raise TypeError(f"sharing={sharing!r}: pass a sampler.RowSharing(degradation=..., style=...), "
                        f"e.g. RowSharing(degradation='kind', style='independent')")
    return sharing
