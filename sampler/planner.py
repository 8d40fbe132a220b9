"""Planning a grid: task, rows, instances, columns, cell sizes, mask and prompt, without pixels.

A `GridPlan` is everything random about a grid except the degradations'
own parameters; rendering it (`sampler.render`) is then deterministic given
the pixel generator. Plans are cheap (they read image headers, never pixels),
which is what the statistical tests and `GridDataset.plans()` use.
What the rows share with the query row is one setting,
`sampler.sharing.RowSharing`: the planner applies its `style` half (which
stored style instance each row shows), the renderer its `degradation` half.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np
from PIL import UnidentifiedImageError

from graph200k import Graph200kError, Production, Task, TaskGraph
from graph200k.layout import stored_instances

from .cells import cell_size, image_size
from .instruction import PAIR_SUFFIX, InstructionConfig, build_instruction
from .pool import Pool, PoolSample, UnreadableSample
from .settings import GRID_DEFAULTS
from .sharing import RowSharing, check_sharing

DEFAULT_ROWS: Mapping[int, float] = {1: 0.3, 2: 0.4, 3: 0.3}


@dataclass(frozen=True)
class Cell:
    """One cell of a row: the column it sits in, its node, and the stored field it shows
    (for a derived node, the stored field it is derived from; None for online nodes)."""

    column: str
    node: str
    field: str | None


@dataclass
class RowPlan:
    sample: PoolSample
    cells: list[Cell]
    size: tuple[int, int]  # (w, h) of every cell of the row


@dataclass
class GridPlan:
    """A grid before pixels: rows in grid order (query last), columns after shuffling."""

    step: int
    task: Task
    columns: list[str]
    rows: list[RowPlan]
    mask_column: int
    prompt: str
    permutation: list[int] = field(default_factory=list)

    @property
    def keys(self) -> list[str]:
        return [r.sample.key for r in self.rows]


def _rows_distribution(rows: Mapping[int, float] | None) -> tuple[np.ndarray, np.ndarray]:
    rows = dict(DEFAULT_ROWS if rows is None else rows)
    if not rows:
        raise ValueError("rows: give at least one row count with a probability")
    for r, p in rows.items():
        if not isinstance(r, (int, np.integer)) or r < 1:
            raise ValueError(f"rows: row counts must be integers >= 1, got {r!r}")
        if not p >= 0:
            raise ValueError(f"rows: probability of {r} rows must be >= 0, got {p!r}")
    total = sum(rows.values())
    if total <= 0:
        raise ValueError("rows: the probabilities sum to 0")
    counts = np.array(sorted(rows), dtype=int)
    return counts, np.cumsum([rows[r] / total for r in counts])


def _resolve_tasks(graph: TaskGraph, tasks) -> list[Task]:
    """The tasks `tasks` names, in order and without repeats: "train" / "test" (a split), a family name,
    a task id as `python -m graph200k tasks` prints it ("reference+canny->target"), a node path
    ("reference -> canny -> target" or a list of node names), a `Task`, or a list of any of these."""
    items = [tasks] if isinstance(tasks, (str, Task)) else list(tasks)
    out: list[Task] = []
    for item in items:
        for task in _resolve_one(graph, item):
            if task not in out:
                out.append(task)
    if not out:
        raise Graph200kError("no tasks selected (an empty list); give 'train', 'test', a family or task ids")
    return out


def _resolve_one(graph: TaskGraph, item) -> list[Task]:
    if isinstance(item, Task):
        return [item]
    if not isinstance(item, str):
        return [graph.find(item)]
    text = item.strip()
    if text in ("train", "test"):
        return graph.tasks(split=text)
    if text in graph.family_names():
        return graph.tasks(family=text)
    parts = [p.strip() for p in text.split("->")]
    if len(parts) == 2:  # an id: conditions joined by "+", then the target
        parts = [*(c.strip() for c in parts[0].split("+") if c.strip()), parts[1]]
    if len(parts) >= 2 and all(parts):
        try:
            return [graph.find(parts)]
        except Graph200kError as err:
            raise Graph200kError(f"task {item!r}: {err}{_close_matches(graph, text)}") from None
    raise Graph200kError(f"task {item!r} is no split, family or task id; give 'train', 'test', a family "
                         f"({', '.join(graph.family_names())}) or a task id as `python -m graph200k tasks` prints "
                         f"it, e.g. 'reference+canny->target'{_close_matches(graph, text)}")


def _close_matches(graph: TaskGraph, text: str) -> str:
    import difflib

    names = [t.id for t in graph.tasks()] + graph.family_names()
    close = difflib.get_close_matches(text.replace(" ", ""), names, n=3, cutoff=0.6)
    return f"; did you mean {', '.join(map(repr, close))}?" if close else ""


class TaskMix:
    """The selected tasks by family, the family weights, and which of them a pool can serve."""

    def __init__(self, graph: TaskGraph, tasks="train"):
        self.graph = graph
        selected = _resolve_tasks(graph, tasks)
        self.by_family: dict[str, list[Task]] = {}
        for task in selected:
            self.by_family.setdefault(task.family, []).append(task)
        self.weights = {f: graph.weights[f] for f in self.by_family if graph.weights[f] > 0}
        if not self.weights:
            raise Graph200kError("every selected family has weight 0")
        self._cache: dict[frozenset, dict[str, list[Task]]] = {}

    def servable(self, signatures: frozenset[frozenset[str]]) -> dict[str, list[Task]]:
        """Per family, the tasks that some pool sample carries every node of."""
        hit = self._cache.get(signatures)
        if hit is None:
            hit = {}
            for family in self.weights:
                ok = [t for t in self.by_family[family] if any(set(t.nodes) <= s for s in signatures)]
                if ok:
                    hit[family] = ok
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[signatures] = hit
        return hit


def _pick_weighted(names: Sequence[str], weights: Sequence[float], rng: np.random.Generator) -> str:
    cum = np.cumsum(weights)
    return names[int(np.searchsorted(cum, rng.random() * cum[-1], side="right"))]


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


class Planner:
    """Draws grid plans from a pool; counts whatever the data could not supply."""

    def __init__(self, mix: TaskMix, *, resolution: int, rows: Mapping[int, float] | None = None,
                 mask_any_prob: float = GRID_DEFAULTS.mask_any_prob, shuffle_columns: bool = GRID_DEFAULTS.shuffle_columns,
                 square_cells: bool = GRID_DEFAULTS.square_cells, sharing: RowSharing = RowSharing(), instruction: InstructionConfig | None = InstructionConfig(),
                 counters: Counter | None = None):
        if not 0.0 <= mask_any_prob <= 1.0:
            raise ValueError(f"mask_any_prob must be within [0, 1], got {mask_any_prob!r}")
        cell_size(1, 1, resolution)  # validates the resolution
        self.mix, self.nodes = mix, mix.graph.nodes
        self.resolution = resolution
        self.row_counts, self.row_cum = _rows_distribution(rows)
        self.mask_any_prob = mask_any_prob
        self.shuffle_columns, self.square_cells = shuffle_columns, square_cells
        self.sharing = check_sharing(sharing)
        self.instruction = instruction
        self.counters = counters if counters is not None else Counter()

    # -- choices -------------------------------------------------------------------------
    def _task(self, pool: Pool, rng: np.random.Generator, exclude: set[str]):
        servable = {f: list(ts) for f, ts in self.mix.servable(pool.signatures()).items()}
        families = list(self.mix.weights)
        family = _pick_weighted(families, [self.mix.weights[f] for f in families], rng)
        while True:
            if family not in servable:
                self.counters[f"family_unservable/{family}"] += 1
                if not servable:
                    return None, []
                names = list(servable)
                family = _pick_weighted(names, [self.mix.weights[f] for f in names], rng)
                continue
            tasks = servable[family]
            task = tasks[int(rng.integers(len(tasks)))]
            carriers = pool.carriers(task, exclude)
            if carriers:
                return task, carriers
            tasks.remove(task)  # only excluded (unreadable) samples carry it
            if not tasks:
                del servable[family]

    def _instance(self, sample: PoolSample, node_name: str, rng, like: bytes | None):
        """A stored instance of `node_name`; one whose pair (style reference) has digest `like` if any."""
        node = self.nodes.get(node_name)
        found = stored_instances(node, sample.fields)
        if like is not None and node.storage.pair_field:
            same = [i for i in found if _digest(sample.fields[i.pair]) == like]
            if same:
                return same[int(rng.integers(len(same)))]
        return found[int(rng.integers(len(found)))]

    def _row_cells(self, sample: PoolSample, task: Task, rng, shared: dict) -> list[Cell]:
        cells: list[Cell] = []
        for name in task.nodes:
            node = self.nodes.get(name)
            if node.produced_by is Production.ONLINE:
                cells.append(Cell(name, name, None))
                continue
            source = node if node.storage is not None else self._stored_ancestor(node)
            inst = self._instance(sample, source.name, rng, shared.get(name))
            if node.storage is not None and node.storage.pair_field:
                if self.sharing.style == "prefer_same" and name not in shared:
                    shared[name] = _digest(sample.fields[inst.pair])
                cells.append(Cell(name + PAIR_SUFFIX, name, inst.pair))
            cells.append(Cell(name, name, inst.field))
        return cells

    def _stored_ancestor(self, node):
        for req in node.requires:
            parent = self.nodes.get(req)
            if parent.storage is not None and parent.group is node.group:
                return parent
        raise Graph200kError(f"derived node {node.name!r} requires no stored node of its group to derive from")

    def _row_size(self, sample: PoolSample, first: Cell, cells: list[Cell]) -> tuple[int, int]:
        if any(self.nodes.get(c.node).details.get("degrees") in (90, 270) for c in cells):
            # a quarter turn swaps the sides; square cells keep both images whole and aligned
            w = h = 1
        elif first.field is not None and self.nodes.get(first.node).storage is not None:
            try:
                w, h = image_size(sample.fields[first.field])
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
                raise UnreadableSample(sample.key, f"sample {sample.key!r}: {first.field} is not a readable "
                                                   f"image ({exc})") from None
        else:
            w, h = sample.target_size
        return cell_size(w, h, self.resolution, square=self.square_cells)

    # -- the plan ------------------------------------------------------------------------
    def plan(self, pool: Pool, rng: np.random.Generator, step: int, exclude: Iterable[str] = ()) -> GridPlan | None:
        """A grid plan, or None when no selected task can be served from this pool."""
        task, carriers = self._task(pool, rng, set(exclude))
        if task is None:
            self.counters["grids_unservable"] += 1
            return None
        want = int(self.row_counts[int(np.searchsorted(self.row_cum, rng.random() * self.row_cum[-1], side="right"))])
        n_rows = min(want, len(carriers))
        if n_rows < want:
            self.counters["rows_reduced"] += 1
        picks = rng.choice(len(carriers), size=n_rows, replace=False)
        samples = [carriers[int(i)] for i in picks]  # the last one is the query

        n_cols = sum(self.nodes.get(n).columns for n in task.nodes)
        perm = list(rng.permutation(n_cols - 1)) if self.shuffle_columns else list(range(n_cols - 1))
        perm = [int(i) for i in perm] + [n_cols - 1]

        shared: dict[str, bytes] = {}
        rows_cells: dict[int, list[Cell]] = {}
        for r in reversed(range(n_rows)):  # the query first: under style "prefer_same" it sets the reference
            cells = self._row_cells(samples[r], task, rng, shared)
            rows_cells[r] = [cells[i] for i in perm]
        rows = [RowPlan(samples[r], rows_cells[r], self._row_size(samples[r], rows_cells[r][0], rows_cells[r]))
                for r in range(n_rows)]
        columns = [c.column for c in rows[-1].cells]

        mask_column = n_cols - 1
        if rng.random() < self.mask_any_prob:
            mask_column = int(rng.integers(n_cols))
        query = samples[-1]
        prompt = build_instruction(rows=n_rows, columns=columns, target_node=task.target,
                                   caption=query.caption, item=query.item, rng=rng,
                                   config=self.instruction, nodes=self.nodes)
        self.counters["grids"] += 1
        return GridPlan(step=step, task=task, columns=columns, rows=rows, mask_column=mask_column,
                        prompt=prompt, permutation=perm)
