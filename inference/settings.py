"""What a generation run is set to, apart from its grids: light to import (no torch), so the CLIs'
`--help` and the trainer's config show these defaults without loading a model stack. The defaults
are the reference's sampling settings (guidance 30, 384 px cells, T5 at 512 tokens)."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InferenceError

DEFAULT_MODEL = "black-forest-labs/FLUX.1-Fill-dev"
OFFLOAD_MODES = ("none", "model", "sequential")
DTYPE_ALIASES = {"bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16", "fp16": "float16",
                 "float32": "float32", "fp32": "float32"}


@dataclass(frozen=True)
class LoraSpec:
    """A LoRA file, folder or hub id and its weight (`--lora PATH[:WEIGHT]`)."""

    source: str
    weight: float = 1.0

    @classmethod
    def parse(cls, text: str) -> LoraSpec:
        source, sep, tail = text.rpartition(":")
        if sep and source:
            try:
                return cls(source, float(tail))
            except ValueError:
                pass  # a ':' inside the path itself
        if not text.strip():
            raise InferenceError("--lora is empty: give PATH[:WEIGHT], e.g. "
                                 "out/vc384/pytorch_lora_weights.safetensors:0.8")
        return cls(text)

    def to_json(self) -> dict:
        return {"source": self.source, "weight": self.weight}


@dataclass(frozen=True)
class Upsampling:
    """Diffusers' upsampling stage: `strength` of the SDEdit pass, to `size` (w, h; default the query's size)."""

    strength: float = 0.4
    size: tuple[int, int] | None = None


@dataclass(frozen=True, kw_only=True)
class SamplingSettings:
    """How grids are sampled, the same for `generate`, `evaluate` (every variant) and the trainer's
    validation defaults: the one place these defaults are written. Field names are diffusers' where the
    concept is diffusers' (`num_inference_steps`, `guidance_scale`); the CLIs keep `--steps`/`--guidance`
    and the written records (generate.json, item.json, report.json) keep `steps`/`guidance`."""

    model: str = DEFAULT_MODEL
    num_inference_steps: int = 30
    guidance_scale: float = 30.0
    seed: int = 0
    resolution: int = 384
    device: str | None = None  # None: cuda when there is one, else cpu (evaluate: accelerate's device)
    dtype: str | None = None  # None: bfloat16 on an accelerator, float32 on the CPU
    max_sequence_length: int = 512

    def record(self) -> dict:
        """The sampling keys every written record uses (`steps`, `guidance`: their names before the rename)."""
        return {"model": self.model, "steps": self.num_inference_steps, "guidance": self.guidance_scale,
                "seed": self.seed, "resolution": self.resolution}


@dataclass(frozen=True, kw_only=True)
class GenerateSettings(SamplingSettings):
    """Everything about a `generate` run but its grids."""

    loras: tuple[LoraSpec, ...] = ()
    offload: str = "none"
    upsampling: Upsampling | None = None
