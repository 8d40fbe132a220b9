"""A picture of the task graph: node types coloured by group, edges by family."""

from __future__ import annotations

from pathlib import Path

from .nodes import Group
from .tasks import TaskGraph

GROUP_COLOURS = {
    Group.TARGET: "#e8c547",
    Group.REFERENCE: "#f08a5d",
    Group.CONDITION: "#6fb3d2",
    Group.STYLE: "#b983ff",
    Group.EDITING: "#7bd389",
    Group.DEGRADATION: "#c4c4c4",
}
FOLDED = "32 degradations"


def _positions(graph: TaskGraph, fold_degradations: bool) -> dict[str, tuple[float, float]]:
    nodes = graph.nodes
    pos = {}
    # Layered: conditions in a column on the left, target and reference in the
    # middle, the other groups in a column on the right.
    for node in nodes.in_group(Group.TARGET):
        pos[node.name] = (0.0, 0.8)
    for node in nodes.in_group(Group.REFERENCE):
        pos[node.name] = (0.0, -4.6)
    conds = nodes.in_group(Group.CONDITION)
    for i, node in enumerate(conds):
        pos[node.name] = (-5.0, 5.0 - 10.0 * i / max(1, len(conds) - 1))
    right = [*nodes.in_group(Group.STYLE)]
    degs = nodes.in_group(Group.DEGRADATION)
    right.append(FOLDED if fold_degradations else None)
    right.extend(nodes.in_group(Group.EDITING))
    for i, node in enumerate(right):
        if node is not None:
            pos[node if isinstance(node, str) else node.name] = (5.0, 4.6 - 9.2 * i / max(1, len(right) - 1))
    if not fold_degradations:
        for i, node in enumerate(degs):
            pos[node.name] = (8.5 + 2.0 * (i // 11), 5.0 - 1.0 * (i % 11))
    return pos


def draw_task_graph(graph: TaskGraph, out: str | Path, fold_degradations: bool = True) -> Path:
    """Write a PNG of the node types and the family-labelled edges between them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch, Patch

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pos = _positions(graph, fold_degradations)
    groups = {n.name: n.group for n in graph.nodes}

    def shown(name: str) -> str:
        if fold_degradations and groups[name] is Group.DEGRADATION:
            return FOLDED
        return name

    families = graph.family_names()
    cmap = matplotlib.colormaps["tab20"]
    fam_colour = {f: cmap(i / max(1, len(families) - 1)) for i, f in enumerate(families)}
    edges: dict[tuple[str, str, str], int] = {}
    for u, v, fam in graph.graph.edges(keys=True):
        key = (shown(u), shown(v), fam)
        edges[key] = edges.get(key, 0) + len(graph.graph.edges[u, v, fam]["tasks"])

    fig, ax = plt.subplots(figsize=(15, 10), dpi=110)
    for (u, v, fam), count in sorted(edges.items()):
        rad = 0.08 + 0.05 * families.index(fam) % 0.4
        ax.annotate(
            "", xy=pos[v], xytext=pos[u],
            arrowprops=dict(arrowstyle="-|>", color=fam_colour[fam], lw=0.8 + 0.15 * min(count, 12),
                            alpha=0.75, shrinkA=22, shrinkB=22, connectionstyle=f"arc3,rad={rad}"),
        )
    for name, (x, y) in pos.items():
        if name == FOLDED:
            colour, label = GROUP_COLOURS[Group.DEGRADATION], f"{FOLDED}\n(blur, jpeg, noise, rain,\nfrost, rotate90, ...)"
        else:
            node = graph.nodes.get(name)
            colour = GROUP_COLOURS[node.group]
            label = name if node.graph200k_name == name else f"{name}\n({node.graph200k_name})"
        ax.add_patch(FancyBboxPatch((x - 0.75, y - 0.32), 1.5, 0.64, boxstyle="round,pad=0.05",
                                    fc=colour, ec="#333333", lw=1.0, zorder=3))
        ax.text(x, y, label, ha="center", va="center", fontsize=8.5, zorder=4)

    counts = {f: len(graph.tasks(family=f)) for f in families}
    fam_handles = [Patch(color=fam_colour[f], label=f"{f} ({counts[f]})") for f in families]
    grp_handles = [Patch(fc=c, ec="#333333", label=g.value) for g, c in GROUP_COLOURS.items()]
    leg1 = ax.legend(handles=fam_handles, title="task families (tasks)", loc="lower left", fontsize=8)
    ax.add_artist(leg1)
    ax.legend(handles=grp_handles, title="node groups", loc="upper right", fontsize=8)
    ax.set_title(
        f"Graph200K task graph: {len(graph.nodes)} node types, {len(graph.tasks())} training tasks "
        f"in {len(families)} families. An arrow chain is a task; its last node is the target.",
        fontsize=12,
    )
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 5.5, max(xs) + 3.0)
    ax.set_ylim(min(ys) - 1.6, max(ys) + 0.9)
    ax.set_aspect("equal")
    ax.axis("off")
    fig.tight_layout()
    tmp = out.with_name(out.name + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(out)
    return out
