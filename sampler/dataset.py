"""`GridDataset`: the training shards as an endless, resumable stream of VisualCloze grids.

Determinism. Grid `step` of a process is drawn from generators seeded with
(seed, rank, worker, step); the samples it may use are the pool window at that
step, which is itself a function of (epoch, position) (see `sampler.stream`):
pool window for step j of an epoch with N samples = stream positions
[hi - P, hi) with hi = min(N, P + j); an epoch has N grids, so every sample
enters the pool once per epoch and each one is read once.

Resume. `state_dict()` is a handful of counters: epoch, step in the epoch,
global step, the window (lo, hi) held, the keys found unreadable, and the
counters. `load_state_dict()` reopens the stream at `lo` through the tar
indexes (no re-read of what came before) and refills the window, so the next
grid is exactly the one an uninterrupted run would have produced. Inside a
DataLoader each worker has its own state; torchdata's `StatefulDataLoader`
calls these two methods in each worker.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Callable, Iterator, Mapping

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from graph200k import TaskGraph

from .coverage import check_coverage, describe_selection
from .grid_sample import GridSample
from .instruction import InstructionConfig
from .planner import GridPlan, Planner, TaskMix
from .pool import BadSample, Pool, SampleFields, UnreadableSample, parse_sample
from .render import GridRenderer
from .settings import GRID_DEFAULTS
from .shards import ShardError, ShardFiles, TarIndex, resolve_shards
from .sharing import RowSharing
from .stream import EpochStream

log = logging.getLogger(__name__)

STATE_VERSION = 1
_GRID = 0x6121D  # domain separator of grid randomness (the stream uses another)
MAX_ATTEMPTS = 4  # re-plans of one step when a chosen sample turns out unreadable


def _process_rank(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is not None or world_size is not None:
        if rank is None or world_size is None:
            raise ValueError("give both rank and world_size, or neither")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
        return rank, world_size
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class GridDataset(IterableDataset):
    """VisualCloze training grids from webdataset shards.

    shards:       a directory of `*.tar`, a tar path, a brace pattern or a list of them.
    resolution:   cell area is resolution^2 (sides multiples of 16).
    seed:         same seed, same grids.
    tasks:        "train", "test", or task ids ("canny->target"), node paths or `Task`s.
    rows:         {row count: probability}; default {1: .3, 2: .4, 3: .3}.
    family_weights / task_graph: family weights (default: the task graph's, all 1).
    pool_size:    samples held to draw rows from (as references: a field is read when a grid shows it).
    mask_any_prob: chance that the masked query cell is any column rather than the target.
    instruction:  prompt part probabilities (`InstructionConfig`).
    sharing:      what the in-context rows share with the query (`RowSharing`): by default a
                  degradation's severity and sub-method but not its seeds, and no style instance.
    shuffle_columns / square_cells: column shuffle; the reference's square cells.
    rank, world_size: default torch.distributed's, else 0 and 1.
    epochs:       stop after this many epochs (default: endless).
    key_filter:   `key -> bool`; samples it rejects are never pooled (they keep their stream
                  position as skipped samples, so the windows do not move), counted in
                  `counters["samples_filtered"]` as bad ones are in `samples_skipped`. With
                  DataLoader workers it must pickle: a module-level function or a
                  `functools.partial`, not a lambda.
    """

    def __init__(self, shards, *, resolution: int = GRID_DEFAULTS.resolution, seed: int = GRID_DEFAULTS.seed,
                 tasks=GRID_DEFAULTS.tasks, rows: Mapping[int, float] | None = GRID_DEFAULTS.rows,
                 family_weights: Mapping[str, float] | None = GRID_DEFAULTS.family_weights,
                 task_graph: TaskGraph | None = None, pool_size: int = GRID_DEFAULTS.pool_size,
                 mask_any_prob: float = GRID_DEFAULTS.mask_any_prob,
                 instruction: InstructionConfig | None = InstructionConfig(), sharing: RowSharing = RowSharing(),
                 shuffle_columns: bool = GRID_DEFAULTS.shuffle_columns, square_cells: bool = GRID_DEFAULTS.square_cells,
                 rank: int | None = None,
                 world_size: int | None = None, epochs: int | None = None,
                 key_filter: Callable[[str], bool] | None = None):
        super().__init__()
        self.paths = resolve_shards(shards)
        if task_graph is not None and family_weights is not None:
            raise ValueError("give family_weights or a task_graph carrying them, not both")
        self.graph = task_graph or TaskGraph(weights=family_weights)
        self.mix = TaskMix(self.graph, tasks)
        self.resolution, self.seed = resolution, int(seed)
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size}")
        self.pool_size = pool_size
        if epochs is not None and epochs < 1:
            raise ValueError(f"epochs must be >= 1 or None, got {epochs}")
        self.epochs = epochs
        if key_filter is not None and not callable(key_filter):
            raise TypeError(f"key_filter must be a callable key -> bool or None, got {key_filter!r}")
        self.key_filter = key_filter
        self.counters: Counter = Counter()
        self.planner = Planner(self.mix, resolution=resolution, rows=rows, mask_any_prob=mask_any_prob,
                               shuffle_columns=shuffle_columns, square_cells=square_cells,
                               sharing=sharing, instruction=instruction,
                               counters=self.counters)
        self.renderer = GridRenderer(self.graph.nodes, sharing=sharing)
        self._rank_args = (rank, world_size)
        self._state: dict | None = None
        self._indexes: dict[str, TarIndex] = {}
        check_coverage(self.paths, self.mix, self._indexes)  # a selection no sample serves fails now, not an epoch later

    # -- identity of this process in the stream ------------------------------------------
    def _who(self) -> tuple[int, int, int, int]:
        """(rank, worker, global worker, number of global workers)."""
        rank, world = _process_rank(*self._rank_args)
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return rank, worker, rank * workers + worker, world * workers

    def _rng(self, rank: int, worker: int, step: int, attempt: int, purpose: int) -> np.random.Generator:
        words = [_GRID, self.seed, rank, worker, step, attempt, purpose]
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence(words)))

    # -- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Where this process's stream stands (after the last grid it produced)."""
        if self._state is None:
            rank, worker, g, n = self._who()
            return {"version": STATE_VERSION, "seed": self.seed, "global_worker": g, "global_workers": n,
                    "epoch": 0, "epoch_step": 0, "step": 0, "window": [0, 0], "bad_keys": [],
                    "counters": dict(self.counters)}
        state = {k: (list(v) if isinstance(v, list) else v) for k, v in self._state.items()}
        return {**state, "bad_keys": sorted(self._state["bad_keys"]), "counters": dict(self.counters)}

    def load_state_dict(self, state: dict) -> None:
        """Continue from `state` (as returned by `state_dict()`) on the next iteration."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"sampler state version {state.get('version')!r} is not {STATE_VERSION}")
        if state["seed"] != self.seed:
            raise ValueError(f"sampler state was saved with seed {state['seed']}, this dataset has {self.seed}")
        self._state = {k: v for k, v in state.items() if k != "counters"}
        self._state["bad_keys"] = set(state.get("bad_keys", []))
        self.counters.clear()
        self.counters.update(state.get("counters", {}))

    # -- iteration -----------------------------------------------------------------------
    def _pull(self, stream_iter, files: ShardFiles, pool: Pool, carry: dict | None = None) -> bool:
        """Move the next stream sample into the pool; False when the epoch's stream is done.
        The pool gets references to its fields (only its json and target header are read);
        `carry` holds the previous epoch's pool: a sample already parsed is not parsed again."""
        item = next(stream_iter, None)
        if item is None:
            return False
        origin = (item.shard, item.sample)
        if carry and origin in carry:
            pool.push(item.index, carry.pop(origin), origin)
            return True
        entry = self._indexes[item.shard].samples[item.sample]
        sample = None
        if self.key_filter is not None and not self.key_filter(entry.name):
            self.counters["samples_filtered"] += 1
        else:
            try:
                sample = parse_sample(entry.name, SampleFields(entry.name, item.shard, entry, files), self.graph.nodes)
            except BadSample as exc:
                self.counters["samples_skipped"] += 1
                log.warning("skipping a sample: %s", exc)
        pool.push(item.index, sample, origin)
        return True

    def _run(self, render: bool) -> Iterator[GridPlan | GridSample]:
        rank, worker, g, n = self._who()
        st = self._state
        if st is None:
            st = {"version": STATE_VERSION, "seed": self.seed, "global_worker": g, "global_workers": n,
                  "epoch": 0, "epoch_step": 0, "step": 0, "window": [0, 0], "bad_keys": set()}
        elif (st["global_worker"], st["global_workers"]) != (g, n):
            raise ValueError(f"sampler state belongs to worker {st['global_worker']} of {st['global_workers']}, "
                             f"but this process is worker {g} of {n}; resume with the same ranks and workers")
        self._state = st
        files = ShardFiles(self._indexes)
        carry: dict = {}
        try:
            while self.epochs is None or st["epoch"] < self.epochs:
                stream = EpochStream(self.paths, seed=self.seed, epoch=st["epoch"], worker=g, world=n,
                                     indexes=self._indexes)
                lo, hi = st["window"]
                items = stream.items(start=lo)
                pool = Pool(self.pool_size)
                for _ in range(hi - lo):
                    if not self._pull(items, files, pool):
                        raise ShardError(f"the shards changed since this state was saved: epoch "
                                         f"{st['epoch']} ends before position {hi}")
                exhausted, produced, resumed_at = False, 0, st["epoch_step"]
                while True:
                    j = st["epoch_step"]
                    while not exhausted and hi < self.pool_size + j:
                        exhausted = not self._pull(items, files, pool, carry)
                        hi += 0 if exhausted else 1
                    carry.clear()
                    if j >= hi:  # N grids for N samples: the epoch is over
                        break
                    st["window"] = [max(0, hi - self.pool_size), hi]
                    out = self._grid(pool, rank, worker, st, render)
                    st["epoch_step"] += 1
                    st["step"] += 1
                    if out is not None:
                        produced += 1
                        yield out
                if hi == 0:
                    total = sum(len(stream.index(path)) for path in self.paths)
                    if total == 0:
                        damaged = sum(1 for path in self.paths if stream.index(path).error)
                        raise ShardError(f"the {len(self.paths)} shards hold no samples (the first: {self.paths[0]}"
                                         + (f"; {damaged} are damaged, see the warnings" if damaged else "")
                                         + "); pack some with `python -m graph200k shards`")
                    raise ShardError(f"worker {g} of {n} got no samples in epoch {st['epoch']}: "
                                     f"{len(self.paths)} shards, {total} samples in total; use fewer workers "
                                     "(ranks x DataLoader workers) or more shards")
                if produced == 0 and resumed_at == 0:
                    raise ShardError(f"no grid could be built in epoch {st['epoch']}: no readable sample "
                                     f"carries the nodes of any selected task ({describe_selection(self.mix)})"
                                     + (" among the samples the key filter keeps (the held-out split?)"
                                        if self.counters["samples_filtered"] else "")
                                     + "; choose tasks these shards serve")
                self.counters["shards_damaged"] = sum(1 for i in self._indexes.values() if i.error)
                carry = pool.by_origin()
                st.update(epoch=st["epoch"] + 1, epoch_step=0, window=[0, 0])
        finally:
            files.close()

    def _grid(self, pool: Pool, rank: int, worker: int, st: dict, render: bool):
        """The grid of step `st["step"]`; a sample that fails to decode is excluded and the
        step re-planned (attempt k uses its own generators, so this stays deterministic)."""
        for attempt in range(MAX_ATTEMPTS):
            try:
                plan = self.planner.plan(pool, self._rng(rank, worker, st["step"], attempt, 0), st["step"],
                                         exclude=st["bad_keys"])
                if plan is None or not render:
                    return plan
                return self.renderer.render(plan, self._rng(rank, worker, st["step"], attempt, 1))
            except UnreadableSample as exc:
                self.counters["samples_unreadable"] += 1
                log.warning("skipping an unreadable sample: %s", exc)
                st["bad_keys"].add(exc.key)
        self.counters["grids_failed"] += 1
        return None

    def plans(self) -> Iterator[GridPlan]:
        """The grid plans of the stream, without pixels: the same choices as iterating the
        dataset, at a fraction of the cost (statistics, previews of the task mix)."""
        return self._run(render=False)

    def __iter__(self) -> Iterator[GridSample]:
        return self._run(render=True)
