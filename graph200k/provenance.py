"""Which node shards of a dataset folder were made from what is there now.

A node shard (`nodes/<node>/<shard>.tar`) records in its stats `inputs`: the
content id of the source shard it was made from (`source`) and the id of every
node shard it read (`<node>`: id, or None when that node was absent). It is
stale when the source shard has been rewritten from other input bytes since,
or when a node shard it read has been redone, removed or is itself stale.
Packing leaves stale node shards out, annotators refuse to read them, and
`annotators run` redoes those of the annotators it runs: no sample ever joins
a map made from another version of its image.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path

from .dataset_dir import SOURCE, DatasetDir, shard_name
from .shardio import read_stats


def source_id(stats: dict) -> str:
    """Content id of a source shard, from its stats: the input bytes' id (`plan`) and what shaped the
    stored bytes (ingest version, pixel limit)."""
    what = [stats.get("plan"), stats.get("ingest_version"), stats.get("max_pixels")]
    return hashlib.sha1(json.dumps(what).encode()).hexdigest()[:16]


def stale_reason(dataset: Path, node: str, shard: str, _depth: int = 0) -> str | None:
    """Why the complete node shard `node/shard` no longer matches the shards it was made from, or None."""
    folder = DatasetDir(dataset)
    stats = read_stats(folder.node_tar(node, shard))
    if stats is None:
        return None
    source = read_stats(folder.source_tar(shard))
    inputs = stats.get("inputs") or {}
    if source is None:
        return f"source shard {shard} is missing or incomplete"
    if inputs.get(SOURCE) != source_id(source):
        return f"made from another version of source shard {shard} (its input changed)"
    for need, recorded in sorted(inputs.items()):
        if need == SOURCE:
            continue
        current = read_stats(folder.node_tar(need, shard))
        now = current.get("id") if current else None
        if now != recorded:
            return (f"made without {need}/{shard}, which exists now" if recorded is None else
                    f"made from {need}/{shard}, which is now missing" if now is None else
                    f"made from an earlier {need}/{shard}, since redone")
        if current is not None and _depth < 8 and stale_reason(dataset, need, shard, _depth + 1):
            return f"made from {need}/{shard}, which is stale"
    return None


def redo_command(dataset: Path, annotator: str, input: str | None = None) -> str:
    """The command that redoes `annotator`'s stale shards: the last run's input (`run.json`) unless given."""
    if input is None:
        try:
            input = json.loads(DatasetDir(dataset).run_record.read_text(encoding="utf-8")).get("input")
        except (OSError, json.JSONDecodeError):
            input = None
    return (f"python -m annotators run --input {shlex.quote(str(input)) if input else 'INPUT'} "
            f"--out {shlex.quote(str(dataset))} --annotators {annotator}")


def stale_node_shards(dataset: Path, shards: list[str] | None = None, input: str | None = None) -> list[dict]:
    """Every complete, stale node shard of `dataset` (of `shards`, default all): shard, annotator, why, redo."""
    found = []
    folder = DatasetDir(dataset)
    for node_dir in folder.node_dirs():
        names = shards if shards is not None else sorted(shard_name(t) for t in folder.node_tars(node_dir.name))
        for shard in names:
            why = stale_reason(dataset, node_dir.name, shard)
            if why:
                annotator = read_stats(folder.node_tar(node_dir.name, shard)).get("annotator") or node_dir.name
                found.append({"shard": f"{node_dir.name}/{shard}", "annotator": annotator, "why": why,
                              "redo": redo_command(dataset, annotator, input)})
    return found
