"""The annotation run: plan the source shards, write them, then run each annotator over them on Ray.

Ray Data does the scheduling. Each stage is a dataset with one row per shard
still to do; writing source shards maps it with stateless tasks, and each
annotator maps it with `map_batches(<callable class>, concurrency=n)`, i.e.
an actor pool whose actors load the model once and then annotate whole
shards (rows of a shard in batches of the annotator's `batch_size`). A shard
is the unit of work, of completion and of resume, as in img2dataset: only
shard stats travel through Ray, images never leave the worker that reads and
writes them, and a rerun skips every shard whose stats file says it is done
with the current inputs and annotator version. A run holds the dataset's lock
(`graph200k.dataset_lock`) throughout, and refuses a plan that would drop the
samples of the dataset it writes to (`dataset_plan`) unless `--overwrite`.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections import Counter
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from graph200k.catalog import DEFAULT_NODES
from graph200k.dataset_dir import SOURCE, DatasetDir, shard_name
from graph200k.dataset_lock import dataset_lock
from graph200k.decode import MAX_PIXELS
from graph200k.layout import stored_instances
from graph200k.nodes import NodeRegistry
from graph200k.provenance import stale_node_shards
from graph200k.quiet import is_verbose, ray_init_options
from graph200k.shardio import invalidate, read_errors, read_stats, remove_partials, sample_fields, write_json

from .annotate import is_done, stale_input_message, stale_needs
from .base import Annotator
from .content_ids import ContentIds
from .dataset_plan import check_plan, record_plan
from .inputs.ingest import INGEST_VERSION, write_source_shard
from .inputs.columns import ColumnMap
from .inputs.sources import DEFAULT_SAMPLES_PER_SHARD, ShardPlan, SourcePlan, plan_sources
from .progress import SampleReporter, StageProgress, start_counter
from .worker import AnnotatorWorker

if TYPE_CHECKING:  # the registry imports every annotator module; Ray workers need none of them
    from .registry import AnnotatorRegistry

LOCAL_OBJECT_STORE_BYTES = 512 * 1024**2  # only shard stats travel through the object store
# A run alternates stages of tasks (source shards) and of actors (annotators), and Ray never
# gives a task's worker process to an actor. Left to the default (1 s), Ray kills the idle task
# workers while the next annotator's actors are annotating, and each dying worker spends about
# 0.4 s of CPU tearing down its imports (pandas, pyarrow, Ray Data) on the cores the actors use.
# A local Ray keeps idle workers for a minute instead (the node's memory allows a few more).
LOCAL_SYSTEM_CONFIG = {"idle_worker_killing_time_threshold_ms": 60_000}


class AnnotatorUnavailable(RuntimeError):
    """`--strict` and an annotator could not run; the message lists which and how to enable them."""


@dataclass
class RunConfig:
    input: Path
    out: Path
    annotators: Sequence[str] | None = None  # None: every registered annotator
    strict: bool = False
    overwrite: bool = False
    samples_per_shard: int = DEFAULT_SAMPLES_PER_SHARD
    num_cpus: int | None = None  # local Ray only
    address: str | None = None
    workers: int | None = None  # actors per annotator (default: as many as the resources allow)
    cpus_per_worker: float | None = None  # default: the annotator's declaration
    gpus_per_worker: float | None = None
    batch_size: int | None = None
    max_pixels: int = MAX_PIXELS
    follow_symlinks: bool = False  # folder inputs: also read links that lead out of the input folder
    columns: ColumnMap = field(default_factory=ColumnMap)  # `datasets` inputs: --image-col, --caption-col
    progress: bool = True
    settings: dict[str, dict[str, str]] = field(default_factory=dict)  # annotator -> setting -> value (`--set`)


@dataclass
class AnnotatorRow:
    annotator: str
    nodes: str
    status: str  # ran | up to date | skipped | failed
    shards: int = 0
    written: int = 0
    already_present: int = 0
    failed: int = 0
    why: str = ""
    how_to_enable: str = ""


@dataclass
class RunSummary:
    dataset: str
    inputs: int = 0
    succeeded: int = 0
    failed: int = 0
    field_errors: int = 0
    collisions: list[dict] = field(default_factory=list)
    unmatched_files: list[str] = field(default_factory=list)
    annotators: list[AnnotatorRow] = field(default_factory=list)
    shard_errors: list[dict] = field(default_factory=list)
    stale: list[dict] = field(default_factory=list)  # node shards made from other inputs: not packed, not read
    duration_s: float = 0.0

    def to_json(self) -> dict:
        d = self.__dict__.copy()
        d["annotators"] = [r.__dict__ for r in self.annotators]
        return d


# --- Ray ---------------------------------------------------------------------------------------

@contextmanager
def _loopback_only() -> Iterator[None]:
    """Make the Ray started in this block listen on 127.0.0.1 only (GCS, raylet, object manager, workers).

    On Linux Ray gives a local node the machine's routable address and its servers listen on every
    interface, protected only by token authentication. With `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`
    (read at import, hence also set on the already imported constant) Ray uses the loopback address,
    as it does on macOS and Windows, and every server binds to it; the processes it starts inherit it."""
    from ray._private import ray_constants

    name = ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR
    saved_env, saved_flag = os.environ.get(name), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[name], ray_constants.ENABLE_RAY_CLUSTER = "0", False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved_env


class ClusterUnreachable(ValueError):
    """`--address` names no Ray cluster that answers; the message names the address and the fix."""


def check_ray_address(address: str | None, timeout: float = 3.0) -> None:
    """`ClusterUnreachable` within seconds when `address` (as `ray.init` reads it: `RAY_ADDRESS` wins) names no
    listening Ray: `ray.init` would otherwise retry for a minute or more. `auto` is resolved as Ray resolves it
    (the last `ray start` cluster, else a GCS process on this machine); `host:port` and `ray://host:port` get a
    TCP connection attempt. Only whether something listens is checked, not that it is Ray."""
    if not address:
        return
    given = os.environ.get("RAY_ADDRESS") or address
    source = "RAY_ADDRESS" if os.environ.get("RAY_ADDRESS") else "--address"
    fix = "give the address of a running cluster, or leave --address out to start a local Ray"
    target = given
    if given == "auto":
        try:
            from ray._private.services import canonicalize_bootstrap_address
        except ImportError:  # another Ray layout: leave the lookup to ray.init
            return
        try:
            target = canonicalize_bootstrap_address("auto")
        except ConnectionError:
            target = None
        if not target:
            raise ClusterUnreachable(f"{source} auto: no running Ray cluster was found on this machine; start one "
                                     f"with `ray start --head`, {fix}")
    host, _, port = target.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # a form this check does not know: ray.init judges it
    from graph200k.hub import tcp_unreachable

    why = tcp_unreachable(host.strip("[]"), int(port), timeout)
    if why:
        resolved = f" (resolved to {target})" if target != given else ""
        raise ClusterUnreachable(f"{source} {given}{resolved}: no Ray cluster answers at {host}:{port} ({why}); "
                                 f"start it (`ray start --head` on that machine), {fix}")


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[None]:
    """Join `address` or start a quiet local Ray sized to the machine, listening on 127.0.0.1 only;
    reuse a session already open."""
    import ray

    if ray.is_initialized():
        yield
        return
    common = dict(include_dashboard=False, **ray_init_options())  # quiet unless -v (graph200k.quiet)
    if address:
        ray.init(address=address, **common)
        try:
            yield
        finally:
            ray.shutdown()
        return
    with _loopback_only():
        ray.init(num_cpus=num_cpus or os.cpu_count(), object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                 _system_config=LOCAL_SYSTEM_CONFIG, **common)
        try:
            yield
        finally:
            ray.shutdown()


def _quiet_data_context(progress: bool) -> None:
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False  # they count rows, i.e. shards: our per-sample bar instead (progress.py)
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    ctx.verbose_stats_logs = False
    if not is_verbose():
        logging.getLogger("ray.data").setLevel(logging.ERROR)


def _counter(cfg: RunConfig, counter: Any | None) -> Any | None:
    """The `SampleCounter` a stage reports to: the run's, else a new one; None without progress."""
    if not cfg.progress:
        return None
    return counter if counter is not None else start_counter()


