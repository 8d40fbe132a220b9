"""One training per `train.output_dir`: an OS lock on `<output_dir>/.train.lock`.

Two trainings writing into one folder save and prune each other's checkpoints. The trainer's
main process takes `fcntl.flock(LOCK_EX | LOCK_NB)` on the lock file once the configuration and
data checks pass, before the model loads and anything is written, and holds it until `train()`
returns. The kernel drops a flock when its holder dies, kill -9 included, so a lock file left
behind by a killed run never blocks the next one: only a live holder does (there is no staleness to judge, unlike `graph200k/dataset_lock.py`, whose O_EXCL
file outlives its holder). The file holds its holder's pid, host, start time and command so that
a refused run can name it. Linux's NFS client turns flock into a whole-file lock the server
arbitrates, so runs on different nodes of a shared folder exclude each other too; a file system
that refuses flock (Lustre mounted without `flock`) is warned about and trains unlocked.

A released lock's file is removed while still locked; a taker that opened the old file before
the removal sees that its file is no longer the one at the path and opens again. Trainers in
one process (tests, notebooks) hand the process's lock on to each other: the lock is between
runs, and a Trainer dropped without `train()` must not lock its own process out.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import shlex
import socket
import sys
import time
from pathlib import Path

from .config import ConfigError

__all__ = ["LOCK_NAME", "OutputDirInUse", "OutputDirLock", "lock_for_run", "lock_output_dir"]

LOCK_NAME = ".train.lock"

log = logging.getLogger(__name__)

_held: dict[Path, "OutputDirLock"] = {}  # this process's locks, by resolved output folder


class OutputDirInUse(ConfigError):
    """Another live run holds the output folder; the message names it and what to do."""


def _holder_text(holder: dict | None, lock: Path) -> str:
    if not holder:
        return f"a run that is still writing {lock}"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started_at", 0)))
    return (f"pid {holder.get('pid')} on {holder.get('host')} since {since} "
            f"(command {holder.get('command', '?')})")


def _read_holder(fd: int) -> dict | None:
    try:
        holder = json.loads(os.pread(fd, 64 * 1024, 0).decode("utf-8"))
    except (ValueError, UnicodeDecodeError, OSError):
        return None
    return holder if isinstance(holder, dict) else None


def _same_file(fd: int, path: Path) -> bool:
    try:
        at_path = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (at_path.st_dev, at_path.st_ino)


class OutputDirLock:
    """This process's hold on an output folder; `release()` ends it (also when the process dies)."""

    def __init__(self, folder: Path, fd: int | None):
        self.folder = folder
        self.key = folder.resolve()  # resolved once: a later chdir must not lose the lock
        self.path = folder / LOCK_NAME
        self.fd = fd  # None: the file system refused flock; nothing is held

    def _write_holder(self, command: str) -> None:
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": round(time.time(), 3),
                  "command": command}
        data = json.dumps(holder).encode("utf-8")
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)
        os.fsync(self.fd)

    def release(self) -> None:
        """Remove the lock file and unlock; a no-op once released or handed on to a newer Trainer."""
        if _held.get(self.key) is not self:
            return
        del _held[self.key]
        if self.fd is None:
            return
        try:
            if _same_file(self.fd, self.path):
                self.path.unlink()
        except OSError as err:  # the folder was removed or made read-only meanwhile: the unlock still frees it
            log.warning("cannot remove the lock file %s: %s", self.path, err)
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None


def _forget_in_child() -> None:
    """A forked child (a DataLoader worker) drops its copies of the lock: a kill -9 of the run then
    frees the folder at once, not when the last worker notices its parent is gone."""
    for lock in _held.values():
        if lock.fd is not None:
            os.close(lock.fd)
            lock.fd = None
    _held.clear()


os.register_at_fork(after_in_child=_forget_in_child)


def _command() -> str:
    return shlex.join(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])


def lock_output_dir(output_dir: str | os.PathLike, command: str | None = None) -> OutputDirLock:
    """Make `output_dir` and lock it for this process; `OutputDirInUse` naming the holder if another
    live process holds it, `ConfigError` if the folder cannot be made. `command` is recorded for
    that message (default: this process's command line)."""
    folder = Path(output_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"config key 'train.output_dir': cannot create {folder}: {err.strerror}; "
                          f"give a folder this user can write") from None
    command = command or _command()
    key = folder.resolve()
    previous = _held.get(key)
    if previous is not None:  # an earlier Trainer of this process: the lock passes on, never lapses
        lock = OutputDirLock(folder, previous.fd)
        _held[key] = lock
        if lock.fd is not None:
            lock._write_holder(command)
        return lock
    path = folder / LOCK_NAME
    for _ in range(10):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as err:
            raise ConfigError(f"config key 'train.output_dir': cannot create the lock file {path}: "
                              f"{err.strerror}; give a folder this user can write") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise OutputDirInUse(f"train.output_dir {folder} is in use by {_holder_text(holder, path)}; "
                                 f"wait for it, stop it, or give another train.output_dir") from None
        except OSError as err:
            if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                os.close(fd)
                raise
            os.close(fd)
            log.warning("the file system of %s does not support flock (%s): this run is not protected "
                        "against another run on the same train.output_dir", folder, err.strerror)
            lock = OutputDirLock(folder, None)
            _held[key] = lock
            return lock
        if not _same_file(fd, path):  # locked a file its holder removed on release: open the new one
            os.close(fd)
            continue
        lock = OutputDirLock(folder, fd)
        lock._write_holder(command)
        _held[key] = lock
        return lock
    raise OutputDirInUse(f"train.output_dir {folder}: could not take {path}, other runs keep taking and "
                         f"releasing it; wait for them, or give another train.output_dir")


def lock_for_run(accelerator, output_dir: str | os.PathLike) -> OutputDirLock | None:
    """The main process locks `output_dir`; every rank gets its answer (one broadcast, which every
    rank reaches), so a second launch of a multi-process run stops on every rank and none is left
    waiting at a barrier. Returns the lock on the main process, None on the others."""
    from accelerate.utils import broadcast_object_list

    lock, answer = None, [None]
    if accelerator.is_main_process:
        try:
            lock = lock_output_dir(output_dir)
        except Exception as err:  # every failure is broadcast: the other ranks must not wait for it
            answer = [(type(err).__name__, str(err))]
            broadcast_object_list(answer)
            raise
    kind, message = broadcast_object_list(answer)[0] or (None, None)
    if kind is None:
        return lock
    if kind == OutputDirInUse.__name__:
        raise OutputDirInUse(message)
    if kind == ConfigError.__name__:
        raise ConfigError(message)
    raise RuntimeError(f"the main process could not lock train.output_dir {output_dir}: {kind}: {message}")
