"""Annotating one source shard with one annotator: what runs inside a Ray actor.

For each produced node the output is `<dataset>/nodes/<node>/<shard>.tar`
(only the produced fields, keys as in the source shard), its errors record
and, last, `<shard>.stats.json`. A sample whose source already carries the
node (an imported annotation) is counted `already_present` and not redone; a
batch that raises is retried sample by sample, and each sample that still
fails is recorded with its reason. `samples = written + already_present + failed`.
A node shard this annotator must read that was made from another version of
the source shard (stale, `graph200k.provenance`) is refused (`StaleInput`):
no map is ever computed from, or joined with, another version of its image.
"""

from __future__ import annotations

import hashlib
import json
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable, Mapping

from graph200k.dataset_dir import SOURCE, DatasetDir
from graph200k.decode import MAX_PIXELS, ImageDecodeError, decode_image
from graph200k.layout import METADATA_FIELD, merge_metadata, stored_instances
from graph200k.nodes import NodeRegistry
from graph200k.provenance import redo_command, source_id, stale_reason
from graph200k.shardio import atomic_tar, iter_samples, read_stats, stats_path, write_errors, write_json

from .base import NODE_METADATA, Annotator, SampleInput, output_fields


class StaleInput(RuntimeError):
    """A node shard an annotator must read was made from another version of the source shard."""


def shard_inputs(cls: type[Annotator], dataset: Path, shard: str, nodes: NodeRegistry) -> dict | None:
    """Ids of what a node shard is computed from (the source shard's content id, the read nodes' shard ids;
    None for a node that is absent or stale, since it is not read), or None if the source shard is missing."""
    folder = DatasetDir(dataset)
    source = read_stats(folder.source_tar(shard))
    if source is None:
        return None
    inputs: dict[str, Any] = {SOURCE: source_id(source)}
    for need in cls.reads(nodes):
        stats = read_stats(folder.node_tar(need, shard))
        inputs[need] = stats["id"] if stats and not stale_reason(dataset, need, shard) else None
    return inputs


def stale_needs(cls: type[Annotator], dataset: Path, shard: str, nodes: NodeRegistry) -> dict[str, str]:
    """The required nodes whose shard exists but is stale (node -> why): the annotator cannot run on them."""
    stale = {}
    for need in cls.needs(nodes):
        why = stale_reason(dataset, need, shard)
        if why:
            stale[need] = why
    return stale


def stale_input_message(dataset: Path, shard: str, stale: dict[str, str], input: str | None = None) -> str:
    return "; ".join(f"{need}/{shard} is stale ({why}): redo it first with "
                     f"`{redo_command(dataset, need, input)}`" for need, why in stale.items())


