"""Packing a dataset folder into training shards, an index and a dataset card.

`python -m graph200k shards --dataset DIR` joins, per sample, the source
shard (target, reference, metadata, imported nodes) with every completed node
shard (`DIR/nodes/<node>/<shard>.tar`) into training tars of at most
`--max-shard-size` bytes, each sample's fields contiguous (the contract in
docs/ARCHITECTURE.md). Node shards list their samples in the source shard's
order, so the join is a streaming merge: memory stays at one sample. Only
complete shards (stats file present) are read; incomplete ones are listed in
the card. Beside the tars: `index.jsonl` (key, shard, nodes, caption, image
sizes), `dataset.json` and a readable `README.md` (counts per node type and,
for each task, how many samples can serve it).
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

from .catalog import DEFAULT_NODES
from .decode import ImageDecodeError, image_size
from .layout import METADATA_FIELD, merge_metadata, nodes_present
from .nodes import Graph200kError, NodeRegistry
from .shardio import atomic_tar, iter_samples, read_stats, remove_partials, write_json, write_text
from .tasks import TaskGraph

DEFAULT_MAX_SHARD_SIZE = 1_000_000_000
SHARD_PATTERN = "train-{:06d}.tar"
MIN_OBJECT_CONSISTENCY = 3
_IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
_TAR_BLOCK = 512


def parse_size(text: str | int) -> int:
    """`1GB`, `500MB`, `64KiB`, `1e9` or an int -> bytes."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*([0-9.eE+]+)\s*([KMGT]?i?B?)?\s*", str(text))
    if not match:
        raise Graph200kError(f"cannot read size {text!r}; use e.g. 1GB, 500MB or 1e9")
    number = float(match.group(1))
    unit = (match.group(2) or "").upper().rstrip("B")
    scale = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "KI": 2**10, "MI": 2**20, "GI": 2**30, "TI": 2**40}
    if unit not in scale:
        raise Graph200kError(f"unknown size unit in {text!r}")
    size = int(number * scale[unit])
    if size < 1:
        raise Graph200kError(f"shard size must be positive, got {text!r}")
    return size


def usable_fields(fields: list[str], meta: dict) -> list[str]:
    """Fields minus the reference when its quality says it does not show the same subject."""
    quality = meta.get("quality") or {}
    score = quality.get("objectConsistency") if isinstance(quality, dict) else None
    if score is not None and score < MIN_OBJECT_CONSISTENCY:
        return [f for f in fields if f.split(".")[0] != "reference"]
    return fields


class _Peek:
    """An iterator over a node shard's samples that can be asked for a given key."""

    def __init__(self, samples: Iterator[dict]):
        self._it = samples
        self._next = next(self._it, None)

    def take(self, key: str) -> dict:
        if self._next is not None and self._next["__key__"] == key:
            found, self._next = self._next, next(self._it, None)
            return {k: v for k, v in found.items() if k != "__key__"}
        return {}

    def leftover(self) -> str | None:
        return None if self._next is None else self._next["__key__"]


