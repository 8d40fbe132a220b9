"""The shuffled sample stream of one data-loading process, a pure function of its counters.

Every process (rank x DataLoader worker) is one of `world` global workers.
An epoch visits every sample once, across all global workers together:

- the shard order is permuted with (seed, epoch), the same on every process;
- with at least as many shards as global workers, worker g reads shards
  g, g+world, ... of that order; with fewer, every worker reads every shard
  and keeps samples g, g+world, ... (so no sample is seen twice in an epoch);
- inside a shard, the samples are visited in a (seed, epoch, shard) permutation
  (random access through the tar index, so this costs seeks, not reads).

A position in the stream is (epoch, index); reading from any position needs
only the tar indexes, which is what makes resuming cheap. The stream yields
where samples lie; their bytes are read through `sampler.shards.ShardFiles`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .shards import TarIndex


def _rng(*words: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(w) for w in words])))


@dataclass(frozen=True)
class StreamItem:
    """One sample of the stream: its position in the epoch and where it lies."""

    index: int
    shard: str
    sample: int


class EpochStream:
    """The samples global worker `worker` of `world` visits in epoch `epoch`, in order."""

    _STREAM = 0x5EED  # domain separator: stream randomness never equals grid randomness

    def __init__(self, paths: list[str], *, seed: int, epoch: int, worker: int, world: int,
                 indexes: dict[str, TarIndex]):
        if not 0 <= worker < world:
            raise ValueError(f"worker {worker} is outside 0..{world - 1}")
        self.paths = paths
        self.seed, self.epoch, self.worker, self.world = seed, epoch, worker, world
        self._indexes = indexes
        order = _rng(self._STREAM, seed, epoch).permutation(len(paths))
        self.shard_level = len(paths) >= world
        self.shards = [int(s) for s in (order[worker::world] if self.shard_level else order)]

    def index(self, path: str) -> TarIndex:
        idx = self._indexes.get(path)
        if idx is None:
            idx = self._indexes[path] = TarIndex(path)
        return idx

    def _order(self, shard: int) -> np.ndarray:
        n = len(self.index(self.paths[shard]))
        return _rng(self._STREAM, self.seed, self.epoch, 1 + shard).permutation(n)

    def items(self, start: int = 0) -> Iterator[StreamItem]:
        """The stream from position `start` on (earlier shards are skipped by their counts)."""
        pos = 0  # position in this worker's stream
        seen = 0  # samples of all shards walked so far (sample-level split)
        for shard in self.shards:
            n = len(self.index(self.paths[shard]))
            if self.shard_level:
                if pos + n <= start:
                    pos += n
                    continue
                order = self._order(shard)
                for i in range(max(0, start - pos), n):
                    yield StreamItem(pos + i, self.paths[shard], int(order[i]))
                pos += n
            else:
                first = (self.worker - seen) % self.world  # first local index that is ours
                mine = range(first, n, self.world)
                if pos + len(mine) <= start:
                    pos += len(mine)
                    seen += n
                    continue
                order = self._order(shard)
                for j, i in enumerate(mine):
                    if pos + j >= start:
                        yield StreamItem(pos + j, self.paths[shard], int(order[i]))
                pos += len(mine)
                seen += n
