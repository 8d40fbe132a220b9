"""The Ray actor of an annotator's pool: builds the annotator, loads its model once, annotates whole shards.

Kept apart from `runner` on purpose: an actor process imports this module
(and whatever the annotator's own module imports) before it can take work,
so it pulls in only what annotating a shard needs, not the driver's
planning, progress bars and registry. Every import here is paid once per
actor, on the critical path of every annotator run.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from graph200k.catalog import DEFAULT_NODES

from .annotate import annotate_shard


# glibc's mallopt parameters (malloc.h) and the values the actors use.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 32 * 1024**2  # glibc's own ceiling for its dynamic threshold
TRIM_THRESHOLD_BYTES = 64 * 1024**2


def keep_freed_memory() -> bool:
    """Let glibc reuse freed image-sized buffers instead of handing them back to the kernel.

    By default glibc serves allocations above its mmap threshold (128 KiB at
    first) with fresh mmaps and trims the heap as soon as the free top exceeds
    twice that, so a worker that decodes, edge-detects and PNG-encodes one
    512x512 image after another faults in about 1,000 new pages per image:
    about a quarter of canny's time per image (6.4 ms instead of 4.8 on a
    2-core VM). An actor handles thousands of same-sized images, so it keeps
    up to `TRIM_THRESHOLD_BYTES` of freed memory for reuse instead; its peak
    memory is unchanged. Returns False where the C library is not glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))


class AnnotatorWorker:
    """A Ray actor: builds the annotator and loads its model once, then annotates whole shards."""

    def __init__(self, annotator: str, dataset: str, batch_size: int | None, max_pixels: int,
                 settings: dict | None = None, reporter: Any = None):
        import cv2
        import ray

        # Ray gives the actor `num_cpus` cores; OpenCV would otherwise start one thread per
        # core of the machine in every actor, and the actors of one node would fight over them.
        cv2.setNumThreads(max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))))
        keep_freed_memory()
        module, _, qualname = annotator.partition(":")
        annotator_cls = getattr(importlib.import_module(module), qualname)
        self.annotator = annotator_cls(DEFAULT_NODES, settings)
        if batch_size:
            self.annotator.batch_size = batch_size
        self.annotator.load()
        self.dataset = Path(dataset)
        self.max_pixels = max_pixels
        self.reporter = reporter  # annotators.progress.SampleReporter: samples done, for the driver's bar
        self.ready_at = time.time()

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        out = []
        for shard in batch["job"]:
            try:
                out.append(json.dumps(annotate_shard(self.annotator, self.dataset, str(shard), self.max_pixels,
                                                       self.ready_at, on_sample=self.reporter)))
            except Exception as err:
                out.append(json.dumps({"shard": str(shard), "error": f"{type(err).__name__}: {err}"}))
            if self.reporter is not None:
                self.reporter.flush()
        return {"stats": out}
