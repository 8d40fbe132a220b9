"""The dataset folder contract: where every file of a dataset folder lives, spelled once.

`python -m annotators run --out DIR` writes the folder (ingest the source
shards, each annotator its node shards, the runner the records and the lock)
and `python -m graph200k shards --dataset DIR` reads it; both build every path
here, so they agree by construction:

    DIR/run.json                   the last annotation run's summary
    DIR/plan.json                  the plan the source shards were cut from
    DIR/.graph200k.lock            the writer's lock (`dataset_lock`)
    DIR/source/<shard>.tar         source shards
    DIR/source/<shard>.hashes.json the input files' content hashes (a cache)
    DIR/nodes/<node>/<shard>.tar   node shards, one per (node, source shard)
    DIR/shards                     the packed training shards (packing's default `--out`)

Beside each shard tar: its errors record and its completion marker
(`shardio.errors_path`, `shardio.stats_path`). A packed folder holds its tars
and `PACK_INDEX`, `PACK_CARD`, `PACK_README`.
"""

from __future__ import annotations

import os
from pathlib import Path

from .shardio import errors_path, stats_path

SOURCE = "source"  # the stage of source shards, as error records and summaries name it
TAR = ".tar"
LOCK_NAME = ".graph200k.lock"
PACK_INDEX, PACK_CARD, PACK_README = "index.jsonl", "dataset.json", "README.md"


def shard_name(tar: Path) -> str:
    """`.../000000.tar` -> `000000`."""
    return tar.name[: -len(TAR)]


class DatasetDir:
    """The paths of one dataset folder. Nothing is read or created here: a path may not exist yet."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"DatasetDir({str(self.root)!r})"

    # --- records ---------------------------------------------------------------------------------
    @property
    def run_record(self) -> Path:
        return self.root / "run.json"

    @property
    def plan(self) -> Path:
        return self.root / "plan.json"

    @property
    def lock(self) -> Path:
        return self.root / LOCK_NAME

    @property
    def packed(self) -> Path:
        """Where `graph200k shards` packs by default (a link to the current generation)."""
        return self.root / "shards"

    # --- source shards ---------------------------------------------------------------------------
    @property
    def source(self) -> Path:
        return self.root / SOURCE

    def source_tar(self, shard: str) -> Path:
        return self.source / f"{shard}{TAR}"

    def source_tars(self) -> list[Path]:
        """The source shard tars there are (complete or not), in shard order."""
        return sorted(self.source.glob(f"*{TAR}"))

    def hashes(self, shard: str) -> Path:
        return self.source / f"{shard}.hashes.json"

    # --- node shards -----------------------------------------------------------------------------
    @property
    def nodes(self) -> Path:
        return self.root / "nodes"

    def node_dir(self, node: str) -> Path:
        return self.nodes / node

    def node_dirs(self) -> list[Path]:
        """The node folders there are, by node name."""
        return sorted(p for p in self.nodes.glob("*") if p.is_dir())

    def node_tar(self, node: str, shard: str) -> Path:
        return self.node_dir(node) / f"{shard}{TAR}"

    def node_tars(self, node: str | None = None) -> list[Path]:
        """The node shard tars there are (complete or not) of `node`, or of every node (by node, then shard)."""
        if node is not None:
            return sorted(self.node_dir(node).glob(f"*{TAR}"))
        return sorted(self.nodes.glob(f"*/*{TAR}"))

    # --- either ----------------------------------------------------------------------------------
    def shard_tar(self, stage: str, shard: str) -> Path:
        """The tar of `shard` written by `stage`: `source` (ingest) or a node name (its annotator)."""
        return self.source_tar(shard) if stage == SOURCE else self.node_tar(stage, shard)

    def errors(self, stage: str, shard: str) -> Path:
        """The errors record of `stage`'s `shard` (see `shard_tar`)."""
        return errors_path(self.shard_tar(stage, shard))

    def stats(self, stage: str, shard: str) -> Path:
        """The completion marker of `stage`'s `shard` (see `shard_tar`)."""
        return stats_path(self.shard_tar(stage, shard))
