"""What a generation run is set to, apart from its grids: light to import (no torch), so the CLI's
`--help` shows these defaults without loading a model stack. The defaults are the reference's
sampling settings (guidance 30, 384 px cells, T5 at 512 tokens)."""

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


@dataclass(frozen=True)
class GenerateSettings:
    """Everything about a run but its grids."""

    model: str = DEFAULT_MODEL
    loras: tuple[LoraSpec, ...] = ()
    steps: int = 30
    guidance: float = 30.0
    seed: int = 0
    resolution: int = 384
    device: str | None = None  # None: cuda when there is one, else cpu
    dtype: str | None = None  # None: bfloat16 on an accelerator, float32 on the CPU
    offload: str = "none"
    max_sequence_length: int = 512
    upsampling: Upsampling | None = None