def _cluster_capacity() -> tuple[float, float]:
    import ray

    res = ray.cluster_resources()
    return float(res.get("CPU", 1)), float(res.get("GPU", 0))


def _ingest_batch(batch: dict[str, np.ndarray], dataset: str, max_pixels: int,
                  reporter: SampleReporter | None = None) -> dict[str, list]:
    out = []
    for job in batch["job"]:
        plan = ShardPlan.from_json(json.loads(job))
        try:
            out.append(json.dumps(write_source_shard(plan, Path(dataset), DEFAULT_NODES, max_pixels,
                                                     on_sample=reporter)))
        except Exception as err:  # one broken input shard must not stop the others
            out.append(json.dumps({"shard": plan.shard, "error": f"{type(err).__name__}: {err}"}))
        if reporter is not None:
            reporter.flush()
    return {"stats": out}


def _map_shards(jobs: list[str], fn, progress: StageProgress, **map_kwargs) -> Iterator[dict]:
    """Each job (one shard) through `fn` on Ray Data, stats as they come back; `progress` counts
    the shards done (its samples come from the workers' reporters)."""
    import ray.data

    ds = ray.data.from_items([{"job": j} for j in jobs], override_num_blocks=len(jobs))
    with warnings.catch_warnings():
        if not is_verbose():  # max_restarts (run_annotator) is one of map_batches' deprecated **ray_remote_args
            warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated", category=DeprecationWarning)
        ds = ds.map_batches(fn, batch_size=1, **map_kwargs)
    with progress:
        for row in ds.iter_rows():
            stats = json.loads(row["stats"])
            progress.shard_done()
            yield stats