class _RollingWriter:
    """Training tars of at most `max_size` bytes, each published atomically when full."""

    def __init__(self, out: Path, max_size: int):
        self.out, self.max_size = out, max_size
        self.index = 0
        self.size = 0
        self.count = 0
        self.shards: list[dict] = []
        self._ctx = None
        self._writer = None

    def _close(self) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(None, None, None)
            self.shards.append({"name": SHARD_PATTERN.format(self.index), "samples": self.count,
                                "bytes": (self.out / SHARD_PATTERN.format(self.index)).stat().st_size})
            self.index += 1
            self._ctx = self._writer = None

    def write(self, sample: dict[str, bytes]) -> str:
        size = sum(_TAR_BLOCK + -(-len(v) // _TAR_BLOCK) * _TAR_BLOCK for k, v in sample.items() if k != "__key__")
        if self._writer is not None and self.size + size > self.max_size:
            self._close()
        if self._writer is None:
            self._ctx = atomic_tar(self.out / SHARD_PATTERN.format(self.index))
            self._writer = self._ctx.__enter__()
            self.size = self.count = 0
        self._writer.write(sample)
        self.size += size
        self.count += 1
        return SHARD_PATTERN.format(self.index)

    def finish(self) -> list[dict]:
        self._close()
        return self.shards

    def abort(self) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(RuntimeError, RuntimeError("packing aborted"), None)
            self._ctx = self._writer = None


@dataclass
class PackResult:
    out: Path
    card: dict
    index: list[dict] = field(default_factory=list)


def _sizes(sample: dict[str, bytes]) -> dict[str, list[int]]:
    sizes = {}
    for name, data in sample.items():
        if name.rpartition(".")[2] in _IMAGE_EXTS:
            try:
                sizes[name] = list(image_size(data))
            except ImageDecodeError:
                sizes[name] = None
    return sizes


def pack(dataset: str | Path, out: str | Path | None = None, max_shard_size: int = DEFAULT_MAX_SHARD_SIZE,
         nodes: NodeRegistry = DEFAULT_NODES, graph: TaskGraph | None = None, progress: bool = True) -> PackResult:
    """Join source and node shards of `dataset` into training shards under `out` (default `dataset/shards`)."""
    started = time.time()
    dataset = Path(dataset)
    out = Path(out) if out else dataset / "shards"
    source = dataset / "source"
    if not source.is_dir():
        raise Graph200kError(f"{dataset} has no source/ folder: run `python -m annotators run --out {dataset}` first")
    sources = sorted(source.glob("*.tar"))
    complete = [t for t in sources if read_stats(t)]
    incomplete = [t.name for t in sources if not read_stats(t)]
    if not complete:
        raise Graph200kError(f"{source} holds no complete source shard (no *.stats.json)")
    node_dirs = sorted(p for p in (dataset / "nodes").glob("*") if p.is_dir()) if (dataset / "nodes").exists() else []
    out.mkdir(parents=True, exist_ok=True)
    remove_partials(out)
    writer = _RollingWriter(out, max_shard_size)
    index: list[dict] = []
    annotators: dict[str, dict] = {}
    incomplete_nodes: list[str] = []
    failures = {"source": 0}
    try:
        for tar in tqdm(complete, desc="packing", unit="shard", disable=not progress):
            shard = tar.name[: -len(".tar")]
            failures["source"] += read_stats(tar)["failed"]
            peeks: list[tuple[str, _Peek]] = []
            for node_dir in node_dirs:
                node_tar = node_dir / f"{shard}.tar"
                stats = read_stats(node_tar)
                if stats is None:
                    if node_tar.exists() or (node_dir / f"{shard}.stats.json").exists():
                        incomplete_nodes.append(f"{node_dir.name}/{shard}")
                    continue
                annotators[node_dir.name] = {k: stats.get(k) for k in ("annotator", "version", "model_id", "revision")}
                failures[node_dir.name] = failures.get(node_dir.name, 0) + stats.get("failed", 0)
                peeks.append((f"{node_dir.name}/{shard}", _Peek(iter_samples(node_tar))))
            for sample in iter_samples(tar):
                key = sample["__key__"]
                merged = dict(sample)
                for _, peek in peeks:
                    taken = peek.take(key)
                    for name, value in taken.items():
                        merged.setdefault(name, value)
                    merged = merge_metadata(merged, taken)  # a node's `json` (edit names, seeds) joins the sample's
                meta = json.loads(merged.get(METADATA_FIELD, b"{}"))
                fields = sorted(k for k in merged if k != "__key__")
                present = nodes_present(usable_fields(fields, meta), nodes)
                name = writer.write(merged)
                index.append({"key": key, "shard": name, "nodes": sorted(present), "fields": fields,
                              "caption": meta.get("caption"), "item": meta.get("item"), "sizes": _sizes(merged)})
            for label, peek in peeks:
                if peek.leftover() is not None:
                    raise Graph200kError(f"{label}: sample {peek.leftover()!r} is not in the source shard's order "
                                         "(or not in it at all); rerun the annotator with --overwrite")
        shards = writer.finish()
    except BaseException:
        writer.abort()
        raise
    for stale in sorted(out.glob("train-*.tar")):
        if stale.name not in {s["name"] for s in shards}:
            stale.unlink()
    card = dataset_card(index, shards, nodes, graph or TaskGraph(nodes), annotators=annotators,
                        failures=failures, incomplete=incomplete + incomplete_nodes)
    card["duration_s"] = round(time.time() - started, 3)
    write_text(out / "index.jsonl", "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in index))
    write_json(out / "dataset.json", card)
    write_text(out / "README.md", render_card(card))
    return PackResult(out, card, index)


def dataset_card(index: list[dict], shards: list[dict], nodes: NodeRegistry, graph: TaskGraph,
                 annotators: dict | None = None, failures: dict | None = None, incomplete: list | None = None) -> dict:
    """Counts per node type and, for each training task, how many samples can serve it."""
    node_counts = Counter(n for e in index for n in e["nodes"])
    node_sets = [set(e["nodes"]) for e in index]
    tasks = []
    for task in graph.tasks():
        served = sum(1 for s in node_sets if set(task.nodes) <= s)
        tasks.append({"id": task.id, "family": task.family, "nodes": list(task.nodes), "samples": served})
    families = {}
    for t in tasks:
        f = families.setdefault(t["family"], {"tasks": 0, "tasks_served": 0})
        f["tasks"] += 1
        f["tasks_served"] += t["samples"] > 0
    return {
        "samples": len(index),
        "shards": shards,
        "node_counts": {n.name: node_counts.get(n.name, 0) for n in nodes},
        "tasks": tasks,
        "tasks_served": sum(1 for t in tasks if t["samples"] > 0),
        "families": families,
        "annotators": annotators or {},
        "failed_samples": failures or {},
        "incomplete_shards": incomplete or [],
        "reference_rule": f"reference counts only when quality.objectConsistency is absent or >= {MIN_OBJECT_CONSISTENCY}",
    }


def render_card(card: dict) -> str:
    """The dataset card as Markdown."""
    lines = [
        "# Dataset card", "",
        f"{card['samples']} samples in {len(card['shards'])} training shard(s); "
        f"{card['tasks_served']} of {len(card['tasks'])} tasks have at least one sample.",
        f"Rule: {card['reference_rule']}.", "",
        "## Shards", "", "| shard | samples | bytes |", "|---|---|---|",
        *[f"| {s['name']} | {s['samples']} | {s['bytes']} |" for s in card["shards"]], "",
        "## Samples per node type", "", "| node | samples |", "|---|---|",
        *[f"| {n} | {c} |" for n, c in card["node_counts"].items()], "",
        "## Samples per task", "", "| family | task | samples |", "|---|---|---|",
        *[f"| {t['family']} | {t['id']} | {t['samples']} |" for t in card["tasks"]], "",
        "## Annotators", "", "| node | annotator | version | model | revision |", "|---|---|---|---|---|",
        *[f"| {n} | {a['annotator']} | {a['version']} | {a['model_id'] or '-'} | {a['revision'] or '-'} |"
          for n, a in card["annotators"].items()], "",
        f"Failed samples per stage: {json.dumps(card['failed_samples'])}. "
        f"Incomplete shards (not packed): {', '.join(card['incomplete_shards']) or 'none'}.", "",
    ]
    return "\n".join(lines)
