"""FLUX.1-Fill-dev as diffusers' `VisualClozeGenerationPipeline`, with LoRAs, laid out as training saw it.

The images go through `sampler.inference.GridProcessor` (diffusers' processor with its
layout bugs fixed: the cells are diffusers' own wherever diffusers is right), and the
layout sentence is put into the prompt in diffusers 0.42's form, so that the pipeline's own
prompt assembly encodes exactly `sampler.instruction.build_instruction(config=None)`
(inference/prompts.py): the prompt training shows for the grid at inference settings.

LoRAs load with diffusers' `load_lora_weights`, one adapter each, weighted with
`set_adapters`. Offloading is diffusers' own (`enable_model_cpu_offload`,
`enable_sequential_cpu_offload`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from diffusers import FluxFillPipeline, VisualClozeGenerationPipeline

from sampler.inference import GridProcessor
from sampler.instruction import DIFFUSERS_LAYOUT_FORM

from .errors import InferenceError
from .settings import DEFAULT_MODEL, DTYPE_ALIASES, OFFLOAD_MODES, LoraSpec

_QUIET = ("flux.pipeline_flux_fill", "visualcloze.pipeline_visualcloze_generation")


def resolve_device(device: str | None) -> torch.device:
    """`device` (default: cuda when there is one, else cpu), checked to exist."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise InferenceError(f"--device {device!r}: not a torch device; use cpu, cuda or cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InferenceError(f"--device {device!r}: this machine has no CUDA device; use --device cpu")
    return resolved


def resolve_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    """`dtype` by name (default: bfloat16 on an accelerator, float32 on the CPU)."""
    if dtype is None:
        return torch.float32 if device.type == "cpu" else torch.bfloat16
    if dtype not in DTYPE_ALIASES:
        raise InferenceError(f"--dtype {dtype!r}: use one of {', '.join(DTYPE_ALIASES)}")
    return getattr(torch, DTYPE_ALIASES[dtype])


def load_pipeline(model: str = DEFAULT_MODEL, loras: list[LoraSpec] | None = None, *, device: str | None = None,
                  dtype: str | None = None, offload: str = "none",
                  resolution: int = 384) -> VisualClozeGenerationPipeline:
    """FLUX.1-Fill-dev (`model`: hub id or folder) as a VisualClozeGenerationPipeline at cell `resolution`,
    with `loras` loaded and weighted, placed on `device` or offloaded (`offload`: none|model|sequential)."""
    if offload not in OFFLOAD_MODES:
        raise InferenceError(f"--offload {offload!r}: use one of {', '.join(OFFLOAD_MODES)}")
    if resolution < 16 or resolution % 16:
        raise InferenceError(f"--resolution {resolution}: the cell side must be a positive multiple of 16 "
                             "(384 and 512 are what the paper trains)")
    torch_device = resolve_device(device)
    if offload != "none" and torch_device.type == "cpu":
        raise InferenceError(f"--offload {offload}: offloading moves modules between the CPU and an accelerator; "
                             "with --device cpu use --offload none")
    torch_dtype = resolve_dtype(dtype, torch_device)
    try:
        pipe = VisualClozeGenerationPipeline.from_pretrained(model, resolution=resolution, dtype=torch_dtype)
    except (OSError, ValueError) as err:
        reason = " ".join(str(err).split())[:300]
        raise InferenceError(f"--model {model!r}: cannot load it as FLUX.1-Fill-dev ({reason}); pass a local "
                             f"folder or a hub id you have access to (`hf auth login` for the gated {DEFAULT_MODEL})"
                             ) from None
    pipe.image_processor = GridProcessor(resolution=resolution, layout_form=DIFFUSERS_LAYOUT_FORM)
    pipe.set_progress_bar_config(disable=True)
    for name in _QUIET:  # VisualCloze prompts run past CLIP's 77 tokens by design (training truncates them too)
        logging.getLogger(f"diffusers.pipelines.{name}").setLevel(logging.ERROR)
    load_loras(pipe, loras or [])
    if offload == "model":
        pipe.enable_model_cpu_offload(device=torch_device)
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=torch_device)
    else:
        pipe.to(torch_device)
    return pipe


def load_loras(pipe: VisualClozeGenerationPipeline, loras: list[LoraSpec]) -> list[str]:
    """Load each LoRA as its own adapter (`lora0`, `lora1`, ...) and weight them; returns the adapter names."""
    names = []
    for i, lora in enumerate(loras):
        name = f"lora{i}"
        path = Path(lora.source)
        if path.suffix == ".safetensors" and not path.is_file():
            raise InferenceError(f"--lora {lora.source!r}: no such file")
        location, kwargs = (str(path.parent), {"weight_name": path.name}) if path.is_file() else (lora.source, {})
        try:
            pipe.load_lora_weights(location, adapter_name=name, **kwargs)
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            reason = " ".join(str(err).split())[:300]
            raise InferenceError(f"--lora {lora.source!r}: cannot load it as a FLUX LoRA ({reason}); pass the "
                                 "pytorch_lora_weights.safetensors `python -m train` writes, its folder or a hub id"
                                 ) from None
        names.append(name)
    if names:
        pipe.set_adapters(names, adapter_weights=[lora.weight for lora in loras])
    return names


def upsampling_pipeline(pipe: VisualClozeGenerationPipeline) -> FluxFillPipeline:
    """Diffusers' upsampling stage (`VisualClozePipeline.upsampling_pipe`, a FluxFillPipeline) on `pipe`'s
    modules: no second copy of the weights, the same LoRAs and offload hooks."""
    upsampler = FluxFillPipeline(**pipe.components)
    upsampler.set_progress_bar_config(disable=True)
    return upsampler
