"""Whether some sample of the shards can serve a selected task at all, known when a `GridDataset` is built.

Without this check a selection no sample can serve (`data.tasks=canny->target` over shards
without Canny maps) is found only at the end of a whole epoch, after the model has loaded.
`check_coverage` reads the samples' node sets until one sample carries every node of a selected
task: from a packed folder's index (`index.jsonl`, one line per sample, read without opening a
tar), else from the tars' member names (`TarIndex`, headers only, kept for the stream to reuse).
In the usual case the first sample answers; only a selection nothing serves reads everything,
and then the error names the tasks and the nodes no sample carries. Key filters (the held-out
split) are not applied here: a selection the filtered samples cannot serve still fails when drawn.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from typing import Iterator

from graph200k.dataset_dir import PACK_INDEX, PACK_README
from graph200k.layout import nodes_present
from graph200k.nodes import Production

from .planner import TaskMix
from .shards import ShardError, TarIndex, pack_card


class NoSamplesForTasks(ShardError):
    """No sample of the shards carries every node of any selected task: the selection is at fault."""


class EmptyShards(ShardError):
    """The shards hold no samples at all: the shards are at fault."""


def _node_sets(paths: list[str], mix: TaskMix, indexes: dict[str, TarIndex]) -> Iterator[frozenset[str]]:
    """The node set of every sample of `paths`, folder by folder, lazily."""
    by_folder: dict[str, list[str]] = defaultdict(list)
    for path in paths:
        by_folder[os.path.dirname(path) or "."].append(path)
    for folder, tars in by_folder.items():
        if pack_card(folder) is not None:
            chosen = {os.path.basename(t) for t in tars}
            with open(os.path.join(folder, PACK_INDEX), encoding="utf-8") as f:
                for line in f:
                    entry = json.loads(line)
                    if entry.get("shard") in chosen:
                        yield frozenset(entry.get("nodes") or ())
            continue
        for path in tars:
            index = indexes.get(path)
            if index is None:
                index = indexes[path] = TarIndex(path)
            for sample in index.samples:
                yield frozenset(nodes_present(sample.fields, mix.graph.nodes))


def describe_selection(mix: TaskMix) -> str:
    """The selected tasks in a few words (their ids, or their count and families)."""
    tasks = [t.id for family in mix.weights for t in mix.by_family[family]]
    if len(tasks) <= 3:
        return ", ".join(tasks)
    return f"{len(tasks)} tasks of {', '.join(mix.weights)}"


def check_coverage(paths: list[str], mix: TaskMix, indexes: dict[str, TarIndex]) -> None:
    """`NoSamplesForTasks` when no sample of `paths` can serve a task of `mix`, `EmptyShards` when they hold
    none (see the module docstring)."""
    needs = [frozenset(t.nodes) for family in mix.weights for t in mix.by_family[family]]
    seen: set[str] = set()
    count = 0
    for nodes in _node_sets(paths, mix, indexes):
        if any(need <= nodes for need in needs):
            return
        seen |= nodes
        count += 1
    where = paths[0] if len(paths) == 1 else f"{len(paths)} shards, the first {paths[0]}"
    if count == 0:
        raise EmptyShards(f"the shards ({where}) hold no samples; pack some with "
                          "`python -m graph200k shards --dataset DATASET`")
    missing = sorted(set().union(*needs) - seen)
    lacking = (f"no sample carries {', '.join(missing)}" if missing
               else "no single sample carries all the nodes of one of them")
    folder = os.path.dirname(paths[0]) or "."
    card = os.path.join(folder, PACK_README)
    listed = (f"choose tasks they serve (listed in {card})" if os.path.isfile(card)
              else "choose tasks whose nodes they carry")
    made = [n for n in missing if mix.graph.nodes.get(n).produced_by == Production.ANNOTATOR]
    annotate = (f", or annotate {', '.join(made)} (`python -m annotators run --annotators {' '.join(made)}`) "
                "and pack again" if made else "")
    raise NoSamplesForTasks(f"none of the {count} samples of the shards ({where}) can serve the selected tasks "
                            f"({describe_selection(mix)}): {lacking}; {listed}{annotate}")
