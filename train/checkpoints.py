"""Checkpoint folders on disk: written atomically, proved complete by a manifest, chosen safely on resume.

A checkpoint is `<output_dir>/checkpoints/checkpoint-NNNNNNN/`. It is written into a hidden
`.tmp-checkpoint-NNNNNNN/`, every file and folder is fsynced, `manifest.json` (each file's path,
size and sha256, FSDP's per-rank shard files included) is written last, and the folder is renamed
into place. A folder under its final name was complete when renamed, and its manifest tells
whether it still is: `resume=latest` takes the newest checkpoint that verifies and names each
newer one it skipped with the reason. Only `checkpoint-<digits>` folders are ever read; anything
else under `checkpoints/` is never listed, read or deleted. Hashing reads every byte, at every save
and at resume (files in parallel threads): for a rank-256 FLUX LoRA (1.39B parameters) its fp32 file
(5.6 GB) and AdamW state (11.1 GB). The frozen base is never written, under FSDP either
(train/sharded_checkpoint.py; accelerate's `save_state` would add its 24 GB of shards).

The manifest proves integrity, not authorship: whoever can write the folder can rewrite it. What
keeps a crafted checkpoint from running code is that nothing here is unpickled. The trainer's own
state (step counters, LR scheduler, data position) is JSON (`write_state` / `read_state`), the LoRA
is safetensors, and accelerate loads `optimizer.bin` and `random_states_<rank>.pkl` with
`torch.load(weights_only=True)`, as the FSDP route reads its `optimizer_shard_rank<R>.bin`. A folder
holding accelerate's pickled custom states (`custom_checkpoint_*.pkl`, which accelerate loads with
`weights_only=False`) is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any

from .lora import LORA_WEIGHT_NAME

CHECKPOINT_PREFIX = "checkpoint-"
MANIFEST_NAME = "manifest.json"
RUN_INFO_NAME = "trainer.json"  # step, world size, config (main process)
_CHECKPOINT_NAME = re.compile(rf"{CHECKPOINT_PREFIX}(\d+)")
_PICKLED_CUSTOM_STATE = re.compile(r"custom_checkpoint_\d+\.pkl")
MANIFEST_FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint folder cannot be resumed from; the message names the folder, the file and why."""


def checkpoint_name(step: int) -> str:
    return f"{CHECKPOINT_PREFIX}{step:07d}"


def trainer_state_name(rank: int) -> str:
    """The rank's JSON state: step counters, LR scheduler and data position."""
    return f"trainer_state_rank{rank}.json"


def checkpoint_step(path: Path) -> int | None:
    """The step of a `checkpoint-<digits>` name, None for any other name."""
    match = _CHECKPOINT_NAME.fullmatch(path.name)
    return int(match.group(1)) if match else None


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """`checkpoint-<digits>` folders under `output_dir/checkpoints`, oldest first, intact or not.
    Temp folders (`.tmp-...`), other names and plain files are not checkpoints and are left out."""
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if checkpoint_step(p) is not None and p.is_dir() and not p.is_symlink()]
    return sorted(found, key=checkpoint_step)


# ---------------------------------------------------------------- writing