# --- stages --------------------------------------------------------------------------------------

def _source_done(dataset: Path, plan: ShardPlan) -> bool:
    stats = read_stats(DatasetDir(dataset).source_tar(plan.shard))
    return bool(stats) and stats.get("plan") == plan.fingerprint and stats.get("ingest_version") == INGEST_VERSION


def _drop_stale_shards(dataset: Path, plan: SourcePlan) -> None:
    """Shards of an earlier, larger plan over this dataset are removed with their node shards
    (reached only with `--overwrite`: `check_plan` refuses a plan that drops samples)."""
    wanted = {s.shard for s in plan.shards}
    folder = DatasetDir(dataset)
    for tar in folder.source_tars():
        shard = shard_name(tar)
        if shard not in wanted:
            invalidate(tar)
            folder.hashes(shard).unlink(missing_ok=True)
            for node_dir in folder.node_dirs():
                invalidate(folder.node_tar(node_dir.name, shard))


def write_sources(cfg: RunConfig, plan: SourcePlan, summary: RunSummary, counter: Any | None = None) -> None:
    """Write the source shards not yet done. `counter`: the run's `SampleCounter` (one is started
    when `cfg.progress` and none is given)."""
    import ray.data

    dataset = cfg.out
    pending = [s for s in plan.shards if cfg.overwrite or not _source_done(dataset, s)]
    if pending:
        cpus, _ = _cluster_capacity()
        jobs = [json.dumps(s.to_json()) for s in pending]
        progress = StageProgress(_counter(cfg, counter), "source shards", sum(len(s.items) for s in pending),
                                 len(pending))
        for stats in _map_shards(jobs, _ingest_batch, progress,
                                 fn_kwargs={"dataset": str(dataset), "max_pixels": cfg.max_pixels,
                                            "reporter": progress.reporter()},
                                 num_cpus=1, compute=ray.data.TaskPoolStrategy(size=max(1, min(len(jobs), int(cpus))))):
            if "error" in stats:
                summary.shard_errors.append({"stage": SOURCE, **stats})
    count_source_shards(summary, dataset, plan)


def count_source_shards(summary: RunSummary, dataset: Path, plan: SourcePlan) -> None:
    """Add the plan's accounting to `summary`: inputs are the planned samples, and every sample of a
    source shard that did not complete (its error is in `summary.shard_errors`) counts as failed."""
    for s in plan.shards:
        summary.inputs += len(s.items)
        if not _source_done(dataset, s):
            summary.failed += len(s.items)
            continue
        stats = read_stats(DatasetDir(dataset).source_tar(s.shard))
        summary.succeeded += stats["succeeded"]
        summary.failed += stats["failed"]
        summary.field_errors += stats["field_errors"]


def _pending_shards(cls: type[Annotator], cfg: RunConfig, shards: list[str], nodes: NodeRegistry) -> list[str]:
    if cfg.overwrite:
        return list(shards)
    return [s for s in shards if not is_done(cls, cfg.out, s, nodes, cfg.settings.get(cls.name))]


def _nothing_to_do(cfg: RunConfig, plan: SourcePlan, chosen: list[type[Annotator]], registry: AnnotatorRegistry) -> bool:
    """True when every source shard and every available annotator's shards are complete (no Ray needed)."""
    if cfg.overwrite or any(not _source_done(cfg.out, s) for s in plan.shards):
        return False
    shards = [s.shard for s in plan.shards]
    return not any(_pending_shards(c, cfg, shards, registry.nodes) for c in chosen
                   if c(registry.nodes, cfg.settings.get(c.name)).availability().ok)


