"""A picture of the task graph a person can follow: one small panel per task family.

Drawn as one graph, 129 tasks over 49 node types are a tangle of crossing arcs.
Each family is a handful of path patterns of equal length (`graph200k.tasks`),
so a family's tasks fit a panel in columns: column j holds the nodes at position
j of its paths, arrows join consecutive positions, the last column is what the
task generates. Nodes are coloured by group; the degradations are folded into
one node unless `fold_degradations=False`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from .nodes import Group
from .shardio import atomic_file
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
PANEL_COLUMNS = 3  # panels per row of the figure
NODES_PER_STACK = 11  # a column with more nodes is drawn as several side-by-side stacks


@dataclass(frozen=True)
class FamilyPanel:
    """What one family's panel shows: its nodes by path position, the arrows between them, its task counts."""

    family: str
    columns: tuple[tuple[str, ...], ...]  # node names per path position; the last column is generated
    edges: tuple[tuple[str, str], ...]  # (from, to), between consecutive columns
    tasks: int
    test_tasks: int
    rule: str  # the family's path patterns, as `FamilyRule.describe` writes them


def family_panels(graph: TaskGraph, fold_degradations: bool = True) -> list[FamilyPanel]:
    """One panel per family of `graph`, in the graph's family order."""
    groups = {n.name: n.group for n in graph.nodes}
    rules = {f.name: f.describe() for f in graph.families}

    def shown(name: str) -> str:
        return FOLDED if fold_degradations and groups[name] is Group.DEGRADATION else name

    test = {t.id for t in graph.tasks(split="test")}
    panels = []
    for family in graph.family_names():
        tasks = graph.tasks(family=family)
        columns: list[list[str]] = []
        edges: list[tuple[str, str]] = []
        for task in tasks:
            path = [shown(n) for n in task.nodes]
            for j, name in enumerate(path):
                if j == len(columns):
                    columns.append([])
                if name not in columns[j]:
                    columns[j].append(name)
            for edge in zip(path, path[1:]):
                if edge not in edges:
                    edges.append(edge)
        panels.append(FamilyPanel(family, tuple(tuple(c) for c in columns), tuple(edges), len(tasks),
                                  sum(t.id in test for t in tasks), rules[family]))
    return panels


def _stacks(names: tuple[str, ...]) -> list[tuple[str, ...]]:
    """A column's nodes split into stacks of at most `NODES_PER_STACK`, as evenly as possible."""
    n_stacks = math.ceil(len(names) / NODES_PER_STACK)
    per = math.ceil(len(names) / n_stacks)
    return [names[i:i + per] for i in range(0, len(names), per)]


def _node_positions(panel: FamilyPanel) -> dict[tuple[int, str], tuple[float, float]]:
    """(column, node) -> (x, y) in a [0, 1] x [0, 1] panel; the first column left, the generated one right."""
    pos = {}
    n = len(panel.columns)
    for j, names in enumerate(panel.columns):
        x_col = 0.1 + 0.8 * j / max(1, n - 1)
        stacks = _stacks(names)
        for s, stack in enumerate(stacks):
            x = x_col + 0.23 * (s - (len(stacks) - 1) / 2)
            step = min(0.88 / max(1, len(stack) - 1), 0.2)  # few nodes stay close together
            for i, name in enumerate(stack):
                pos[(j, name)] = (x, 0.5 + step * ((len(stack) - 1) / 2 - i))
    return pos


def _label(graph: TaskGraph, name: str, crowded: bool) -> str:
    """The node's name, with its Graph200K spelling where that differs (not in a crowded column)."""
    if name == FOLDED:
        return f"{FOLDED}\n(blur, jpeg, rain, ...)"
    node = graph.nodes.get(name)
    return name if crowded or node.graph200k_name == name else f"{name} ({node.graph200k_name})"


def _colour(graph: TaskGraph, name: str) -> str:
    return GROUP_COLOURS[Group.DEGRADATION if name == FOLDED else graph.nodes.get(name).group]


def _draw_panel(ax, graph: TaskGraph, panel: FamilyPanel) -> None:
    pos = _node_positions(panel)
    crowded = max(len(c) for c in panel.columns) > NODES_PER_STACK
    texts = {}
    for (j, name), (x, y) in pos.items():
        texts[(j, name)] = ax.text(
            x, y, _label(graph, name, crowded), ha="center", va="center", fontsize=6.5 if crowded else 8.5, zorder=3,
            bbox=dict(boxstyle="round,pad=0.3", fc=_colour(graph, name), ec="#333333", lw=0.8))
    column_of = {}
    for j, names in enumerate(panel.columns):
        for name in names:
            column_of.setdefault(name, []).append(j)
    for u, v in panel.edges:
        # an edge joins u at some position j to v at position j + 1
        for j in column_of[u]:
            if (j + 1, v) in texts:
                ax.annotate("", xy=(0.0, 0.5), xycoords=texts[(j + 1, v)], xytext=(1.0, 0.5),
                            textcoords=texts[(j, u)],
                            arrowprops=dict(arrowstyle="-|>", color="#555555", lw=0.5 if crowded else 0.8,
                                            alpha=0.6, shrinkA=1, shrinkB=1), zorder=1)
                break
    split = f", {panel.test_tasks} in the test split" if panel.test_tasks else ""
    ax.set_title(f"{panel.family}\n{panel.tasks} task{'s' * (panel.tasks != 1)}{split}", fontsize=10)
    ax.text(0.5, -0.04, panel.rule, ha="center", va="top", fontsize=7, color="#555555", wrap=True,
            transform=ax.transAxes)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.axis("off")


def draw_task_graph(graph: TaskGraph, out: str | Path, fold_degradations: bool = True) -> Path:
    """Write a PNG with one panel per family (`family_panels`), atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    panels = family_panels(graph, fold_degradations)
    rows = math.ceil(len(panels) / PANEL_COLUMNS)
    fig, axes = plt.subplots(rows, PANEL_COLUMNS, figsize=(6.2 * PANEL_COLUMNS, 4.6 * rows + 1.2), dpi=100,
                             squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, panel in zip(axes.flat, panels):
        _draw_panel(ax, graph, panel)
    fig.legend(handles=[Patch(fc=c, ec="#333333", label=g.value) for g, c in GROUP_COLOURS.items()],
               title="node groups", loc="upper right", ncol=len(GROUP_COLOURS), fontsize=9)
    fig.suptitle(
        f"Graph200K task graph: {len(graph.nodes)} node types, {len(graph.tasks())} training tasks in "
        f"{len(panels)} families ({len(graph.tasks(split='test'))} in the test split).\n"
        "One panel per family; a task is one path left to right: the nodes on it are the grid's columns, "
        "the last one is generated.", x=0.01, ha="left", fontsize=13)
    fig.tight_layout(rect=(0, 0, 1, 1 - 1.0 / (4.6 * rows + 1.2)), h_pad=2.5)
    with atomic_file(out) as f:
        fig.savefig(f, format="png")
    plt.close(fig)
    return out
