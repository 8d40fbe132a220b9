"""The evaluation items: fixed queries and in-context examples drawn from shards, paired across contexts.

An item is (task, context, index): query number `index` of `task`, shown with its first
`context` in-context examples. For every task the sampler's `Planner` draws, once and
deterministically in the seed, one plan per query whose rows are the examples then the
query (`EXAMPLE_ROWS` examples, or more when a larger context is asked for); context c shows
the first c examples of that plan. So the contexts of a task compare paired: the same N
queries, the same example rows, the same pixels, the same generation seed; and asking for
more contexts never changes the items of the others.

Everything a grid shows comes from the sampler at inference settings: the pool holds the
shards' samples as references (`parse_sample`, `SampleFields`, `ShardFiles`), the planner
runs with `mask_any_prob=0` (the target is the blank), `shuffle_columns=False` (task order,
as a user lays it out), `instruction=None` and the default `RowSharing()`, and the
`GridRenderer` decodes stored nodes, derives foreground/background, pairs style references
and applies online degradations (the examples share the query's degradation kind). A task
no sample carries, or a context larger than the examples the shards hold, is reported as
skipped with the reason, never silently dropped.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from graph200k import Task, TaskGraph

from .errors import InferenceError

EXAMPLE_ROWS = 2  # the paper evaluates 0, 1 and 2 in-context examples: plans always hold at least 2
ATTEMPTS_PER_QUERY = 20  # plan draws allowed per wanted query before the task is reported short
_PLAN_DOMAIN = 0xE7A1  # separates evaluation randomness from the training sampler's streams
_PIXEL_DOMAIN = 0xE7A2


def stable_hash(text: str) -> int:
    """A 63-bit integer from `text`, the same in every process and Python run (unlike `hash`)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1


def generation_seed(seed: int, task: Task, index: int) -> int:
    """The sampling seed of query `index` of `task`: shared by its contexts and variants (paired)."""
    return stable_hash(f"{seed}/{task.id}/{index}") % (2 ** 31)


# ---------------------------------------------------------------- which tasks


def select_tasks(spec: str, graph: TaskGraph) -> list[Task]:
    """`--tasks`: "test" (the 36 test tasks), "train" (all 129), or a comma list of task ids and
    family names. A family selects its test-split tasks, or all of its tasks when it has none
    in the test split (so every family can be evaluated)."""
    from .prompts import resolve_task

    spec = spec.strip()
    if spec in ("test", "train"):
        return graph.tasks(split=spec)
    families = graph.family_names()
    chosen: list[Task] = []
    for token in (t.strip() for t in spec.split(",")):
        if not token:
            continue
        if token in families:
            chosen += graph.tasks(split="test", family=token) or graph.tasks(family=token)
        elif "->" in token:
            chosen.append(resolve_task(token, graph))
        else:
            raise InferenceError(f"--tasks {token!r}: not 'test', 'train', a task id (canny->target) or a family "
                                 f"({', '.join(families)})")
    if not chosen:
        raise InferenceError(f"--tasks {spec!r} selects no task; give 'test', task ids or family names")
    return list(dict.fromkeys(chosen))


# ---------------------------------------------------------------- the shards' samples


@dataclass
class ShardSamples:
    """Every readable sample of the shards, as pool references (bytes are read when a grid shows them)."""

    samples: list  # sampler.pool.PoolSample, in shard order
    files: object  # sampler.shards.ShardFiles, the handles the samples read through
    unreadable: int = 0  # samples that did not parse (no json, no readable target)
    filtered: int = 0  # samples the key filter left out (training keys, under --holdout)

    def close(self) -> None:
        self.files.close()

    def carriers(self, task: Task) -> list:
        need = set(task.nodes)
        return [s for s in self.samples if need <= s.nodes]

    def missing(self, task: Task) -> str:
        """Why no sample carries `task`: per node of the task, how many samples carry it."""
        counts = {n: sum(n in s.nodes for s in self.samples) for n in task.nodes}
        return ", ".join(f"{n}: {c}" for n, c in counts.items())


