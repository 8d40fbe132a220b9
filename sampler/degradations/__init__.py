"""The 32 degradation node types, made online from the target.

`degrade(image, name, rng, severity=None, params=None) -> (degraded, params)`
takes an RGB uint8 array (H, W, 3) and a degradation node name (canonical or
Graph200K spelling) and returns an RGB uint8 array of the same height and width
(rotations of non-square images swap them) plus a small JSON-serialisable dict.
Passing that dict back as `params=` reproduces the output exactly: it records
the node, the severity, the sub-method, every sampled scalar and the `seed` of
every noise field, line position and texture. Exact replay is for tests and
debugging: the in-context rows of a grid share only the query's kind (method and
severity) and draw their own seeds (`sampler.sharing.RowSharing`), so no row
carries the query's residual.

Where degradations run: on the cell, after resizing. Cost and visual strength
then do not depend on the source's resolution. The reference degrades the full
source (512x512 for Graph200K's training targets) and resizes afterwards, so
every spatial parameter (blur radius, kernel size, line width, displacement,
block size, streak length, crystal size) is given in pixels at
`REFERENCE_SIZE` = 512 and multiplied by `scale = min(H, W) / 512`: a 384-px
cell gets 0.75x the reference's radii, exactly what the reference's 512-px
result shows after its resize to 384. Per-pixel noise, codec block sizes and
the names' own factors (SRx2, SRx4) are not rescaled: they are defined per
pixel of the image shown.

Severity: an integer 1 (mild) .. 5 (compression and quantization: 1 .. 3), drawn
uniformly when not given; nodes with a fixed recipe have none (pass None).
Where the reference draws from a range, the severities split it into equal bins
(so a random severity reproduces the reference's distribution); where it uses
fixed levels, they are its levels; where it uses one value, that value is
severity 3 (frost: ImageNet-C's five levels, the reference's being 4; elastic:
see the table).
`severity_table()` returns every node's levels as Markdown; docs/ARCHITECTURE.md holds a copy.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import numpy as np

from graph200k import DEFAULT_NODES, DEGRADATION_NAMES, Group

from . import blur, codecs, geometry, noise, overlays, palette, tone  # noqa: F401  (they register)
from .registry import REFERENCE_SIZE, REGISTRY, Degradation, Params

__all__ = ["DEGRADATION_NAMES", "REFERENCE_SIZE", "degrade", "degrade_variant", "describe", "lookup",
           "severity_table", "variants"]

_missing = set(DEGRADATION_NAMES) - set(REGISTRY)
if _missing:
    raise ImportError(f"degradation nodes declared in graph200k.catalog without an implementation: {sorted(_missing)}")


def lookup(name: str) -> Degradation:
    """The degradation called `name` (canonical or Graph200K spelling), or ValueError listing them."""
    try:
        node = DEFAULT_NODES.get(name)
    except ValueError:
        node = None
    if node is None or node.group is not Group.DEGRADATION:
        raise ValueError(f"{name!r} is not a degradation; valid names: {', '.join(DEGRADATION_NAMES)} "
                         f"(or their Graph200K spellings)")
    return REGISTRY[node.name]


def _check_image(image: Any) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{type(image).__name__} {getattr(image, 'dtype', '')} {getattr(image, 'shape', '')}".strip()
        raise ValueError(f"degrade() needs an RGB uint8 array of shape (H, W, 3); got {got}")
    if image.shape[0] < 8 or image.shape[1] < 8:
        raise ValueError(f"degrade() needs an image of at least 8x8 pixels; got {image.shape[1]}x{image.shape[0]}")


def _run(image: np.ndarray, spec: Degradation, rng: np.random.Generator | None,
         fixed: dict[str, Any], strict: bool) -> tuple[np.ndarray, dict[str, Any]]:
    _check_image(image)
    if spec.severities:
        if fixed.get("severity") is None:
            if strict:
                raise ValueError(f"params for degradation {spec.name!r} lack 'severity'")
            fixed["severity"] = int(rng.choice(spec.severities))
        if fixed["severity"] not in spec.severities:
            raise ValueError(f"severity {fixed['severity']!r} for {spec.name!r}: expected one of {list(spec.severities)}")
    elif fixed.get("severity") is not None:
        raise ValueError(f"degradation {spec.name!r} has no severity levels; pass severity=None")
    p = Params(spec.name, image.shape, rng, fixed, strict)
    if spec.severities:
        p.record["severity"] = int(fixed["severity"])
    out = spec.fn(np.ascontiguousarray(image), p)
    if out.dtype != np.uint8 or out.ndim != 3 or out.shape[2] != 3:
        raise RuntimeError(f"degradation {spec.name!r} returned {out.dtype} {out.shape}; expected uint8 (H, W, 3)")
    return out, p.record


def degrade(image: np.ndarray, name: str, rng: np.random.Generator | None, severity: int | None = None,
            params: Mapping[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Degrade `image` as node `name`; see the module docstring for the contract.

    With `params` (a dict an earlier call returned) nothing is drawn and `rng` may be
    None; `severity`, if also given, must agree with it.
    """
    spec = lookup(name)
    if params is None:
        if rng is None:
            raise ValueError("degrade() needs a numpy.random.Generator to draw from (or params= to replay)")
        return _run(image, spec, rng, {"severity": severity}, strict=False)
    params = dict(params)
    if "name" in params and lookup(params["name"]).name != spec.name:
        raise ValueError(f"params are for {params['name']!r}, not for {spec.name!r}")
    if severity is not None and params.get("severity") != severity:
        raise ValueError(f"severity={severity} disagrees with params severity={params.get('severity')}")
    return _run(image, spec, None, params, strict=True)


def degrade_variant(image: np.ndarray, name: str, rng: np.random.Generator, *, severity: int | None = None,
                    method: str | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """`degrade` with the sub-method forced too (benchmarks and tests walk every variant)."""
    spec = lookup(name)
    if method is not None and method not in spec.methods:
        raise ValueError(f"{spec.name!r} has no method {method!r}; methods: {list(spec.methods)}")
    fixed: dict[str, Any] = {"severity": severity}
    if method is not None:
        fixed["method"] = method
    return _run(image, spec, rng, fixed, strict=False)


def variants(name: str) -> list[tuple[int | None, str | None]]:
    """Every (severity, method) pair of degradation `name`."""
    spec = lookup(name)
    return [(s, m) for s in (spec.severities or (None,)) for m in (spec.methods or (None,))]


def describe(params: Mapping[str, Any]) -> str:
    """A short label of a params dict: `name s3 method key=value ...` (seed left out)."""
    parts = [str(params.get("name", "?"))]
    if "severity" in params:
        parts.append(f"s{params['severity']}")
    if "method" in params:
        parts.append(str(params["method"]))
    for key, value in params.items():
        if key in ("name", "severity", "method", "seed"):
            continue
        parts.append(f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(parts)


def severity_table() -> str:
    """The severity levels of every degradation, as a Markdown table."""
    rows = ["| node | Graph200K | severities | methods | levels (px at 512 unless said) |", "|---|---|---|---|---|"]
    for name in DEGRADATION_NAMES:
        spec = REGISTRY[name]
        levels = f"1-{len(spec.severities)}" if spec.severities else "none"
        rows.append(f"| {name} | {DEFAULT_NODES.get(name).graph200k_name} | {levels} | "
                    f"{', '.join(spec.methods) or '-'} | {spec.table} |")
    return "\n".join(rows)


def params_json(params: Mapping[str, Any]) -> str:
    """`params` as compact JSON (what a shard or log stores)."""
    return json.dumps(dict(params), separators=(",", ":"), sort_keys=True)
