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

A pack is switched in whole. It is written into a new generation folder
beside `--out` (`shards.<generation>`), and `--out` is a relative symlink to
it, replaced with one rename once the folder is complete and synced: a reader
sees the old pack or the new one, never a mix, whenever the run is killed.
Older generations (replaced or left by killed runs) are removed after the
switch and at the start of the next run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

from .catalog import DEFAULT_NODES
from .dataset_dir import PACK_CARD, PACK_INDEX, PACK_README, SOURCE, DatasetDir, shard_name
from .decode import ImageDecodeError, image_size
from .layout import METADATA_FIELD, merge_metadata, usable_nodes
from .licences import grouped_rows, most_restrictive, node_provenance
from .dataset_lock import dataset_lock
from .nodes import Graph200kError, NodeRegistry
from .pack_holdout import HoldoutSpec
from .provenance import redo_command, stale_reason
from .quality import REFERENCE_RULE
from .shardio import PARTIAL, atomic_tar, iter_samples, read_stats, sample_fields, stats_path, write_json, write_text
from .tasks import TaskGraph

DEFAULT_MAX_SHARD_SIZE = 1_000_000_000
SHARD_PATTERN = "train-{:06d}.tar"
HELDOUT_PATTERN = "heldout-{:06d}.tar"  # `--holdout`: the validation split
_IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
_TAR_BLOCK = 512
GENERATION = r"\d{8}T\d{6}-[0-9a-f]{6}"  # UTC time of the pack (sorts by age) and a random suffix


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

    def __init__(self, out: Path, max_size: int, pattern: str = SHARD_PATTERN, split: str = "train"):
        self.out, self.max_size, self.pattern, self.split = out, max_size, pattern, split
        self.index = 0
        self.size = 0
        self.count = 0
        self.shards: list[dict] = []
        self._ctx = None
        self._writer = None

    def _close(self) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(None, None, None)
            name = self.pattern.format(self.index)
            self.shards.append({"name": name, "samples": self.count, "bytes": (self.out / name).stat().st_size,
                                "split": self.split})
            self.index += 1
            self._ctx = self._writer = None

    def write(self, sample: dict[str, bytes]) -> str:
        size = sum(_TAR_BLOCK + -(-len(v) // _TAR_BLOCK) * _TAR_BLOCK for k, v in sample.items() if k != "__key__")
        if self._writer is not None and self.size + size > self.max_size:
            self._close()
        if self._writer is None:
            self._ctx = atomic_tar(self.out / self.pattern.format(self.index))
            self._writer = self._ctx.__enter__()
            self.size = self.count = 0
        self._writer.write(sample)
        self.size += size
        self.count += 1
        return self.pattern.format(self.index)

    def finish(self) -> list[dict]:
        self._close()
        return self.shards

    def abort(self) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(RuntimeError, RuntimeError("packing aborted"), None)
            self._ctx = self._writer = None


def new_generation() -> str:
    """A fresh generation id, e.g. `20250102T030405-1a2b3c`."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def generation_folder(out: Path, generation: str) -> Path:
    """Where generation `generation` of the pack `out` is written: `out`'s sibling `<name>.<generation>`."""
    return out.with_name(f"{out.name}.{generation}")


def current_generation(out: Path) -> Path | None:
    """The generation folder the link `out` points to, or None (no pack yet, or a plain folder)."""
    if not out.is_symlink():
        return None
    target = out.parent / os.readlink(out)
    return target if re.fullmatch(re.escape(out.name) + r"\." + GENERATION, target.name) else None


def remove_other_generations(out: Path, keep: Path | None) -> list[Path]:
    """Delete the generation folders of `out` other than `keep` (replaced packs, killed runs' folders)
    and links left half-made; never follows a link, never touches another name."""
    if not out.parent.is_dir():
        return []
    mine = re.compile(re.escape(out.name) + r"\." + GENERATION)
    removed = []
    for path in sorted(out.parent.iterdir()):
        if mine.fullmatch(path.name) and path != keep and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
            removed.append(path)
        elif path.name.startswith(f"{out.name}.link{PARTIAL}") and path.is_symlink():
            path.unlink()
    return removed


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def switch_pack(out: Path, folder: Path) -> None:
    """Make `out` the complete generation `folder`, with one rename of a symlink (atomic on POSIX).

    A plain folder at `out` (written before generations) cannot be replaced atomically: it is first
    renamed to a generation folder of its own, so a kill between the two renames leaves no `out`
    (both packs intact beside it; the next run links the newest)."""
    _fsync_dir(folder)
    if out.exists() and not out.is_symlink() and not out.is_dir():
        raise Graph200kError(f"--out {out} is a file, not a shard folder: remove it or choose another --out")
    link = out.with_name(f"{out.name}.link{PARTIAL}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        os.symlink(folder.name, link)
    except OSError as err:
        raise Graph200kError(f"cannot create the symlink {out} -> {folder.name} ({err}): packing needs a "
                             "filesystem with symlinks for --out") from None
    if out.is_dir() and not out.is_symlink():
        os.replace(out, generation_folder(out, new_generation()))
    os.replace(link, out)
    _fsync_dir(out.parent)


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
         nodes: NodeRegistry = DEFAULT_NODES, graph: TaskGraph | None = None, progress: bool = True,
         holdout: HoldoutSpec | None = None) -> PackResult:
    """Join source and node shards of `dataset` into training shards under `out` (default `dataset/shards`),
    holding the dataset's lock (`DatasetLocked` if an annotation run or another pack holds it). Node shards
    made from another version of their source shard are left out and listed (`stale_shards`). With a
    `holdout` rule (graph200k/pack_holdout.py) its keys go to `heldout-*.tar`, the others to `train-*.tar`."""
    with dataset_lock(Path(dataset), "python -m graph200k shards", create=False):
        return _pack(dataset, out, max_shard_size, nodes, graph, progress, holdout or HoldoutSpec())


def _pack(dataset: str | Path, out: str | Path | None, max_shard_size: int, nodes: NodeRegistry,
          graph: TaskGraph | None, progress: bool, holdout: HoldoutSpec) -> PackResult:
    started = time.time()
    dataset = Path(dataset)
    folders = DatasetDir(dataset)
    out = Path(out) if out else folders.packed
    source = folders.source
    if not source.is_dir():
        raise Graph200kError(f"{dataset} has no {source.name}/ folder: run `python -m annotators run --out {dataset}` first")
    sources = folders.source_tars()
    complete = [t for t in sources if read_stats(t)]
    incomplete = [t.name for t in sources if not read_stats(t)]
    if not complete:
        raise Graph200kError(f"{source} holds no complete source shard (no *.stats.json)")
    if not any(read_stats(t).get("succeeded") for t in complete):
        failed = sum(read_stats(t).get("failed", 0) for t in complete)
        raise Graph200kError(f"nothing to pack: no input sample of {dataset} was imported (0 succeeded, {failed} "
                             f"failed; reasons in {source}/*.errors.jsonl): fix the input and rerun "
                             "`python -m annotators run`")
    node_dirs = folders.node_dirs()
    if not out.name or out.name in (".", ".."):
        raise Graph200kError(f"--out {out} names no folder: give one, e.g. {folders.packed}")
    remove_other_generations(out, keep=current_generation(out))
    generation = new_generation()
    folder = generation_folder(out, generation)
    folder.mkdir(parents=True)
    writer = _RollingWriter(folder, max_shard_size)
    heldout_writer = _RollingWriter(folder, max_shard_size, HELDOUT_PATTERN, split="heldout")
    held_out = holdout.selector(lambda: (k for t in complete for k in sample_fields(t)))
    index: list[dict] = []
    annotators: dict[str, dict] = {}
    incomplete_nodes: list[str] = []
    stale_nodes: list[dict] = []
    failures = {SOURCE: 0}
    try:
        for tar in tqdm(complete, desc="packing", unit="shard", disable=not progress):
            shard = shard_name(tar)
            failures[SOURCE] += read_stats(tar)["failed"]
            peeks: list[tuple[str, _Peek]] = []
            for node_dir in node_dirs:
                node_tar = folders.node_tar(node_dir.name, shard)
                stats = read_stats(node_tar)
                if stats is None:
                    if node_tar.exists() or stats_path(node_tar).exists():
                        incomplete_nodes.append(f"{node_dir.name}/{shard}")
                    continue
                why = stale_reason(dataset, node_dir.name, shard)
                if why:
                    annotator = stats.get("annotator") or node_dir.name
                    stale_nodes.append({"shard": f"{node_dir.name}/{shard}", "annotator": annotator,
                                        "why": why, "redo": redo_command(dataset, annotator)})
                    continue
                annotators[node_dir.name] = {k: stats.get(k) for k in ("annotator", "version", "model_id",
                                                                       "revision", "license")}
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
                present = usable_nodes(fields, meta, nodes)
                split = "heldout" if held_out(key) else "train"
                name = (heldout_writer if split == "heldout" else writer).write(merged)
                index.append({"key": key, "shard": name, "split": split, "nodes": sorted(present), "fields": fields,
                              "caption": meta.get("caption"), "item": meta.get("item"), "sizes": _sizes(merged)})
            for label, peek in peeks:
                if peek.leftover() is not None:
                    raise Graph200kError(f"{label}: sample {peek.leftover()!r} is not in the source shard's order "
                                         "(or not in it at all); rerun the annotator with --overwrite")
        shards = writer.finish() + heldout_writer.finish()
        card = dataset_card(index, shards, nodes, graph or TaskGraph(nodes), annotators=annotators,
                            failures=failures, incomplete=incomplete + incomplete_nodes, stale=stale_nodes,
                            inputs=[read_stats(t) for t in complete], holdout=holdout)
        index_text = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in index)
        card.update(generation=generation, index=_file_record(PACK_INDEX, index_text.encode("utf-8")),
                    duration_s=round(time.time() - started, 3))
        write_text(folder / PACK_INDEX, index_text)
        write_json(folder / PACK_CARD, card)
        write_text(folder / PACK_README, render_card(card))
        switch_pack(out, folder)
    except BaseException:
        writer.abort()
        heldout_writer.abort()
        if current_generation(out) != folder:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    remove_other_generations(out, keep=folder)
    return PackResult(out, card, index)


def _file_record(name: str, data: bytes) -> dict:
    """How a reader checks that a file is the one this pack wrote."""
    return {"name": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def dataset_card(index: list[dict], shards: list[dict], nodes: NodeRegistry, graph: TaskGraph,
                 annotators: dict | None = None, failures: dict | None = None, incomplete: list | None = None,
                 stale: list | None = None, inputs: list[dict] | None = None,
                 holdout: HoldoutSpec | None = None) -> dict:
    """Counts per node type and, for each training task, how many samples can serve it; who made each
    node and under which licence (`inputs`: the source shards' stats, naming what samples were imported from)."""
    node_counts = Counter(n for e in index for n in e["nodes"])
    counts = {n.name: node_counts.get(n.name, 0) for n in nodes}
    provenance = node_provenance(counts, nodes, annotators or {}, inputs or [])
    node_sets = [set(e["nodes"]) for e in index]
    tasks = []
    for task in graph.tasks():
        serving = [e for e, s in zip(index, node_sets) if set(task.nodes) <= s]
        tasks.append({"id": task.id, "family": task.family, "nodes": list(task.nodes), "samples": len(serving),
                      "heldout_samples": sum(1 for e in serving if e.get("split") == "heldout")})
    families = {}
    for t in tasks:
        f = families.setdefault(t["family"], {"tasks": 0, "tasks_served": 0})
        f["tasks"] += 1
        f["tasks_served"] += t["samples"] > 0
    return {
        "samples": len(index),
        "shards": shards,
        "node_counts": counts,
        "tasks": tasks,
        "tasks_served": sum(1 for t in tasks if t["samples"] > 0),
        "families": families,
        "annotators": annotators or {},
        "failed_samples": failures or {},
        "incomplete_shards": incomplete or [],
        "stale_shards": stale or [],
        "reference_rule": REFERENCE_RULE,
        "splits": split_counts(index, shards),
        "holdout": (holdout or HoldoutSpec()).describe(),
        "provenance": provenance,
        "licence_summary": most_restrictive(provenance),
    }


def split_counts(index: list[dict], shards: list[dict]) -> dict:
    """Samples and tars per split (`train-*.tar`, `heldout-*.tar`)."""
    return {split: {"samples": sum(1 for e in index if e.get("split", "train") == split),
                    "shards": sum(1 for s in shards if s.get("split", "train") == split)}
            for split in ("train", "heldout")}


def _split_lines(card: dict) -> list[str]:
    splits, rule = card.get("splits"), card.get("holdout") or {}
    if not splits:
        return []
    how = (f"the {rule['count']} keys of lowest hash score" if rule.get("count") else
           f"keys whose hash score is under {rule['fraction']:g}" if rule.get("fraction") else "")
    if rule.get("named_keys"):
        how = " plus ".join(filter(None, [how, f"{rule['named_keys']} keys named in {rule.get('keys_file')}"]))
    return ["## Splits", "",
            f"train: {splits['train']['samples']} samples in {splits['train']['shards']} `train-*.tar`; "
            f"heldout: {splits['heldout']['samples']} samples in {splits['heldout']['shards']} `heldout-*.tar` "
            f"({'held out: ' + how if how else 'no --holdout'}; graph200k/pack_holdout.py).", ""]


def render_card(card: dict) -> str:
    """The dataset card as Markdown."""
    lines = [
        "# Dataset card", "",
        f"{card['samples']} samples in {len(card['shards'])} training shard(s); "
        f"{card['tasks_served']} of {len(card['tasks'])} tasks have at least one sample; "
        f"generation {card.get('generation', '-')}.",
        f"Rule: {card['reference_rule']}.", "",
        *_split_lines(card),
        "## Shards", "", "| shard | split | samples | bytes |", "|---|---|---|---|",
        *[f"| {s['name']} | {s.get('split', 'train')} | {s['samples']} | {s['bytes']} |" for s in card["shards"]], "",
        "## Samples per node type", "", "| node | samples |", "|---|---|",
        *[f"| {n} | {c} |" for n, c in card["node_counts"].items()], "",
        "## Samples per task", "", "| family | task | samples | held out |", "|---|---|---|---|",
        *[f"| {t['family']} | {t['id']} | {t['samples']} | {t.get('heldout_samples', 0)} |" for t in card["tasks"]], "",
        "## Annotators", "", "| node | annotator | version | model | revision |", "|---|---|---|---|---|",
        *[f"| {n} | {a['annotator']} | {a['version']} | {a['model_id'] or '-'} | {a['revision'] or '-'} |"
          for n, a in card["annotators"].items()], "",
        f"Failed samples per stage: {json.dumps(card['failed_samples'])}. "
        f"Incomplete shards (not packed): {', '.join(card['incomplete_shards']) or 'none'}.",
        f"Stale shards (made from another version of their source shard; not packed): "
        f"{', '.join(s['shard'] for s in card.get('stale_shards', [])) or 'none'}.",
        *[f"- `{s['shard']}`: {s['why']}; redo: `{s['redo']}`" for s in card.get("stale_shards", [])], "",
        "## Provenance and licences", "",
        card.get("licence_summary", "Licences not recorded (packed by an older version)."), "",
        "| node | samples | made by | licence |", "|---|---|---|---|",
        *[f"| {r['node']} | {r['samples']} | {r['made_by']} | {r['licence']} |"
          for r in grouped_rows(card.get("provenance", []))],
        "",
    ]
    return "\n".join(lines)
