"""How a degradation is declared, and the `Params` record that makes it replayable.

A degradation is one function `fn(image, p) -> image` registered under its
canonical node name. It reads every random or sampled value through `p`
(`p.uniform`, `p.integers`, `p.choice`, `p.generator`), which either draws it
and records it, or, when replaying, returns the recorded value. So the params
dict that comes back from a draw reproduces the output exactly by construction,
and no degradation can forget to record something it used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from graph200k import DEGRADATION_NAMES

REFERENCE_SIZE = 512
"""Pixel size at which the reference's spatial parameters are defined.

The reference degrades Graph200K targets at full size, and the training targets
(Subjects200K images) are 512x512; the result is then resized to the cell. A
degradation run on a cell of short side S therefore scales every spatial
parameter by `S / REFERENCE_SIZE` (see `Params.scale`)."""


class Params:
    """Values one degradation call used, drawn from `rng` or replayed from `stored`.

    `fixed` values (replay, or a forced severity/method) are returned as given;
    with `strict`, a value that is not in `fixed` is an error instead of a draw.
    """

    def __init__(self, name: str, image_shape: tuple[int, ...], rng: np.random.Generator | None,
                 fixed: dict[str, Any] | None = None, strict: bool = False):
        self.name = name
        self.scale = min(image_shape[0], image_shape[1]) / REFERENCE_SIZE
        self._rng = rng
        self._fixed = dict(fixed or {})
        self._strict = strict
        self.record: dict[str, Any] = {"name": name}

    def _get(self, key: str, draw: Callable[[], Any]) -> Any:
        if key in self._fixed:
            value = self._fixed[key]
        elif self._strict or self._rng is None:
            raise ValueError(f"params for degradation {self.name!r} lack {key!r}; pass the dict "
                             f"that degrade() returned, unchanged")
        else:
            value = draw()
        self.record[key] = value
        return value

    def uniform(self, key: str, low: float, high: float) -> float:
        return float(self._get(key, lambda: low + (high - low) * float(self._rng.random())))

    def integers(self, key: str, low: int, high_inclusive: int) -> int:
        return int(self._get(key, lambda: int(self._rng.integers(low, high_inclusive + 1))))

    def choice(self, key: str, options: Sequence[Any]) -> Any:
        value = self._get(key, lambda: options[int(self._rng.integers(len(options)))])
        if value not in options:
            raise ValueError(f"params for degradation {self.name!r}: {key}={value!r} is not one of {list(options)}")
        return value

    def generator(self) -> np.random.Generator:
        """A generator for noise fields, line positions and the like, seeded from `seed`."""
        return np.random.default_rng(self.integers("seed", 0, 2**31 - 1))

    def px(self, reference_px: float, minimum: float = 0.0) -> float:
        """A length given at `REFERENCE_SIZE`, in pixels of this image."""
        return max(minimum, reference_px * self.scale)

    def odd_px(self, reference_px: float, minimum: int = 1) -> int:
        """An odd kernel size given at `REFERENCE_SIZE`, in pixels of this image."""
        return max(minimum, int(round(reference_px * self.scale)) | 1)

    @property
    def severity(self) -> int:
        return int(self._fixed["severity"])

    def binned(self, key: str, low: float, high: float, levels: int = 5) -> float:
        """A value drawn uniformly from the severity's fifth of [low, high]: severity
        1..levels splits the reference's range into equal bins, so a uniformly drawn
        severity reproduces the reference's distribution."""
        step = (high - low) / levels
        start = low + (self.severity - 1) * step
        return self.uniform(key, start, start + step)


Fn = Callable[[np.ndarray, Params], np.ndarray]


@dataclass(frozen=True)
class Degradation:
    """A registered degradation: canonical node name, function, severity levels
    (empty: none), sub-methods (empty: one recipe) and its row of the severity table."""

    name: str
    fn: Fn
    severities: tuple[int, ...]
    methods: tuple[str, ...]
    table: str


REGISTRY: dict[str, Degradation] = {}


def degradation(name: str, *, severities: int = 0, methods: Sequence[str] = (), table: str) -> Callable[[Fn], Fn]:
    """Register `fn` as the degradation node `name` (which must be declared in the catalog)."""
    if name not in DEGRADATION_NAMES:
        raise ValueError(f"{name!r} is not a degradation node in graph200k.catalog")
    if name in REGISTRY:
        raise ValueError(f"degradation {name!r} registered twice")

    def register(fn: Fn) -> Fn:
        REGISTRY[name] = Degradation(name, fn, tuple(range(1, severities + 1)), tuple(methods), table)
        return fn

    return register
