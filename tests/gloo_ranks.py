"""One rank of a 2-process CPU run (gloo), as `torchrun` + accelerate would start it: the FSDP tests use it
one level below accelerate's launcher, which refuses FSDP on CPU."""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from datetime import timedelta
from typing import Iterator

import torch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def gloo_rank(rank: int, world: int, port: int, env: dict[str, str] | None = None) -> Iterator[None]:
    """Inside: rank `rank` of `world` joined over gloo (torchrun's variables set, one torch thread); on
    exit the process group is gone and accelerate's state reset. A collective that waits 120 s fails."""
    import torch.distributed as dist
    from accelerate import PartialState

    os.environ.update(env or {}, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    PartialState._reset_state()  # a forked child starts from the parent's (single-process) state
    PartialState(cpu=True, timeout=timedelta(seconds=120))  # gloo, as accelerate sets up a CPU run; no hang
    try:
        yield
    finally:
        dist.destroy_process_group()
        PartialState._reset_state()