def shard_id(annotator: Annotator, inputs: dict) -> str:
    """Id of a node shard: the annotator's version and model, the settings that shape its
    output, and the ids of its inputs. A completed shard with another id is redone."""
    what = [type(annotator).describe(), annotator.output_settings(), inputs]
    return hashlib.sha1(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def is_done(cls: type[Annotator], dataset: Path, shard: str, nodes: NodeRegistry,
            settings: Mapping[str, Any] | None = None) -> bool:
    """True when every produced node's shard is complete and was made from the current inputs
    by this version with the same output-shaping settings."""
    inputs = shard_inputs(cls, dataset, shard, nodes)
    if inputs is None:
        return False
    wanted = shard_id(cls(nodes, settings), inputs)
    for node in cls.produces:
        stats = read_stats(DatasetDir(dataset).node_tar(node, shard))
        if stats is None or stats.get("id") != wanted:
            return False
    return True


def _decode_node(nodes: NodeRegistry, name: str, fields: dict[str, bytes], max_pixels: int) -> Any:
    node = nodes.get(name)
    found = stored_instances(node, fields)
    if not found:
        return None
    mode = node.storage.mode
    if node.max_instances == 1:
        return decode_image(fields[found[0].field], mode, max_pixels)
    if node.storage.pair_field:
        return [(decode_image(fields[i.field], mode, max_pixels), decode_image(fields[i.pair], "RGB", max_pixels))
                for i in found]
    return [decode_image(fields[i.field], mode, max_pixels) for i in found]


class _ShardAnnotation:
    """State of one shard being annotated: writers, counts, errors."""

    def __init__(self, annotator: Annotator, dataset: Path, shard: str, max_pixels: int,
                 on_sample: Callable[[int], None] | None = None):
        self.annotator = annotator
        self.on_sample = on_sample or (lambda n: None)  # told of each sample done: written, present or failed
        self.nodes = annotator.nodes
        self.dataset = dataset
        self.shard = shard
        self.max_pixels = max_pixels
        self.errors: list[dict] = []
        self.written = self.present = self.failed = 0
        self.pending: list[SampleInput] = []
        self.writers: dict[str, Any] = {}
        self.skip: dict[str, set[str]] = {}  # key -> produced nodes the source already carries

    def _fail(self, key: str, reason: str) -> None:
        self.failed += 1
        self.on_sample(1)
        self.errors.append({"key": key, "annotator": self.annotator.name, "reason": reason})

    def add(self, key: str, fields: dict[str, bytes]) -> None:
        produced = [self.nodes.get(n) for n in self.annotator.produces]
        if all(stored_instances(n, fields) for n in produced):
            self.present += 1
            self.on_sample(1)
            return
        target = [f for f in fields if f.split(".")[0] == "target"]
        try:
            if not target:
                raise ImageDecodeError("sample has no target image")
            rgb = decode_image(fields[target[0]], "RGB", self.max_pixels)
            needed = {}
            required = self.annotator.needs(self.nodes)
            for need in self.annotator.reads(self.nodes):
                value = _decode_node(self.nodes, need, fields, self.max_pixels)
                if value is None and need in required:
                    raise ImageDecodeError(f"needs node {need!r}, which this sample lacks")
                if value is not None:
                    needed[need] = value
        except ImageDecodeError as err:
            self._fail(key, str(err))
            return
        meta = json.loads(fields["json"]) if "json" in fields else {}
        skip = {n.name for n in produced if stored_instances(n, fields)}
        self.skip[key] = skip
        self.pending.append(SampleInput(key, rgb, needed, meta))
        if len(self.pending) >= self.annotator.batch_size:
            self.flush()

    def flush(self) -> None:
        batch, self.pending = self.pending, []
        if not batch:
            return
        try:
            results = self._encode_all(batch, self.annotator.annotate(batch))
        except Exception:  # isolate the failing samples
            results = []
            for sample in batch:
                try:
                    results += self._encode_all([sample], self.annotator.annotate([sample]))
                except Exception as err:
                    results.append((sample, err))
        for sample, outcome in results:
            if isinstance(outcome, Exception):
                self._fail(sample.key, f"{type(outcome).__name__}: {outcome}")
                continue
            for node, fields in outcome.items():
                self.writers[node].write({"__key__": sample.key, **fields})
            self.written += 1
            self.on_sample(1)

    def _encode_all(self, batch: list[SampleInput], outputs: list) -> list[tuple[SampleInput, Any]]:
        if len(outputs) != len(batch):
            raise ValueError(f"annotator {self.annotator.name!r} returned {len(outputs)} results for {len(batch)} samples")
        encoded = []
        for sample, output in zip(batch, outputs):
            if isinstance(output, Exception):  # this sample failed on its own (see Annotator.annotate)
                encoded.append((sample, output))
                continue
            skip = self.skip.get(sample.key, set())
            metadata = dict(output.get(NODE_METADATA) or {})
            stray = sorted(set(metadata) - set(self.annotator.produces))
            if stray:
                raise ValueError(f"annotator {self.annotator.name!r} returned metadata for nodes it does not "
                                 f"produce: {stray}")
            per_node = {}
            for name in self.annotator.produces:
                if name in skip:
                    continue
                if name not in output:
                    raise ValueError(f"annotator {self.annotator.name!r} returned no {name!r} for {sample.key}")
                per_node[name] = output_fields(self.nodes.get(name), output[name])
                if name in metadata:
                    per_node[name][METADATA_FIELD] = json.dumps({name: metadata[name]}, ensure_ascii=False,
                                                                sort_keys=True).encode("utf-8")
            encoded.append((sample, per_node))
        return encoded


def annotate_shard(annotator: Annotator, dataset: Path, shard: str, max_pixels: int = MAX_PIXELS,
                   worker_ready_at: float | None = None, on_sample: Callable[[int], None] | None = None) -> dict:
    """Annotate one source shard; write the node shards, errors and stats; return the stats.

    `worker_ready_at` (when the worker finished loading its model) is recorded so
    that start-up and steady-state throughput can be told apart. `on_sample(n)` is told of
    samples done (written, already present or failed) as they are (the run's progress bar)."""
    started = time.time()
    cls = type(annotator)
    nodes = annotator.nodes
    folder = DatasetDir(dataset)
    inputs = shard_inputs(cls, dataset, shard, nodes)
    if inputs is None:
        raise FileNotFoundError(f"source shard {shard} is not complete in {dataset}")
    stale = stale_needs(cls, dataset, shard, nodes)
    if stale:
        raise StaleInput(stale_input_message(dataset, shard, stale))
    deps = {}
    for need in cls.reads(nodes):
        tar = folder.node_tar(need, shard)
        if inputs.get(need) is not None:  # complete and made from this source shard
            deps.update({s["__key__"]: merge_metadata({**deps.get(s["__key__"], {}), **s}, deps.get(s["__key__"], {}))
                         for s in iter_samples(tar)})
    state = _ShardAnnotation(annotator, dataset, shard, max_pixels, on_sample)
    samples = 0
    with ExitStack() as stack:
        for node in cls.produces:
            state.writers[node] = stack.enter_context(atomic_tar(folder.node_tar(node, shard)))
        for sample in iter_samples(folder.source_tar(shard)):
            key = sample.pop("__key__")
            fields = merge_metadata({**deps.get(key, {}), **sample}, deps.get(key, {}))
            fields.pop("__key__", None)
            samples += 1
            state.add(key, fields)
        state.flush()
    stats = {
        "shard": shard,
        "stage": "annotate",
        "id": shard_id(annotator, inputs),
        "inputs": inputs,
        **cls.describe(),
        "license": cls.license,  # for the dataset card's provenance; not in describe(), which keys shard ids
        "settings": annotator.output_settings(),
        "batch_size": cls.batch_size,
        "samples": samples,
        "written": state.written,
        "already_present": state.present,
        "failed": state.failed,
        "duration_s": round(time.time() - started, 3),
        "started_at": round(started, 3),
        "finished_at": round(time.time(), 3),
        "worker_ready_at": None if worker_ready_at is None else round(worker_ready_at, 3),
    }
    for node in cls.produces:
        tar = folder.node_tar(node, shard)
        write_errors(tar, state.errors)
        write_json(stats_path(tar), {**stats, "node": node})
    return stats
