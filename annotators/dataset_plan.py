"""The plan a dataset folder was made from (`<dataset>/plan.json`), and refusing one that would lose samples.

Rerunning `annotators run` over an existing dataset must not delete what it
holds: a run whose plan would drop samples the dataset has (another input) or
re-cut every shard (another `--samples-per-shard`, another kind of input) is
refused with what differs, unless `--overwrite`. A plan that only adds
samples, or whose files changed content, is accepted: the shards it changes
are redone, the others kept. The record holds the kind, the samples per shard,
the input path (for messages only: moving the input is fine) and each shard's
content id and keys; it is written atomically before any shard is.
"""

from __future__ import annotations

import json
from pathlib import Path

from graph200k.dataset_dir import DatasetDir, shard_name
from graph200k.shardio import read_stats, sample_fields, write_text

from .inputs.sources import SourcePlan

CUT_BY_SAMPLES_PER_SHARD = ("folder", "arrow")  # webdataset input keeps one source shard per input tar


class PlanConflict(ValueError):
    """The run's plan would drop or re-cut an existing dataset's samples; the message says what differs."""


def plan_record(plan: SourcePlan, samples_per_shard: int) -> dict:
    return {"input": plan.input, "kind": plan.kind, "samples_per_shard": samples_per_shard,
            "shards": [{"shard": s.shard, "id": s.fingerprint, "keys": [i["key"] for i in s.items]}
                       for s in plan.shards]}


def read_record(dataset: Path) -> dict | None:
    """The dataset's plan record; for a dataset from before plan records, one rebuilt from its source
    shards (kind from their stats, samples per shard from `run.json`, keys from the tars' headers)."""
    folder = DatasetDir(dataset)
    if folder.plan.exists():
        return json.loads(folder.plan.read_text(encoding="utf-8"))
    complete = [(t, read_stats(t)) for t in folder.source_tars() if read_stats(t)]
    if not complete:
        return None
    try:
        run = json.loads(folder.run_record.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        run = {}
    return {"input": run.get("input"), "kind": complete[0][1].get("kind"),
            "samples_per_shard": run.get("samples_per_shard"),
            "shards": [{"shard": shard_name(t), "keys": sorted(sample_fields(t))} for t, _ in complete]}


def check_plan(dataset: Path, plan: SourcePlan, samples_per_shard: int) -> None:
    """Raise `PlanConflict` if running `plan` over `dataset` would drop or re-cut its samples."""
    recorded = read_record(dataset)
    if recorded is None:
        return
    differences = []
    if recorded.get("kind") not in (None, plan.kind):
        differences.append(f"input kind: {recorded['kind']} in the dataset, {plan.kind} in this run")
    elif plan.kind in CUT_BY_SAMPLES_PER_SHARD and recorded.get("samples_per_shard") not in (None, samples_per_shard):
        differences.append(f"samples per shard: {recorded['samples_per_shard']} in the dataset, "
                           f"{samples_per_shard} in this run")
    had = [k for s in recorded.get("shards", ()) for k in s.get("keys", ())]
    now = {i["key"] for s in plan.shards for i in s.items}
    lost = [k for k in had if k not in now]
    if lost:
        differences.append(f"{len(lost)} of its {len(had)} samples are not in this input "
                           f"(e.g. {', '.join(lost[:5])})")
    if differences:
        made_from = f" (made from {recorded['input']})" if recorded.get("input") else ""
        raise PlanConflict(
            f"{dataset} holds a dataset planned differently{made_from}: {'; '.join(differences)}. "
            "Nothing was changed. Rerun with the input and --samples-per-shard it was made with, write to "
            "another --out, or pass --overwrite to replace its shards with this input's.")


def record_plan(dataset: Path, plan: SourcePlan, samples_per_shard: int) -> None:
    """Write the plan record (atomically) if it changed."""
    record = plan_record(plan, samples_per_shard)
    path = DatasetDir(dataset).plan
    if path.exists() and json.loads(path.read_text(encoding="utf-8")) == record:
        return
    write_text(path, json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
