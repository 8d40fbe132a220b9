"""Checkpoints under FSDP that hold what training changes and nothing of the frozen base.

`Accelerator.save_state` writes every prepared FSDP model with `save_fsdp_model` (a
`torch.distributed.checkpoint` folder of the whole state dict, the frozen bf16 base included: ~24 GB
for FLUX.1-Fill-dev) before any save hook runs, and `load_state` reads it back. Under FSDP the
trainer calls these two functions instead; one process and DDP keep `save_state` / `load_state`.

What a sharded checkpoint holds, beside the trainer's JSON state (train/checkpoints.py):
- `pytorch_lora_weights.safetensors`: the LoRA, gathered whole onto the main process (LoRA only),
  the same file as in every checkpoint; each rank cuts its shard back out of it on resume.
- `optimizer_shard_rank<R>.bin`: rank R's AdamW state, keyed by the LoRA parameters' names
  (`get_optimizer_state_dict`), as the local pieces of its DTensors (`torch.save`, read with
  `weights_only=True`). On resume every tensor's shape, dtype and name must equal what the freshly
  sharded optimizer expects; they are put back into the same DTensor placements. No resharding:
  a resume has the same number of processes anyway (the data position needs it).
- `random_states_<R>.pkl` (and `scaler.pt` with fp16): accelerate's own writer and reader
  (`save_accelerator_state` / `load_accelerator_state`, `weights_only=True`), as `save_state`.

Nothing is read with `pickle.load`: unlike `torch.distributed.checkpoint`, whose `.metadata` is, a
crafted file fails to load instead of running code. Reading errors are gathered from every rank, so
all ranks raise the same `CheckpointError` instead of some waiting forever in a collective.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from accelerate.checkpointing import load_accelerator_state, save_accelerator_state
from accelerate.optimizer import AcceleratedOptimizer
from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict
from torch.distributed.tensor import DTensor

from .checkpoints import CheckpointError
from .lora import LORA_WEIGHT_NAME, load_lora_into, lora_metadata, lora_state_dict, save_lora

SHARD_FORMAT = 1
UNSHARDED_OPTIMIZER_NAME = "optimizer.bin"  # accelerate's, one process / DDP
ACCELERATE_FSDP_FOLDERS = ("pytorch_model_fsdp_0", "optimizer_0")  # accelerate's own FSDP layout


def optimizer_shard_name(rank: int) -> str:
    return f"optimizer_shard_rank{rank}.bin"


def checkpoint_route_problem(folder: Path, sharded: bool) -> str | None:
    """Why `folder` cannot be loaded by this route (sharded: FSDP, else one process / DDP), or None."""
    has_shards = (folder / optimizer_shard_name(0)).is_file()
    has_unsharded = (folder / UNSHARDED_OPTIMIZER_NAME).is_file()
    accelerate_fsdp = any((folder / name).is_dir() for name in ACCELERATE_FSDP_FOLDERS)
    if sharded and not has_shards:
        if has_unsharded:
            return (f"it was written without FSDP ({UNSHARDED_OPTIMIZER_NAME}, no {optimizer_shard_name(0)}); "
                    "resume it with the launch that wrote it (DDP or one process)")
        if accelerate_fsdp:
            return (f"it holds accelerate's FSDP layout ({', '.join(ACCELERATE_FSDP_FOLDERS)}, the frozen base "
                    "included), written by an older version of this trainer, which this one does not read; "
                    "start fresh in another train.output_dir")
        return f"no {optimizer_shard_name(0)}: not an FSDP checkpoint this trainer wrote"
    if not sharded and not has_unsharded:
        if has_shards or accelerate_fsdp:
            return (f"it was written under FSDP (no {UNSHARDED_OPTIMIZER_NAME}); resume it with "
                    "accelerate launch --config_file configs/accelerate/fsdp.yaml and the same number of processes")
        return f"no {UNSHARDED_OPTIMIZER_NAME}: not a checkpoint this trainer wrote"
    return None


def _plain_optimizer(optimizer) -> torch.optim.Optimizer:
    """The torch optimizer: torch's state-dict helpers may step it (lr 0) to create its state, which
    accelerate's wrapper would route through the fp16 grad scaler."""
    return optimizer.optimizer if isinstance(optimizer, AcceleratedOptimizer) else optimizer


def _compact_cpu(tensor: torch.Tensor) -> torch.Tensor:
    """A CPU tensor owning exactly its bytes (`torch.save` writes a view's whole storage)."""
    tensor = tensor.detach().to("cpu")
    if tensor.untyped_storage().nbytes() != tensor.numel() * tensor.element_size():
        tensor = tensor.clone()
    return tensor


def _local_state(state: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: {key: _compact_cpu(value.to_local() if isinstance(value, DTensor) else value)
                   if isinstance(value, torch.Tensor) else value for key, value in entries.items()}
            for name, entries in state.items()}


def save_sharded_checkpoint(folder: Path, accelerator, model, optimizer) -> None:
    """Write the LoRA file (main process), this rank's optimizer shard and RNG states into `folder`.

    Every rank calls it (the LoRA gather is a collective); `accelerator` gives `process_index`,
    `num_processes`, `is_main_process`, `step` and `scaler`, as an `Accelerator` does.
    """
    rank = accelerator.process_index
    layers = lora_state_dict(model)
    if accelerator.is_main_process:
        save_lora(folder, layers, lora_metadata(model))
    plain = _plain_optimizer(optimizer)
    if plain.state:
        osd = get_optimizer_state_dict(model, plain)
        shard = {"state": _local_state(osd["state"]), "param_groups": osd["param_groups"]}
    else:  # no step yet: torch's helper would take one (lr 0) to create the state, changing Adam's step count
        shard = {"state": {}, "param_groups": None}
    shard.update(format=SHARD_FORMAT, rank=rank, world_size=accelerator.num_processes)
    torch.save(shard, folder / optimizer_shard_name(rank))
    save_accelerator_state(str(folder), [], [], [], [], rank, accelerator.step, accelerator.scaler)