def _fsync(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """Flush every file of `folder`, then every folder bottom-up, so a rename after it never points at
    data still in the page cache (a power loss after the rename would otherwise leave empty files)."""
    for parent, _, files in os.walk(folder, topdown=False):
        for name in files:
            path = Path(parent) / name
            if not path.is_symlink():
                _fsync(path)
        _fsync(Path(parent), directory=True)


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _sha256_all(folder: Path, names: list[str]) -> dict[str, str]:
    """Hashes of many files at once: hashlib releases the GIL, and FSDP writes one shard file per rank."""
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return dict(zip(names, pool.map(lambda name: _sha256(folder / name), names)))


def _files(folder: Path) -> list[str]:
    """Every regular file below `folder` (FSDP writes shard folders), as sorted relative POSIX paths."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and not p.is_symlink() and p.name != MANIFEST_NAME)


def write_manifest(folder: Path, step: int) -> Path:
    """`manifest.json` listing every file's size and sha256; written (and fsynced) last."""
    names = _files(folder)
    digests = _sha256_all(folder, names)
    files = {name: {"size": (folder / name).stat().st_size, "sha256": digests[name]} for name in names}
    path = folder / MANIFEST_NAME
    path.write_text(json.dumps({"format": MANIFEST_FORMAT, "step": step, "files": files}, indent=1))
    _fsync(path)
    _fsync(folder, directory=True)
    return path


def commit_checkpoint(tmp: Path, final: Path, step: int) -> Path:
    """Manifest, then one rename of the complete `tmp` folder to `final` (a folder of that name is set
    aside first and removed after); every rank must have flushed its files (`fsync_tree`) before."""
    fsync_tree(tmp)
    write_manifest(tmp, step)
    replaced = final.with_name(f".replaced-{final.name}")
    if final.exists():
        shutil.rmtree(replaced, ignore_errors=True)
        os.replace(final, replaced)
    os.replace(tmp, final)
    _fsync(final.parent, directory=True)
    shutil.rmtree(replaced, ignore_errors=True)
    return final


def prune_checkpoints(output_dir: str | Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` checkpoints this trainer wrote (those with a manifest); folders
    without one (foreign, or from an older version) are never deleted. Returns the deleted ones."""
    ours = [p for p in list_checkpoints(output_dir) if (p / MANIFEST_NAME).is_file()]
    old = ours[:-keep] if keep > 0 else ours
    for path in old:
        shutil.rmtree(path, ignore_errors=True)
    return old


# ---------------------------------------------------------------- the trainer's state as JSON


def _check_json(value: Any, where: str) -> None:
    """Only what JSON gives back as it was: str keys, and str/int/float/bool/None/lists inside."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: key {key!r} is a {type(key).__name__}, JSON keys are strings")
            _check_json(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_json(item, f"{where}[{i}]")
    elif not isinstance(value, (str, int, float, bool)) and value is not None:
        raise TypeError(f"{where}: a {type(value).__name__} cannot be stored as JSON")


def write_state(path: Path, state: dict[str, Any]) -> None:
    """Write a state dict as JSON (never pickle: a checkpoint must not be able to run code when read)."""
    try:
        _check_json(state, path.name)
    except TypeError as err:
        raise TypeError(f"cannot checkpoint {err}; a state_dict() must hold only JSON values "
                        "(str keys; str, int, float, bool, None, lists, dicts)") from None
    path.write_text(json.dumps(state, indent=1))


def read_state(path: Path) -> dict[str, Any]:
    try:
        state = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} is not JSON ({err}): not a checkpoint this trainer wrote") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state")
    return state


# ---------------------------------------------------------------- verifying and choosing


def checkpoint_problem(folder: Path) -> str | None:
    """Why `folder` cannot be resumed from, or None when every file its manifest lists is there, whole."""
    if not folder.is_dir():
        return "not a folder"
    pickled = sorted(p.name for p in folder.iterdir() if _PICKLED_CUSTOM_STATE.fullmatch(p.name))
    if pickled:
        return (f"{pickled[0]} is a pickle, which can run code when loaded: refused (this trainer writes "
                "no pickled state; was the folder written by an older version, or crafted?)")
    path = folder / MANIFEST_NAME
    if not path.is_file():
        return (f"no {MANIFEST_NAME}: an unfinished or foreign folder, or written by a version "
                "before checkpoints had manifests")
    try:
        manifest = json.loads(path.read_text())
        files = {str(name): (int(entry["size"]), str(entry["sha256"])) for name, entry in manifest["files"].items()}
    except (UnicodeDecodeError, ValueError, TypeError, KeyError, AttributeError) as err:
        return f"{MANIFEST_NAME} is unreadable ({type(err).__name__}: {err})"
    if manifest.get("format") != MANIFEST_FORMAT:
        return f"{MANIFEST_NAME} has format {manifest.get('format')!r}, this trainer reads {MANIFEST_FORMAT}"
    for name in files:
        parts = PurePosixPath(name).parts
        if PurePosixPath(name).is_absolute() or ".." in parts or not parts:
            return f"{MANIFEST_NAME} names {name!r}, outside the folder"
    for name in (LORA_WEIGHT_NAME, RUN_INFO_NAME, trainer_state_name(0)):
        if name not in files:
            return f"{MANIFEST_NAME} does not list {name}"
    for name, (size, _) in files.items():  # sizes first: a truncated file is found without hashing
        file = folder / name
        if file.is_symlink() or not file.is_file():
            return f"{name} is missing (or a link)"
        actual = file.stat().st_size
        if actual < size:
            return f"{name} is truncated ({actual} of {size} bytes)"
        if actual != size:
            return f"{name} has {actual} bytes, {MANIFEST_NAME} says {size}"
    digests = _sha256_all(folder, list(files))
    for name, (_, digest) in files.items():
        if digests[name] != digest:
            return f"{name} does not match its sha256 in {MANIFEST_NAME} (corrupt)"
    return None


def check_resume_target(output_dir: str | Path, which: str | None) -> None:
    """`CheckpointError` when `checkpoint.resume` is neither 'latest' nor an existing folder (a checkpoint's
    name instead of its path, a typo): the message lists the checkpoints of `output_dir` and the path form.
    Cheap (no hashing), so the trainer calls it before loading the model; `choose_checkpoint` verifies."""
    if not which or which == "latest" or Path(which).is_dir():
        return
    found = list_checkpoints(output_dir)
    root = Path(output_dir) / "checkpoints"
    named = [p for p in found if p.name == Path(which).name]
    if named:
        fix = f"did you mean checkpoint.resume={named[0]}? (a checkpoint's path, not its name)"
    elif found:
        shown = ", ".join(p.name for p in found[-5:]) + (f" and {len(found) - 5} older" if len(found) > 5 else "")
        fix = f"{root} holds {shown}: give one as checkpoint.resume={found[-1]}, or checkpoint.resume=latest"
    else:
        fix = (f"{root} holds no checkpoint; give a checkpoint folder's path "
               f"(checkpoint.resume=<output_dir>/checkpoints/checkpoint-NNNNNNN) or checkpoint.resume=latest")
    raise CheckpointError(f"config key 'checkpoint.resume': {which} is not a folder; {fix}")


def choose_checkpoint(output_dir: str | Path, which: str) -> tuple[Path | None, list[str]]:
    """The folder `checkpoint.resume` names ('latest' or a path), verified, and a line per checkpoint
    skipped on the way. 'latest' with no checkpoint at all gives None (start fresh); with checkpoints
    of which none verifies it raises, since starting fresh would later prune them."""
    if which != "latest":
        check_resume_target(output_dir, which)
        problem = checkpoint_problem(Path(which))
        if problem:
            raise CheckpointError(f"config key 'checkpoint.resume': {which}: {problem}")
        return Path(which), []
    found = list_checkpoints(output_dir)
    skipped = []
    for path in reversed(found):
        problem = checkpoint_problem(path)
        if problem is None:
            return path, skipped
        skipped.append(f"skipped {path}: {problem}")
    if found:
        raise CheckpointError(
            f"checkpoint.resume=latest: none of the {len(found)} checkpoints in {Path(output_dir) / 'checkpoints'} "
            "is intact:\n  " + "\n  ".join(skipped) + "\nmove them out of the way to start fresh"
        )
    return None, skipped
