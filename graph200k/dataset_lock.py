"""One writer per dataset folder: a lock file that names its holder.

`python -m annotators run` and `python -m graph200k shards` both rewrite a
dataset folder, and two of them at once remove each other's partial files and
completed shards. Each holds `<dataset>/.graph200k.lock` while it works: the
file is created with O_EXCL (atomic on local filesystems and on NFSv3+) and
holds the holder's pid, host, command and start time, so a refused run can say
who has the folder. The holder refreshes the file's mtime every
`HEARTBEAT_S`; a lock is stale, and taken over with a warning, when its holder
is a dead process on this host, or, on another host (where the pid cannot be
checked), when it has not been refreshed for `STALE_AFTER_S`.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .dataset_dir import LOCK_NAME, DatasetDir
from .nodes import Graph200kError

__all__ = ["LOCK_NAME", "DatasetLocked", "dataset_lock"]

HEARTBEAT_S = 60.0
STALE_AFTER_S = 30 * 60.0  # many missed heartbeats: the holder's node is gone (or its clock is far off)
UNREADABLE_GRACE_S = 60.0  # an empty lock file younger than this may be a holder still writing it

log = logging.getLogger(__name__)


class DatasetLocked(Graph200kError):
    """Another run holds the dataset folder; the message names it and the lock file."""


def _holder_text(holder: dict) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started_at", 0)))
    return f"{holder.get('command', '?')!r} (pid {holder.get('pid')} on {holder.get('host')}, started {started})"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _read(lock: Path) -> tuple[dict | None, float]:
    """(the holder, or None if the file is empty or garbled; the file's mtime)."""
    mtime = lock.stat().st_mtime
    try:
        holder = json.loads(lock.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None, mtime
    return (holder if isinstance(holder, dict) else None), mtime


def _stale_reason(holder: dict | None, mtime: float) -> str | None:
    """Why the lock's holder is gone, or None if it may still be working."""
    age = time.time() - mtime
    if holder is None:
        return f"it is unreadable and {age:.0f} s old" if age > UNREADABLE_GRACE_S else None
    if holder.get("host") == socket.gethostname():
        pid = holder.get("pid")
        return None if isinstance(pid, int) and _alive(pid) else f"pid {pid} is no longer running on this host"
    return f"it was not refreshed for {age / 60:.0f} min" if age > STALE_AFTER_S else None


def _create(lock: Path, holder: dict) -> bool:
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(holder))
        f.flush()
        os.fsync(f.fileno())
    return True


def _take_over(lock: Path, seen: str) -> bool:
    """Move the stale lock aside, checking that it is still the one judged stale; False if it changed."""
    aside = lock.with_name(f"{lock.name}.stale-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(lock, aside)
    except FileNotFoundError:
        return True  # someone else removed it: try to create ours
    try:
        if aside.read_text(encoding="utf-8") != seen:  # a new holder's lock: give it back
            try:
                os.link(aside, lock)
            except FileExistsError:
                pass
            return False
        return True
    finally:
        aside.unlink(missing_ok=True)


@contextmanager
def dataset_lock(dataset: str | os.PathLike, command: str, create: bool = True) -> Iterator[Path]:
    """Hold `dataset`'s lock for the block; raise `DatasetLocked` if a live run holds it.

    `create`: make the folder if it is missing (a writer's output); else a missing folder is an error."""
    folder = Path(dataset)
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    elif not folder.is_dir():
        raise Graph200kError(f"dataset folder {folder} does not exist")
    lock = DatasetDir(folder).lock
    mine = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": round(time.time(), 3),
            "command": command, "token": uuid.uuid4().hex}
    for _ in range(5):
        if _create(lock, mine):
            break
        try:
            seen = lock.read_text(encoding="utf-8")
            holder, mtime = _read(lock)
        except FileNotFoundError:
            continue  # released meanwhile
        why = _stale_reason(holder, mtime)
        if why is None:
            who = _holder_text(holder) if holder else "a run whose lock file is still being written or unreadable"
            raise DatasetLocked(
                f"{folder} is in use by {who}; wait for it to finish. If no such run exists, delete {lock}")
        if _take_over(lock, seen):
            log.warning("taking over the lock of %s from %s: %s", folder,
                        _holder_text(holder) if holder else "an unreadable lock file", why)
    else:
        raise DatasetLocked(f"could not take the lock {lock}: other runs keep taking it; retry")
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(lock, mine["token"], stop), daemon=True,
                            name="dataset-lock-heartbeat")
    beat.start()
    try:
        yield lock
    finally:
        stop.set()
        beat.join()
        _release(lock, mine["token"])


def _heartbeat(lock: Path, token: str, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        try:
            os.utime(lock)
        except OSError as err:
            if err.errno != errno.ENOENT:
                log.warning("cannot refresh the lock %s: %s", lock, err)


def _release(lock: Path, token: str) -> None:
    """Remove the lock only if it is still ours (a takeover after a long stall must not be undone)."""
    try:
        holder, _ = _read(lock)
    except FileNotFoundError:
        return
    if holder and holder.get("token") == token:
        lock.unlink(missing_ok=True)
