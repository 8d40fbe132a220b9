"""Who made each node of a pack, and under which licence: the dataset card's provenance section.

Everything comes from what the dataset folder already records, so this base
layer never imports `annotators`: the source shards' stats name the input the
samples were imported from, and the node shards' stats name the annotator, its
model and the model's licence (written by `annotators.annotate`). A pack is
only as free as its most restrictive node: depth maps from Depth-Anything V2
Large are CC-BY-NC-4.0, FLUX-made nodes fall under the FLUX.1 [dev]
Non-Commercial License, so the card says so in one line.
"""

from __future__ import annotations

import re

from .nodes import NodeRegistry, Production

GRAPH200K_CREDIT = "Graph200K (VisualCloze), Apache-2.0"
"""Credit for samples imported from the Graph200K release (https://huggingface.co/datasets/VisualCloze/Graph200K)."""

RELEASE_KINDS = ("arrow",)
"""Input kinds read with the Graph200K release's column schema (`annotators.inputs.sources`)."""

INPUT_LICENCE = "the input's own, not recorded (credit its publisher; Graph200K's is Apache-2.0)"
NOT_RECORDED = "not recorded (rerun the annotator, or see `python -m annotators list`)"

_RESTRICTIONS = (  # most restrictive first: (what, pattern over the licence text)
    ("non-commercial", re.compile(r"non-?commercial|\bNC\b|-NC-|\bNC\d", re.IGNORECASE)),
    ("use restrictions (RAIL)", re.compile(r"rail", re.IGNORECASE)),
    ("unknown or custom", re.compile(r"other|not recorded|unknown|see ", re.IGNORECASE)),
)


def licence_restriction(licence: str) -> str | None:
    """The strongest restriction a licence text carries (`non-commercial`, ...), None for a permissive one."""
    for what, pattern in _RESTRICTIONS:
        if pattern.search(licence or ""):
            return what
    return None


def input_credit(inputs: list[dict]) -> tuple[str, str]:
    """(where imported images come from, their licence) from the source shards' stats (`input`, `kind`)."""
    seen = sorted({(s.get("input") or "?", s.get("kind") or "?") for s in inputs})
    where = ", ".join(kind if path == kind else f"`{path}` ({kind})" for path, kind in seen) or "?"
    if seen and all(kind in RELEASE_KINDS for _, kind in seen):
        return f"imported from the Graph200K release: {where}", GRAPH200K_CREDIT
    return f"imported from the input: {where}", INPUT_LICENCE


def node_provenance(node_counts: dict[str, int], nodes: NodeRegistry, annotators: dict,
                    inputs: list[dict]) -> list[dict]:
    """Per node present in the pack: who made it (`made_by`) and its `licence`.

    `annotators` maps a node to its node shards' stats (annotator, version,
    model_id, revision, license); a stored node without one was imported with
    the source samples; derived and online nodes are computed at sampling time."""
    imported, imported_licence = input_credit(inputs)
    rows = []
    for name, count in node_counts.items():
        if not count:
            continue
        node = nodes.get(name)
        made = annotators.get(name)
        if made:
            model = f" with `{made['model_id']}`@{made.get('revision') or '-'}" if made.get("model_id") else ""
            made_by = f"annotator `{made['annotator']}` v{made.get('version')}{model}"
            if made.get("license") is None:  # stats written before the licence was recorded
                licence = NOT_RECORDED
            else:
                licence = made["license"] or "no model weights (computed by code in this repo, Apache-2.0)"
        elif node.produced_by in (Production.DERIVED, Production.ONLINE) and node.storage is None:
            needs = ", ".join(node.requires) or "the target"
            made_by, licence = f"computed at sampling time from {needs}", "that of the nodes it is computed from"
        else:
            made_by, licence = imported, imported_licence
        rows.append({"node": name, "samples": count, "made_by": made_by, "licence": licence,
                     "restriction": licence_restriction(licence) if made or node.storage else None})
    return rows


def grouped_rows(rows: list[dict]) -> list[dict]:
    """`rows` with the nodes of the same maker and licence in one row (the 30 degradations would otherwise
    fill the card); `samples` becomes a range when the counts differ."""
    grouped: dict[tuple, list[dict]] = {}
    for row in rows:
        grouped.setdefault((row["made_by"], row["licence"]), []).append(row)
    out = []
    for members in grouped.values():
        counts = sorted({m["samples"] for m in members})
        out.append({**members[0], "node": ", ".join(m["node"] for m in members),
                    "samples": str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"})
    return out


def most_restrictive(rows: list[dict]) -> str:
    """One line: the strongest restriction in the pack and the nodes that carry it."""
    for what, _ in _RESTRICTIONS:
        carriers = [r for r in rows if r["restriction"] == what]
        if carriers:
            licences = sorted({r["licence"] for r in carriers})
            return (f"Most restrictive: {what}: {'; '.join(licences)} "
                    f"(nodes: {', '.join(r['node'] for r in carriers)}). The pack as a whole is bound by it.")
    return "Most restrictive: none; every node's licence is permissive."
