"""Where training grids come from: a pluggable source of `GridSample`s with a resumable position.

A source is any iterable of `GridSample`; when it also has `state_dict()` /
`load_state_dict()` (as `sampler.GridDataset` and `InMemoryGrids` do), the trainer stores that
state per rank in every checkpoint and a resumed run continues with the very next grid.
The source is read in the training process (`data.num_workers=0`) or in DataLoader worker
processes through torchdata's `StatefulDataLoader`, which collects each worker's state at a
checkpoint and restores it in the same worker on resume, so the position stays exact.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Iterable, Iterator

from sampler.grid_sample import GridSample

from .config import ConfigError, DataConfig


class InMemoryGrids:
    """Cycles through a fixed list of grids (tests, overfitting checks); state = position."""

    def __init__(self, grids: list[GridSample]):
        if not grids:
            raise ValueError("InMemoryGrids needs at least one grid")
        self.grids = list(grids)
        self.position = 0

    def __iter__(self) -> Iterator[GridSample]:
        while True:
            grid = self.grids[self.position % len(self.grids)]
            self.position += 1
            yield grid

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position = int(state["position"])


def _identity(item):
    return item


class GridStream:
    """Draws micro-batches from a source and forwards its state for checkpoints."""

    def __init__(self, source: Iterable[GridSample], num_workers: int = 0):
        self._iter: Iterator[GridSample] | None = None
        if num_workers > 0:
            try:
                from torchdata.stateful_dataloader import StatefulDataLoader
            except ImportError:
                raise ConfigError(
                    "config key 'data.num_workers' > 0 needs torchdata's StatefulDataLoader to checkpoint the "
                    "workers' positions (pip install torchdata), or use data.num_workers=0"
                ) from None
            with warnings.catch_warnings():  # torchdata 0.11 calls a torch API that torch 2.14 deprecates
                warnings.filterwarnings("ignore", message=".*set_vital.*", category=UserWarning)
                source = StatefulDataLoader(source, batch_size=None, num_workers=num_workers, collate_fn=_identity)
        self.source = source

    @property
    def resumable(self) -> bool:
        return hasattr(self.source, "state_dict") and hasattr(self.source, "load_state_dict")

    def take(self, n: int) -> list[GridSample]:
        if self._iter is None:
            self._iter = iter(self.source)
        grids = []
        for _ in range(n):
            try:
                grids.append(next(self._iter))
            except StopIteration:
                raise RuntimeError(f"the training data ran out after {len(grids)} grids of a batch of {n}") from None
        return grids

    def state_dict(self) -> dict[str, Any] | None:
        return self.source.state_dict() if self.resumable else None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if state is None:
            return
        if not self.resumable:
            raise RuntimeError(f"checkpoint has a data position but {type(self.source).__name__} cannot resume")
        self.source.load_state_dict(state)
        self._iter = None  # restart iteration from the restored position


def sampler_settings(data: DataConfig) -> dict[str, Any]:
    """The data section's sampler knobs as `GridDataset` keyword arguments."""
    return dict(family_weights=data.family_weights, mask_any_prob=data.mask_any_prob,
                shuffle_columns=data.shuffle_columns, square_cells=data.square_cells,
                instruction=data.instruction, sharing=data.row_sharing)


def grid_dataset(shards: list[str], *, key: str, resolution: int, seed: int, tasks: str,
                 rows: dict[int, float] | None, pool_size: int, rank: int, world_size: int,
                 key_filter: Callable[[str], bool] | None = None, tasks_key: str = "data.tasks",
                 **settings: Any) -> Iterable[GridSample]:
    """`sampler.GridDataset` over webdataset shards; this process reads its own share (rank of world_size).

    `key_filter` keeps only the samples whose key it accepts (the holdout split); `settings`
    are further `GridDataset` arguments (`sampler_settings`). Errors name the config key at fault:
    `key` for the shards, `tasks_key` for a task selection they cannot serve."""
    if not shards:
        raise ConfigError(f"config key '{key}' is empty: name the shards (e.g. data/demo/shards)")
    from graph200k import Graph200kError
    from sampler import GridDataset
    from sampler.coverage import NoSamplesForTasks
    from sampler.shards import ShardError

    if key_filter is not None:
        settings["key_filter"] = key_filter
    try:
        return GridDataset(shards if len(shards) > 1 else shards[0], resolution=resolution, seed=seed, tasks=tasks,
                           rows=rows, pool_size=pool_size, rank=rank, world_size=world_size, **settings)
    except NoSamplesForTasks as err:
        raise ConfigError(f"config key '{tasks_key}': {err}") from None
    except ShardError as err:  # nothing readable, or a packed folder that disagrees with its index
        raise ConfigError(f"config key '{key}': {err}") from None
    except Graph200kError as err:  # a task name the graph does not know
        raise ConfigError(f"config key '{tasks_key}': {err}") from None