class ImportedNodes:
    """How many samples already carry each set of nodes in their input, so that an annotator that
    is skipped still reports the samples it leaves in place. Read once per run, from the source
    tars' headers alone, and only if some annotator is skipped."""

    def __init__(self, dataset: Path, nodes: NodeRegistry):
        self.dataset, self.nodes = dataset, nodes
        self._by_shard: dict[str, Counter] = {}

    def _node_sets(self, shard: str) -> Counter:
        if shard not in self._by_shard:
            stored = [n for n in self.nodes if n.storage is not None]
            self._by_shard[shard] = Counter(
                frozenset(n.name for n in stored if stored_instances(n, fields))
                for fields in sample_fields(DatasetDir(self.dataset).source_tar(shard)).values())
        return self._by_shard[shard]

    def count(self, produces: Sequence[str], shards: list[str]) -> int:
        """Samples of `shards` whose input carries every node in `produces`."""
        wanted = {self.nodes.canonical(n) for n in produces}
        return sum(n for shard in shards for carried, n in self._node_sets(shard).items() if wanted <= carried)


def run_annotator(cls: type[Annotator], cfg: RunConfig, shards: list[str], registry: AnnotatorRegistry,
                  summary: RunSummary, imported: ImportedNodes | None = None,
                  counter: Any | None = None) -> AnnotatorRow:
    import ray.data

    nodes = registry.nodes
    row = AnnotatorRow(cls.name, ", ".join(cls.produces), "ran")
    available = cls(nodes, cfg.settings.get(cls.name)).availability()
    folder = DatasetDir(cfg.out)
    ready = [s for s in shards if folder.source_tar(s).exists() and read_stats(folder.source_tar(s))]
    if not available.ok:
        row.status, row.why, row.how_to_enable = "skipped", available.reason, available.how_to_enable
        row.already_present = (imported or ImportedNodes(cfg.out, nodes)).count(cls.produces, ready)
        return row
    pending = []
    for shard in _pending_shards(cls, cfg, ready, nodes):
        stale = stale_needs(cls, cfg.out, shard, nodes)
        if stale:  # its input must be redone first; annotate_shard would refuse it too
            summary.shard_errors.append({"stage": cls.name, "shard": shard, "error": "stale input: "
                                         + stale_input_message(cfg.out, shard, stale, str(cfg.input))})
        else:
            pending.append(shard)
    cpus, gpus = _cluster_capacity() if pending else (0.0, 0.0)
    num_cpus = cfg.cpus_per_worker if cfg.cpus_per_worker is not None else cls.num_cpus
    num_gpus = cfg.gpus_per_worker if cfg.gpus_per_worker is not None else cls.num_gpus
    if pending and num_gpus > 0 and gpus < num_gpus:
        row.status, row.why = "skipped", f"needs {num_gpus} GPU per worker; the Ray cluster has {gpus:g}"
        row.how_to_enable = "run on a machine or cluster with a GPU (--address), or lower --gpus-per-worker"
        row.already_present = (imported or ImportedNodes(cfg.out, nodes)).count(cls.produces, ready)
        return row
    if pending:
        fits = min(cpus // num_cpus if num_cpus else len(pending), gpus // num_gpus if num_gpus else len(pending))
        workers = cfg.workers or max(1, min(len(pending), int(fits)))
        samples = sum(read_stats(folder.source_tar(s))["succeeded"] for s in pending)
        progress = StageProgress(_counter(cfg, counter), cls.name, samples, len(pending))
        try:
            for stats in _map_shards(
                pending, AnnotatorWorker, progress,
                fn_constructor_kwargs={"annotator": f"{cls.__module__}:{cls.__qualname__}", "dataset": str(cfg.out),
                                       "batch_size": cfg.batch_size, "max_pixels": cfg.max_pixels,
                                       "settings": cfg.settings.get(cls.name), "reporter": progress.reporter()},
                # Two shards queued per actor: no idle gap between a shard and the next.
                compute=ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=2),
                num_cpus=num_cpus, num_gpus=num_gpus or None,
                # No actor restarts (Ray Data's default is endless restarts and task retries): an actor
                # that crashes on a shard (segfault, OOM kill) would be restarted onto the same shard
                # forever; without restarts the stage fails with the cause (below), the other
                # annotators still run and a rerun resumes at the shards not done. Ray also warns, on
                # every stage, that restarts cannot be honoured for actors whose constructor
                # arguments live in the object store, as Ray Data's do (ray-project/ray#53727).
                # (A keyword of map_batches' deprecated **ray_remote_args: revisit before Ray 2.64.)
                max_restarts=0,
            ):
                if "error" in stats:
                    summary.shard_errors.append({"stage": cls.name, **stats})
        except Exception as err:  # e.g. the model failed to load in the actor: the other annotators still run
            cause = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            summary.shard_errors.append({"stage": cls.name, "shard": "*", "error": f"{type(err).__name__}: {cause}"})
    elif not any(e["stage"] == cls.name for e in summary.shard_errors):
        row.status = "up to date"
    for shard in ready:
        stats = read_stats(folder.node_tar(cls.produces[0], shard))
        if stats is None:
            continue
        row.shards += 1
        row.written += stats["written"]
        row.already_present += stats["already_present"]
        row.failed += stats["failed"]
    if summary.shard_errors and any(e["stage"] == cls.name for e in summary.shard_errors):
        row.status = "failed"
        row.why = "; ".join(e["error"] for e in summary.shard_errors if e["stage"] == cls.name)[:300]
    return row