def _read_shard(path: Path, rank: int, world_size: int) -> dict[str, Any]:
    try:
        shard = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing: every rank of the run that wrote it saves its own") from None
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path} is not an optimizer shard this trainer wrote: it holds pickled objects "
                              "other than tensors and plain values, which could run code: refused") from None
    except (RuntimeError, EOFError, ValueError) as err:  # truncated, not a torch.save zip
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path} is not an optimizer shard this trainer wrote ({first})") from None
    if not isinstance(shard, dict) or shard.get("format") != SHARD_FORMAT:
        raise CheckpointError(f"{path} is not an optimizer shard this trainer wrote (format "
                              f"{shard.get('format') if isinstance(shard, dict) else type(shard).__name__!r})")
    if (shard.get("rank"), shard.get("world_size")) != (rank, world_size):
        raise CheckpointError(f"{path} is rank {shard.get('rank')} of {shard.get('world_size')} processes, "
                              f"read by rank {rank} of {world_size}")
    return shard


def _restore_placements(path: Path, saved: dict[str, dict[str, Any]], target: dict[str, dict[str, Any]]):
    """`saved` (local pieces) as the DTensors of `target` (the fresh optimizer's state), checked name by name."""
    if saved.keys() != target.keys():
        extra, missing = sorted(saved.keys() - target.keys()), sorted(target.keys() - saved.keys())
        raise CheckpointError(f"{path} holds the optimizer state of other parameters than this model's LoRA "
                              f"(unknown: {extra[:3]}, missing: {missing[:3]}): were lora.rank or "
                              "lora.target_modules changed since it was written?")
    restored = {}
    for name, entries in target.items():
        if saved[name].keys() != entries.keys():
            raise CheckpointError(f"{path}: {name} has state {sorted(saved[name])}, this optimizer keeps "
                                  f"{sorted(entries)}: was the optimizer changed?")
        restored[name] = {}
        for key, want in entries.items():
            value = saved[name][key]
            if not isinstance(want, torch.Tensor):
                restored[name][key] = value
                continue
            local = want.to_local() if isinstance(want, DTensor) else want
            if not isinstance(value, torch.Tensor) or value.shape != local.shape or value.dtype != local.dtype:
                got = (f"{tuple(value.shape)} {value.dtype}" if isinstance(value, torch.Tensor)
                       else type(value).__name__)
                raise CheckpointError(f"{path}: {name}.{key} is {got}, this rank's shard is {tuple(local.shape)} "
                                      f"{local.dtype}: was lora.rank or the number of processes changed?")
            value = value.to(local.device)
            if isinstance(want, DTensor):
                value = DTensor.from_local(value, want.device_mesh, want.placements, run_check=False,
                                           shape=want.shape, stride=want.stride())
            restored[name][key] = value
    return restored


def _raise_on_any_rank(error: str | None) -> None:
    """Raise the first rank's error on every rank (all ranks call this, so none waits in a collective)."""
    errors = [error]
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        errors = [None] * dist.get_world_size()
        dist.all_gather_object(errors, error)
    first = next((e for e in errors if e), None)
    if first:
        raise CheckpointError(first)


def load_sharded_checkpoint(folder: Path, accelerator, model, optimizer) -> None:
    """Load what `save_sharded_checkpoint` wrote into the freshly sharded `model` (its LoRA) and `optimizer`,
    then the RNG states (and the fp16 scaler); sets `accelerator.step` as `load_state` does. Every rank calls it."""
    rank, world = accelerator.process_index, accelerator.num_processes
    problem = checkpoint_route_problem(folder, sharded=True)
    path = folder / optimizer_shard_name(rank)
    shard, error = None, f"checkpoint {folder}: {problem}" if problem else None
    if error is None:
        try:
            shard = _read_shard(path, rank, world)
        except CheckpointError as err:
            error = str(err)
    _raise_on_any_rank(error)
    load_lora_into(model, folder, weight_name=LORA_WEIGHT_NAME)
    plain = _plain_optimizer(optimizer)
    if shard["state"]:
        target = get_optimizer_state_dict(model, plain)
        error = None
        try:
            if [g["params"] for g in shard["param_groups"]] != [g["params"] for g in target["param_groups"]]:
                raise CheckpointError(f"{path}: its parameter groups name other parameters than this optimizer's")
            state = _restore_placements(path, shard["state"], target["state"])
        except CheckpointError as err:
            error = str(err)
        _raise_on_any_rank(error)
        set_optimizer_state_dict(model, plain, {"state": state, "param_groups": shard["param_groups"]})
    elif plain.state:
        raise CheckpointError(f"{path} holds no optimizer state (saved before the first step), but this "
                              "optimizer has one: load a checkpoint into a fresh trainer")
    restored = load_accelerator_state(str(folder), [], [], [], [], rank, accelerator.scaler)
    if "step" in restored:
        accelerator.step = restored["step"]
