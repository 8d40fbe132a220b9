"""The trainable transformer on its devices: LoRA on, then placed (one process / DDP) or sharded (FSDP2).

`prepare_transformer` is the one function the trainer and tests/test_train_fsdp.py use, so the
tested sharding is the trained one. Under FSDP it shards with `torch.distributed.fsdp.fully_shard`
(FSDP2, per-parameter DTensor shards) following accelerate's FSDP2 plugin, i.e. the
`fsdp_config` of configs/accelerate/fsdp.yaml: one FSDP group per block class the auto-wrap
policy names (accelerate's own `fsdp2_prepare_auto_wrap_policy`), bottom-up, then the root.

Where this differs from accelerate's own `fsdp2_prepare_model`, on purpose:
- Precision. FSDP1 flattens a unit's parameters into one tensor and refuses a bf16 base beside
  fp32 LoRA weights; FSDP2 keeps each parameter in its own dtype, and so does this module: no
  `param_dtype` cast (accelerate's policy for `mixed_precision: bf16` would compute the LoRA in
  bf16 and reduce its gradients in bf16). Compute runs under autocast around the forward, as
  accelerate applies it to a DDP model, and LoRA gradients are reduced and accumulated in fp32,
  so a sharded step computes what one process computes (up to bf16 summation order).
- Groups: the blocks and the root only (accelerate also gives a model's final norm its own
  group; Flux's `norm_out` is small and stays with the root).
- It runs before `accelerator.prepare`, which skips its own wrapping for a model that is already
  an `FSDPModule` and only wires the optimizer and the no-sync context.

torch warns that `FluxSingleTransformerBlock` returns views (an in-place op on them would skip
FSDP's backward all-gather); Flux's forward only uses them out of place, and the FSDP test's
exact fp32 match with an unsharded process would show a skipped gather.
"""

from __future__ import annotations

import functools

import torch
from accelerate.utils import DistributedType
from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy
from accelerate.utils.other import get_module_children_bottom_up
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

from .lora import add_lora

AUTOCAST_DTYPES = {"no": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class ShardingError(ValueError):
    """The FSDP settings cannot shard the transformer; the message names the setting."""


def fsdp_plugin_of(accelerator):
    """accelerate's FSDP2 plugin when the run is FSDP (accelerate launch with an FSDP config), else None."""
    if accelerator.distributed_type != DistributedType.FSDP:
        return None
    plugin = accelerator.state.fsdp_plugin
    if plugin.fsdp_version != 2:
        raise ShardingError(
            f"fsdp_version: {plugin.fsdp_version}: FSDP1 flattens each unit into one tensor and cannot hold the bf16 "
            "base beside the fp32 LoRA; launch with configs/accelerate/fsdp.yaml (fsdp_version: 2)"
        )
    return plugin


def shard_transformer(transformer: torch.nn.Module, plugin, mixed_precision: str = "no", mesh=None):
    """Shard `transformer` in place with FSDP2 as `plugin` (accelerate's FSDP2 plugin) says; returns it.

    Call on every rank with the process group up; parameters move to the mesh's device as each
    group is sharded, so the full model never has to sit on one GPU. `mixed_precision` ("no",
    "bf16", "fp16") is the autocast of the forward, as accelerate's `mixed_precision`.
    """
    if isinstance(transformer, FSDPModule):
        return transformer
    if mixed_precision not in AUTOCAST_DTYPES:
        raise ShardingError(f"mixed_precision {mixed_precision!r}: expected one of {sorted(AUTOCAST_DTYPES)}")
    if plugin.activation_checkpointing:
        raise ShardingError("fsdp_activation_checkpointing: true is not supported here (it would wrap blocks that are "
                            "already sharded); set it to false and use model.gradient_checkpointing=true")
    # Resolve the class names now, as accelerate's fsdp2_prepare_model does: once sharded, the blocks'
    # classes are FSDP subclasses and `accelerator.prepare` could no longer find them by name.
    plugin.set_auto_wrap_policy(transformer)
    wrap = fsdp2_prepare_auto_wrap_policy(plugin, transformer)
    if wrap is None:
        raise ShardingError("fsdp_auto_wrap_policy: NO_WRAP would gather the whole transformer at once; use "
                            "TRANSFORMER_BASED_WRAP with fsdp_transformer_layer_cls_to_wrap: "
                            "FluxTransformerBlock,FluxSingleTransformerBlock")
    kwargs = dict(mesh=mesh, offload_policy=plugin.cpu_offload,
                  mp_policy=MixedPrecisionPolicy(param_dtype=None, reduce_dtype=torch.float32))
    groups = [m for m in get_module_children_bottom_up(transformer)[:-1] if wrap(m)]
    if not groups:
        raise ShardingError(f"fsdp_transformer_layer_cls_to_wrap {plugin.transformer_cls_names_to_wrap}: no module of "
                            f"{type(transformer).__name__} matches")
    for module in groups:
        fully_shard(module, reshard_after_forward=plugin.reshard_after_forward, **kwargs)
    fully_shard(transformer, **kwargs)  # the root: embedders and final layer; torch keeps it gathered for backward
    dtype = AUTOCAST_DTYPES[mixed_precision]
    if dtype is not None:
        device_type = next(transformer.parameters()).device.type
        forward = transformer.forward
        transformer.forward = functools.wraps(forward)(torch.autocast(device_type, dtype=dtype)(forward))
    return transformer


def prepare_transformer(transformer: torch.nn.Module, *, rank: int, alpha: float | None = None, dropout: float = 0.0,
                        target_modules: list[str] | None = None, gradient_checkpointing: bool = False,
                        device: torch.device | str = "cpu", fsdp_plugin=None, mixed_precision: str = "no", mesh=None):
    """Frozen base + trainable fp32 LoRA (`add_lora`), optional gradient checkpointing, then on `device`
    (no `fsdp_plugin`: one process or DDP) or sharded over the process group (`shard_transformer`)."""
    add_lora(transformer, rank, alpha, dropout, target_modules)
    if gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    if fsdp_plugin is None:
        return transformer.to(device)
    return shard_transformer(transformer, fsdp_plugin, mixed_precision, mesh)
