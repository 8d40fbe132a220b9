"""One training per `train.output_dir` (train/output_lock.py): a second run is refused in one line naming the
holder, on every rank of a multi-process launch; kill -9 of the holder frees the folder; a finished run leaves
it free and the same command run again resumes."""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.test_user_errors import one_line
from train.output_lock import LOCK_NAME

SMOKE = str(REPO / "configs" / "smoke.yaml")
HELD_BY = "python -m train --config held.yaml"
HOLDER = f"""
import os, sys, time
from train.output_lock import lock_output_dir
lock_output_dir(sys.argv[1], command={HELD_BY!r})
ready, tell = os.pipe()
child = os.fork() if sys.argv[2:] == ["fork"] else None
if child == 0:  # past the fork handlers: say so
    os.write(tell, b"x")
    time.sleep(120)
    os._exit(0)
if child:
    os.read(ready, 1)
print(child or "", flush=True)
time.sleep(120)
"""
REFUSED = (r"error: train\.output_dir {out} is in use by pid {pid} on {host} since \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d "
           r"\(command {command}\); wait for it, stop it, or give another train\.output_dir")


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def refused(out: Path, pid: int) -> str:
    return REFUSED.format(out=re.escape(str(out)), pid=pid, host=re.escape(socket.gethostname()),
                          command=re.escape(HELD_BY))


class Holder:
    """Another process holding `out`'s lock (optionally with a forked child, as a DataLoader worker is)."""

    def __init__(self, out: Path, fork: bool = False):
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), *(["fork"] if fork else [])],
                                     cwd=REPO, env=env(), stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        assert self.proc.poll() is None, "the holder did not start"
        self.child = int(line) if line else None
        self.pid = self.proc.pid

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def close(self) -> None:
        for pid in (self.pid, self.child):
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.proc.wait(timeout=30)


@pytest.fixture
def holder():
    holders: list[Holder] = []

    def start(out: Path, fork: bool = False) -> Holder:
        holders.append(Holder(out, fork))
        return holders[-1]

    yield start
    for h in holders:
        h.close()


def lock_is_free(out: Path) -> bool:
    """Whether another process could take the lock now (a new open file: flock conflicts even in this process)."""
    fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def smoke_args(pretrained, shards, out) -> list[str]:
    return ["--config", SMOKE, f"model.pretrained={pretrained}", f"data.shards={shards}", f"train.output_dir={out}",
            "data.resolution=32", "model.max_sequence_length=64", "train.max_steps=1", "validation.every=0",
            "log.report_to=none", "checkpoint.resume=latest"]


@pytest.fixture
def no_weights(tmp_path) -> Path:
    """A `model.pretrained` that passes the early check (a model_index.json) but cannot load: a run that
    says anything but its lock error has loaded the model."""
    folder = tmp_path / "pipeline"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "FluxFillPipeline"}))
    return folder


def test_a_second_run_is_refused_in_one_line_naming_the_holder_before_the_model_loads(
        tmp_path, sampler_shards, no_weights, holder):
    out = tmp_path / "run"
    held = holder(out)
    proc = subprocess.run([sys.executable, "-m", "train", *smoke_args(no_weights, sampler_shards, out)],
                          cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert re.fullmatch(refused(out, held.pid), one_line(proc.stderr)), proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing written
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == held.pid  # the holder's file is left alone


def _rank(rank: int, port: int, argv: list[str], report: str) -> None:
    """One rank of a 2-process CPU launch (as `ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 -m train`)."""
    import torch.distributed as dist
    from accelerate.state import AcceleratorState

    from train.__main__ import main

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE="2", LOCAL_WORLD_SIZE="2", ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1")
    AcceleratorState._reset_state(reset_partial_state=True)  # a forked child starts from the parent's state
    err = open(f"{report}.{rank}.err", "w")
    sys.stderr = err
    try:
        code = main(argv)
    finally:
        err.close()
        if dist.is_initialized():
            dist.destroy_process_group()
    Path(f"{report}.{rank}.rc").write_text(str(code))


@pytest.mark.usefixtures("fresh_accelerate_state")
def test_a_second_multi_process_launch_is_refused_on_every_rank_without_a_hang(
        tmp_path, sampler_shards, no_weights, holder):
    import torch.multiprocessing as mp

    from tests.gloo_ranks import free_port

    out = tmp_path / "run"
    held = holder(out)
    report = str(tmp_path / "rank")
    # fork: the ranks inherit the imported libraries; timedout ranks are killed and fail the test
    ranks = mp.start_processes(_rank, args=(free_port(), smoke_args(no_weights, sampler_shards, out), report),
                               nprocs=2, start_method="fork", join=False)
    deadline = time.monotonic() + 180
    while not ranks.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ranks.processes:
                p.kill()
            pytest.fail("a rank hung instead of refusing")
    for rank in (0, 1):
        assert Path(f"{report}.{rank}.rc").read_text() == "2"
        text = Path(f"{report}.{rank}.err").read_text()
        assert re.search(refused(out, held.pid), text) and "Traceback" not in text, text


@pytest.mark.usefixtures("one_torch_thread", "fresh_accelerate_state")
def test_kill_9_of_the_holder_frees_the_folder_and_a_finished_run_releases_it(
        tmp_path, sampler_shards, tiny_flux_fill, holder, capsys):
    from accelerate.state import AcceleratorState

    from train.__main__ import main

    out = tmp_path / "run"
    held = holder(out, fork=True)  # its forked child lives on, as DataLoader workers do for a while
    assert not lock_is_free(out)
    held.kill9()
    assert lock_is_free(out)  # at once, while the child still runs
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == held.pid  # a stale file does not block
    args = smoke_args(tiny_flux_fill, sampler_shards, out)
    assert main(args) == 0
    assert "done at step 1" in capsys.readouterr().out
    assert not (out / LOCK_NAME).exists() and lock_is_free(out)  # released after a normal run
    AcceleratorState._reset_state(reset_partial_state=True)
    assert main(args) == 0  # the same command again
    printed = capsys.readouterr().out
    assert f"resumed from {out / 'checkpoints' / 'checkpoint-0000001'} at step 1" in printed
    assert "done at step 1" in printed and lock_is_free(out)


def test_trainers_of_one_process_hand_the_lock_on(tmp_path):
    """A Trainer dropped without train() (a test, a notebook cell) must not lock its own process out."""
    from train.output_lock import lock_output_dir

    first = lock_output_dir(tmp_path, command="first")
    second = lock_output_dir(tmp_path, command="second")
    assert json.loads((tmp_path / LOCK_NAME).read_text())["command"] == "second"
    first.release()  # handed on: a no-op
    assert not lock_is_free(tmp_path)
    second.release()
    assert lock_is_free(tmp_path)