def read_shards(shards, graph: TaskGraph, key_filter=None) -> ShardSamples:
    """Index the tars of `shards` (a directory, tar, brace pattern, glob or list) and parse every sample
    whose key `key_filter` keeps (all by default; `graph200k.HoldoutFilter` keeps a held-out slice)."""
    from sampler.pool import BadSample, SampleFields, parse_sample
    from sampler.shards import ShardError, ShardFiles, TarIndex, resolve_shards

    try:
        paths = resolve_shards(shards)
    except ShardError as err:
        raise InferenceError(f"--shards {shards!s}: {err}; pack shards with `python -m graph200k shards`") from None
    indexes = {p: TarIndex(p) for p in paths}
    files = ShardFiles(indexes)
    samples, unreadable, filtered = [], 0, 0
    for path, index in indexes.items():
        for entry in index.samples:
            if key_filter is not None and not key_filter(entry.name):
                filtered += 1
                continue
            try:
                samples.append(parse_sample(entry.name, SampleFields(entry.name, path, entry, files), graph.nodes))
            except BadSample:
                unreadable += 1
    return ShardSamples(samples, files, unreadable, filtered)


# ---------------------------------------------------------------- queries (pixel-free)


@dataclass
class TaskDraw:
    """The fixed queries of one task: per query a plan whose last row is the query and whose
    other rows are its examples, in the order contexts take them."""

    task: Task
    plans: list  # sampler.planner.GridPlan
    carriers: int
    skipped: str | None = None  # why the task has no query (None when it has some)
    counters: Counter = field(default_factory=Counter)

    def examples(self, index: int) -> int:
        return len(self.plans[index].rows) - 1


def draw_task(samples: ShardSamples, task: Task, graph: TaskGraph, *, per_task: int, examples: int, seed: int,
              resolution: int) -> TaskDraw:
    """Up to `per_task` distinct queries of `task`, each with up to `examples` in-context rows.

    The plans come from the training sampler's `Planner` over a pool of the task's carriers, at
    inference settings; a query already drawn is redrawn (attempt by attempt, deterministic in
    `seed` and the task), so examples may be any other carrier, earlier queries included."""
    from sampler.planner import Planner, TaskMix
    from sampler.pool import Pool, UnreadableSample
    from sampler.sharing import RowSharing

    carriers = samples.carriers(task)
    if not carriers:
        return TaskDraw(task, [], 0, skipped=f"no sample carries every node of {task.id} (samples per node: "
                                             f"{samples.missing(task)})")
    pool = Pool(len(carriers))
    for position, sample in enumerate(carriers):
        pool.push(position, sample)
    counters: Counter = Counter()
    planner = Planner(TaskMix(graph, [task]), resolution=resolution, rows={examples + 1: 1.0}, mask_any_prob=0.0,
                      shuffle_columns=False, sharing=RowSharing(), instruction=None, counters=counters)
    want = min(per_task, len(carriers))
    plans, seen, unreadable = [], set(), set()
    for attempt in range(ATTEMPTS_PER_QUERY * want + 100):
        if len(plans) == want:
            break
        rng = np.random.default_rng([_PLAN_DOMAIN, seed, stable_hash(task.id), attempt])
        try:
            plan = planner.plan(pool, rng, step=attempt, exclude=unreadable)
        except UnreadableSample as err:  # a header that does not parse: never use that sample
            unreadable.add(err.key)
            counters["samples_unreadable"] += 1
            continue
        if plan is None or plan.keys[-1] in seen:
            continue
        seen.add(plan.keys[-1])
        plans.append(plan)
    return TaskDraw(task, plans, len(carriers), counters=counters)


# ---------------------------------------------------------------- an item's pixels


@dataclass
class ItemGrid:
    """What one item shows the model: per row its cells (examples, then the query), and the texts."""

    task: Task
    context: int
    index: int
    columns: list[str]
    rows: list[list[Image.Image]]  # the query row last; its last cell is the ground truth
    keys: list[str]
    caption: str
    item: str
    meta: dict
    degradations: list[dict]
    seed: int

    @property
    def query(self) -> list[Image.Image]:
        return self.rows[-1]

    @property
    def ground_truth(self) -> Image.Image:
        return self.rows[-1][-1]

    @property
    def conditions(self) -> dict[str, Image.Image]:
        """The query row's cells before the target, by column."""
        return dict(zip(self.columns[:-1], self.rows[-1][:-1]))

    def model_input(self) -> list[list[Image.Image | None]]:
        """The rows as a diffusers VisualCloze call takes them: the query's target cell blank (None)."""
        return [list(r) for r in self.rows[:-1]] + [[*self.rows[-1][:-1], None]]


