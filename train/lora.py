"""LoRA on every linear layer of the Flux transformer (peft), and its diffusers-format files.

The reference trains a LoRA on every `nn.Linear` of Flux (attention, MLP, modulation,
embedders, final layer). Here the target list is derived from the model itself, so a
different Flux config needs no edit. Saving goes through `FluxFillPipeline.save_lora_weights`
with the peft config as metadata (rank, alpha, targets), which is what
`FluxFillPipeline.load_lora_weights` and `VisualClozeGenerationPipeline.load_lora_weights` read.
Under FSDP2 (train/sharding.py) the LoRA parameters are DTensor shards: `lora_state_dict`
gathers them whole (LoRA only, never the frozen base) and `load_lora_into` cuts a saved file
into the same shards.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import torch
from diffusers import FluxFillPipeline
from diffusers.training_utils import cast_training_params
from diffusers.utils import convert_unet_state_dict_to_peft
from peft import LoraConfig, get_peft_model_state_dict, set_peft_model_state_dict
from peft.tuners.lora import LoraLayer
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.tensor import DTensor, distribute_tensor

LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
_BLOCK_PREFIX = re.compile(r"^(?:single_)?transformer_blocks\.\d+\.")


def linear_target_modules(transformer: torch.nn.Module) -> list[str]:
    """Names (block prefix stripped, so one entry covers every block) of all nn.Linear layers."""
    names = {_BLOCK_PREFIX.sub("", name) for name, module in transformer.named_modules()
             if isinstance(module, torch.nn.Linear)}
    return sorted(names)


def add_lora(transformer, rank: int, alpha: float | None = None, dropout: float = 0.0,
             target_modules: list[str] | None = None) -> LoraConfig:
    """Freeze the transformer, attach a trainable LoRA (fp32) and check that it covers every target."""
    targets = target_modules or linear_target_modules(transformer)
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in transformer.modules())
    config = LoraConfig(
        r=rank,
        lora_alpha=rank if alpha is None else alpha,
        lora_dropout=dropout,
        init_lora_weights=True,  # A: kaiming-uniform, B: zeros, as the reference
        target_modules=targets,
    )
    transformer.requires_grad_(False)
    transformer.add_adapter(config)
    wrapped = sum(isinstance(m, LoraLayer) for m in transformer.modules())
    if target_modules is None and wrapped != n_linear:
        raise RuntimeError(f"LoRA wrapped {wrapped} of the transformer's {n_linear} linear layers")
    cast_training_params(transformer, dtype=torch.float32)
    return config


def is_sharded(transformer) -> bool:
    """True when the transformer's LoRA parameters are FSDP2 shards (DTensors)."""
    return any(isinstance(p, DTensor) for p in transformer.parameters() if p.requires_grad)


def lora_state_dict(transformer) -> dict[str, torch.Tensor]:
    """The LoRA weights in diffusers/peft naming (what `save_lora` writes).

    Sharded (FSDP2): the LoRA shards alone are gathered into full tensors on rank 0's CPU and
    the other ranks get {}; every rank must call it (it runs collectives).
    """
    if not is_sharded(transformer):
        return get_peft_model_state_dict(transformer)
    options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)
    return get_peft_model_state_dict(transformer, state_dict=get_model_state_dict(transformer, options=options))


def _shard_like_model(transformer, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Full LoRA tensors (file naming) -> DTensors placed like the parameters they load into.

    Every rank holds the whole file, so each cuts its own shard (no communication). peft does the
    same inside `set_peft_model_state_dict` only where transformers' tensor-parallel module imports.
    """
    targets = get_peft_model_state_dict(transformer, state_dict=dict(transformer.named_parameters()))
    sharded = dict(state)
    for key, value in state.items():
        target = targets.get(key)
        if isinstance(target, DTensor):
            sharded[key] = distribute_tensor(value.to(device=target.device, dtype=target.dtype), target.device_mesh,
                                             target.placements, src_data_rank=None)
    return sharded


def lora_metadata(transformer) -> dict:
    """The peft config saved beside the weights. peft keeps `target_modules` as a set, whose order
    changes with Python's hash seed; sorted, the same training writes the same bytes (the evaluation
    identifies a LoRA by its file's sha256)."""
    metadata = transformer.peft_config["default"].to_dict()
    if isinstance(metadata.get("target_modules"), (set, frozenset, list, tuple)):
        metadata["target_modules"] = sorted(metadata["target_modules"])
    return metadata


def save_lora(directory: str | os.PathLike, lora_layers: dict[str, torch.Tensor], metadata: dict,
              weight_name: str = LORA_WEIGHT_NAME) -> Path:
    """Write the LoRA as diffusers safetensors (with rank/alpha metadata) into `directory`."""
    FluxFillPipeline.save_lora_weights(
        save_directory=str(directory),
        transformer_lora_layers=lora_layers,
        weight_name=weight_name,
        transformer_lora_adapter_metadata=metadata,
    )
    return Path(directory) / weight_name


def export_lora_atomic(path: str | os.PathLike, lora_layers: dict[str, torch.Tensor], metadata: dict) -> Path:
    """Write `path` (a .safetensors file) via a temp folder beside it, then rename into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".lora-", dir=path.parent))
    try:
        written = save_lora(tmp, lora_layers, metadata, weight_name=path.name)
        os.replace(written, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def load_lora_into(transformer, directory: str | os.PathLike, weight_name: str = LORA_WEIGHT_NAME) -> None:
    """Load a saved LoRA back into the trainable adapter (resume), exactly, or fail naming the keys."""
    state = FluxFillPipeline.lora_state_dict(str(directory), weight_name=weight_name)
    state = {k.removeprefix("transformer."): v for k, v in state.items() if k.startswith("transformer.")}
    state = convert_unet_state_dict_to_peft(state)
    sharded = is_sharded(transformer)
    if sharded:
        state = _shard_like_model(transformer, state)
    result = set_peft_model_state_dict(transformer, state, adapter_name="default")
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise RuntimeError(f"LoRA file {directory}/{weight_name} has keys the model lacks: {unexpected[:5]}")
    expected = get_peft_model_state_dict(transformer)
    missing = sorted(set(expected) - set(state))
    if missing:
        raise RuntimeError(f"LoRA file {directory}/{weight_name} lacks keys: {missing[:5]}")
    if not sharded:  # shards were loaded in place, in their own fp32
        cast_training_params(transformer, dtype=torch.float32)