def run(cfg: RunConfig, registry: AnnotatorRegistry | None = None) -> RunSummary:
    """Plan, write source shards and run the chosen annotators (default: `DEFAULT_ANNOTATORS`) while
    holding the dataset's lock; write `<out>/run.json`; return the summary.

    Raises `DatasetLocked` when another run holds `cfg.out`, `PlanConflict` when the plan would drop
    or re-cut the samples of the dataset there (unless `cfg.overwrite`), and `ClusterUnreachable` when
    `cfg.address` answers nothing, before changing anything."""
    started = time.time()
    check_ray_address(cfg.address)  # seconds, before anything is written
    if registry is None:
        from .registry import DEFAULT_ANNOTATORS as registry
    chosen = registry.ordered(cfg.annotators)
    plan = plan_sources(cfg.input, cfg.samples_per_shard, registry.nodes, cfg.follow_symlinks, cfg.columns)
    cfg.out.mkdir(parents=True, exist_ok=True)
    with dataset_lock(cfg.out, f"python -m annotators run --input {cfg.input} --out {cfg.out}"):
        return _run_locked(cfg, registry, chosen, plan, started)


def _run_locked(cfg: RunConfig, registry: AnnotatorRegistry, chosen: list[type[Annotator]], plan: SourcePlan,
                started: float) -> RunSummary:
    remove_partials(cfg.out)
    summary = RunSummary(str(cfg.out), collisions=[c.to_json() for c in plan.collisions],
                         unmatched_files=plan.unmatched)
    for name in cfg.settings:
        if name not in registry.names():
            raise ValueError(f"settings given for unknown annotator {name!r}; "
                             f"annotators: {', '.join(registry.names())}")
    unavailable = [(c.name, c(registry.nodes, cfg.settings.get(c.name)).availability()) for c in chosen]
    unavailable = [(n, a) for n, a in unavailable if not a.ok]
    if cfg.strict and unavailable:
        raise AnnotatorUnavailable("; ".join(f"{n}: {a.reason} (enable: {a.how_to_enable})" for n, a in unavailable))
    content = ContentIds(cfg.out)
    content.attach(plan)  # shard ids from the input's bytes (cached by path, size and times)
    if not cfg.overwrite:
        check_plan(cfg.out, plan, cfg.samples_per_shard)
    content.save()
    record_plan(cfg.out, plan, cfg.samples_per_shard)
    _drop_stale_shards(cfg.out, plan)
    needs_ray = not _nothing_to_do(cfg, plan, chosen, registry)
    with ray_session(cfg.address, cfg.num_cpus) if needs_ray else nullcontext():
        _quiet_data_context(cfg.progress)
        counter = start_counter() if needs_ray and cfg.progress else None  # one for the run's stages
        write_sources(cfg, plan, summary, counter)
        shards = [s.shard for s in plan.shards]
        imported = ImportedNodes(cfg.out, registry.nodes)
        for cls in chosen:
            row = run_annotator(cls, cfg, shards, registry, summary, imported, counter)
            summary.annotators.append(row)
            if cfg.strict and row.status == "skipped":
                raise AnnotatorUnavailable(f"{row.annotator}: {row.why} (enable: {row.how_to_enable})")
    summary.stale = stale_node_shards(cfg.out, [s.shard for s in plan.shards], str(cfg.input))
    summary.duration_s = round(time.time() - started, 3)
    write_json(DatasetDir(cfg.out).run_record, {"input": str(cfg.input), "kind": plan.kind,
                                                "samples_per_shard": cfg.samples_per_shard, **summary.to_json()})
    return summary


def collect_errors(dataset: Path) -> list[dict]:
    """Every per-sample error of a dataset folder (source and node shards)."""
    errors = []
    folder = DatasetDir(dataset)
    for tar in folder.source_tars():
        errors += [{"stage": SOURCE, "shard": shard_name(tar), **e} for e in read_errors(tar)]
    for tar in folder.node_tars():
        errors += [{"stage": tar.parent.name, "shard": shard_name(tar), **e} for e in read_errors(tar)]
    return errors
