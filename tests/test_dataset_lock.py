"""One writer per dataset folder: `annotators run` and `graph200k shards` refuse a folder another run holds,
name the holder, and take over a lock whose holder is gone (no Ray needed)."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from graph200k.dataset_lock import LOCK_NAME, DatasetLocked, dataset_lock

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"

HOLD = """
import sys, time
from pathlib import Path
from graph200k.dataset_lock import dataset_lock
with dataset_lock(Path(sys.argv[1]), "the test's holder"):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def held(tmp_path):
    """A dataset folder whose lock another live process holds; yields (folder, that process)."""
    folder = tmp_path / "ds"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield folder, proc
    finally:
        proc.kill()
        proc.wait()


def _write_lock(folder: Path, **holder) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_NAME
    lock.write_text(json.dumps({"pid": 1, "host": socket.gethostname(), "started_at": time.time(),
                                "command": "an earlier run", "token": "x", **holder}))
    return lock


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_second_writer_is_refused_with_the_holder_named(held):
    folder, proc = held
    with pytest.raises(DatasetLocked) as refused:
        with dataset_lock(folder, "second"):
            pytest.fail("entered a held lock")
    message = str(refused.value)
    assert f"pid {proc.pid}" in message and socket.gethostname() in message and "the test's holder" in message
    assert str(folder / LOCK_NAME) in message  # where to look, and what to delete if it is wrong


def test_the_lock_is_released_on_exit_and_on_error(tmp_path):
    folder = tmp_path / "ds"
    with dataset_lock(folder, "first"):
        holder = json.loads((folder / LOCK_NAME).read_text())
        assert (holder["pid"], holder["host"], holder["command"]) == (os.getpid(), socket.gethostname(), "first")
        assert holder["started_at"] <= time.time()
    assert not (folder / LOCK_NAME).exists()
    with pytest.raises(RuntimeError, match="boom"):
        with dataset_lock(folder, "second"):
            raise RuntimeError("boom")
    assert not (folder / LOCK_NAME).exists()
    with dataset_lock(folder, "third"):
        pass


def test_a_lock_left_by_a_dead_process_on_this_host_is_taken_over(tmp_path, caplog):
    folder = tmp_path / "ds"
    pid = _dead_pid()
    _write_lock(folder, pid=pid)
    with caplog.at_level(logging.WARNING, logger="graph200k.dataset_lock"):
        with dataset_lock(folder, "after a kill"):
            assert json.loads((folder / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert f"pid {pid}" in caplog.text and "no longer running" in caplog.text
    assert not list(folder.glob(f"{LOCK_NAME}*"))  # nothing left behind


def test_another_hosts_lock_is_respected_until_it_stops_beating(tmp_path, caplog):
    folder = tmp_path / "ds"
    lock = _write_lock(folder, host="some-other-node", pid=os.getpid())
    with pytest.raises(DatasetLocked, match="some-other-node"):
        with dataset_lock(folder, "second"):
            pass
    old = time.time() - 3 * 3600
    os.utime(lock, (old, old))  # its holder stopped refreshing it hours ago (a crashed node)
    with caplog.at_level(logging.WARNING, logger="graph200k.dataset_lock"):
        with dataset_lock(folder, "second"):
            pass
    assert "some-other-node" in caplog.text and "not refreshed" in caplog.text


def test_an_unreadable_lock_file_is_refused_while_fresh(tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / LOCK_NAME).write_text("")  # a holder killed between creating the file and writing it, or just now
    with pytest.raises(DatasetLocked, match="unreadable"):
        with dataset_lock(folder, "second"):
            pass


def test_annotators_run_refuses_a_held_dataset_before_any_work(held, capsys):
    from annotators.cli import main

    folder, proc = held
    assert main(["run", "--input", str(SAMPLES), "--out", str(folder), "--annotators", "canny", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"pid {proc.pid}" in err and "the test's holder" in err
    assert not (folder / "source").exists()


def test_packing_refuses_a_held_dataset(held, capsys):
    from graph200k.cli import main

    folder, proc = held
    (folder / "source").mkdir()
    assert main(["shards", "--dataset", str(folder), "--no-progress"]) == 2
    assert f"pid {proc.pid}" in capsys.readouterr().err
    assert not (folder / "shards").exists()