def render_query(draw: TaskDraw, index: int, *, seed: int, nodes) -> tuple[list[list[Image.Image]], list[dict]]:
    """The cells of query `index`'s full plan (every example row, then the query) and each row's
    degradation params; the pixel randomness is a function of (seed, task, index) only."""
    from sampler.render import GridRenderer
    from sampler.sharing import RowSharing
    from sampler.grid_sample import cells_of

    from sampler.pool import UnreadableSample

    plan = draw.plans[index]
    rng = np.random.default_rng([_PIXEL_DOMAIN, seed, stable_hash(draw.task.id), index])
    try:
        grid = GridRenderer(nodes, sharing=RowSharing()).render(plan, rng)
    except UnreadableSample as err:
        raise InferenceError(f"query {index} of {draw.task.id}: {err}; repack the shards without sample "
                             f"{err.key!r} (or evaluate with another --seed)") from None
    cells, _ = cells_of(grid)
    return cells, grid.degradations


def item_grid(draw: TaskDraw, index: int, context: int, cells: list[list[Image.Image]], degradations: list[dict],
              *, seed: int) -> ItemGrid:
    """Item (task, context, index) from its query's rendered plan: the first `context` examples and the query."""
    plan = draw.plans[index]
    if context > draw.examples(index):
        raise ValueError(f"query {index} of {draw.task.id} has {draw.examples(index)} examples, not {context}")
    rows = [*range(context), len(plan.rows) - 1]
    query = plan.rows[-1].sample
    return ItemGrid(task=draw.task, context=context, index=index, columns=list(plan.columns),
                    rows=[cells[r] for r in rows], keys=[plan.rows[r].sample.key for r in rows],
                    caption=query.caption, item=query.item, meta=query.meta,
                    degradations=[degradations[r] for r in rows], seed=generation_seed(seed, draw.task, index))


# ---------------------------------------------------------------- the item list


@dataclass(frozen=True, order=True)
class ItemRef:
    """One unit of work: generate item (task, context, index) with `variant`."""

    variant: str
    task: str  # task id
    context: int
    index: int


def item_dir(out: Path, ref: ItemRef) -> Path:
    """`<out>/items/<variant>/<task slug>/<context>/<index>/`."""
    return Path(out) / "items" / ref.variant / task_slug(ref.task) / str(ref.context) / f"{ref.index:04d}"


def task_slug(task_id: str) -> str:
    """A task id as a folder name that needs no quoting in shells or URLs: `reference+depth->target`
    -> `reference+depth_to_target`."""
    return task_id.replace("->", "_to_")


def plan_items(draws: Sequence[TaskDraw], contexts: Iterable[int],
               variants: Sequence[str]) -> tuple[list[ItemRef], dict[tuple[str, int], str]]:
    """Every item to generate, ordered variant, task, query, context (a process loads each variant's
    weights once and renders each query once), and per (task, context) why it has no item or fewer
    items than queries."""
    refs: list[ItemRef] = []
    skipped: dict[tuple[str, int], str] = {}
    contexts = sorted(set(contexts))
    for draw in draws:
        for context in contexts:
            if draw.skipped:
                skipped[(draw.task.id, context)] = draw.skipped
                continue
            short = sum(draw.examples(i) < context for i in range(len(draw.plans)))
            if short:
                skipped[(draw.task.id, context)] = (
                    f"{short} of {len(draw.plans)} queries have fewer than {context} in-context examples: "
                    f"only {draw.carriers} samples carry {draw.task.id}")
    for variant in variants:
        for draw in draws:
            for index in range(len(draw.plans)):
                refs += [ItemRef(variant, draw.task.id, c, index) for c in contexts if draw.examples(index) >= c]
    return refs, skipped


def share(refs: Sequence[ItemRef], rank: int, world: int) -> list[ItemRef]:
    """This process's items: whole queries (every context of one query together, so it is rendered
    once), dealt round-robin over the processes."""
    queries = list(dict.fromkeys((r.variant, r.task, r.index) for r in refs))
    mine = set(queries[rank::world])
    return [r for r in refs if (r.variant, r.task, r.index) in mine]
