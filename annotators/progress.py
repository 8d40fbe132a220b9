"""Per-sample progress of a run's stages: samples done of the stage's total, images/s and ETA.

A stage's unit of work is a whole shard (`runner`), so Ray Data's own progress counts shards,
and a generative annotator over one 1000-sample shard would show no movement for hours. Instead
the workers count the samples they finish (`SampleReporter`, handed to `annotate_shard` and
`write_source_shard` as `on_sample`) into one `SampleCounter` actor per run, and the driver polls
it into a tqdm bar per stage (`StageProgress`; unit "img", so tqdm shows images/s and the ETA).

A worker sends its count at most every `REPORT_EVERY_S` seconds while a shard runs, and waits
for the last send of a shard before returning it: when every shard of a stage has come back,
the counter holds every sample of the stage.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from tqdm import tqdm

REPORT_EVERY_S = 0.5
POLL_EVERY_S = 0.25
LOG_EVERY_S = 30.0  # bar refreshes when stderr is not a terminal


class SampleCounter:
    """A Ray actor (`start_counter`): samples finished so far, per stage."""

    def __init__(self):
        self.done: dict[str, int] = {}

    def add(self, stage: str, n: int) -> None:
        self.done[stage] = self.done.get(stage, 0) + n

    def count(self, stage: str) -> int:
        return self.done.get(stage, 0)


def start_counter() -> Any:
    """A `SampleCounter` actor in the current Ray session (it takes no CPU slot)."""
    import ray

    return ray.remote(num_cpus=0)(SampleCounter).remote()


class SampleReporter:
    """Worker side: `reporter(n)` after n samples are finished (written, already present or failed);
    `reporter.flush()` at the end of a shard, which waits until the counter has them."""

    def __init__(self, counter: Any, stage: str):
        self.counter, self.stage = counter, stage
        self.pending = 0
        self.sent_at = 0.0

    def __call__(self, n: int = 1) -> None:
        self.pending += n
        if time.monotonic() - self.sent_at >= REPORT_EVERY_S:
            self.counter.add.remote(self.stage, self.pending)
            self.pending, self.sent_at = 0, time.monotonic()

    def flush(self) -> None:
        import ray

        ray.get(self.counter.add.remote(self.stage, self.pending))
        self.pending, self.sent_at = 0, time.monotonic()

    def __getstate__(self) -> dict:  # a fresh send clock in each worker
        return {"counter": self.counter, "stage": self.stage, "pending": 0, "sent_at": 0.0}


class StageProgress:
    """Driver side, one stage: a bar of `total` samples fed from the counter by a polling thread,
    with the shards done as its postfix. Without a counter (`--no-progress`) it does nothing.

    `done` is the counter's last reading, final once the block has exited."""

    def __init__(self, counter: Any | None, stage: str, total: int, shards: int):
        self.counter, self.stage, self.total, self.shards = counter, stage, total, shards
        self.shards_done = 0
        self.done = 0
        self._stop = threading.Event()
        self._bar: tqdm | None = None
        self._thread: threading.Thread | None = None

    def reporter(self) -> SampleReporter | None:
        return None if self.counter is None else SampleReporter(self.counter, self.stage)

    def shard_done(self) -> None:
        self.shards_done += 1

    def __enter__(self) -> StageProgress:
        if self.counter is not None:
            # A terminal redraws the bar in place; a log file gets a line per refresh: one every LOG_EVERY_S.
            every = POLL_EVERY_S if sys.stderr.isatty() else LOG_EVERY_S
            self._bar = tqdm(total=self.total, desc=self.stage, unit="img", file=sys.stderr, dynamic_ncols=True,
                             mininterval=every)
            self._thread = threading.Thread(target=self._poll_until_stopped, name=f"progress-{self.stage}",
                                            daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._poll()
        self._bar.close()

    def _poll_until_stopped(self) -> None:
        while not self._stop.wait(POLL_EVERY_S):
            self._poll()

    def _poll(self) -> None:
        import ray

        try:
            self.done = ray.get(self.counter.count.remote(self.stage), timeout=10)
        except Exception:  # the session is going away: keep the last reading
            return
        self._bar.set_postfix_str(f"{self.shards_done}/{self.shards} shards", refresh=False)
        self._bar.update(self.done - self._bar.n)
