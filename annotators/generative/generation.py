"""What the four generative annotators share: settings, seeds, sizes and putting a pipeline on a device.

Every generated image is reproducible from the sample's metadata: its seed is
derived from (base seed, node, sample key, instance) and stored beside the
image, and `torch.Generator(device="cpu").manual_seed(seed)` makes the
initial noise, so the same seed gives the same latents on any device.
Pipelines run at about `resolution`² pixels in the target's aspect ratio
(sides a multiple of 16, what Flux's 2x2 latent packing and SDXL need) and the
result is resized back to the target's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from ..base import Availability, former_names
from ..models.model_backed import ModelBackedAnnotator, ModelSettings
from ..models.weights import ModelSpec
from .style_pool import StylePool

SIZE_MULTIPLE = 16
OFFLOAD_MODES = ("model", "sequential", "none")
DIFFUSERS_FILES = ("model_index.json", "*/*.json", "*/*.safetensors", "*/*.txt", "*/*.model", "*/*.jinja")
"""What a diffusers pipeline folder needs; the root single-file checkpoints (23 GB for FLUX) are left out."""
FLUX_DEV_LICENSE = "FLUX.1 [dev] Non-Commercial License, gated"
GATED_HOW_TO = "accept the licence on the model's Hub page and `hf auth login` first"


@dataclass(frozen=True)
class GenerationSettings(ModelSettings):
    """Settings every generative annotator has (see docs/annotators.md for each one's defaults).

    `model_dir` and `model` (the main pipeline) come from `ModelSettings`; each
    annotator adds one setting per further model, named by its `ModelSpec.role`.
    `num_inference_steps` and `guidance_scale` are diffusers' pipeline arguments; they were
    `steps` and `guidance`, names still accepted and kept in shard ids and metadata."""

    former_names: ClassVar[dict[str, str]] = {"steps": "num_inference_steps", "guidance": "guidance_scale"}

    seed: int = 0
    """Base seed; instance i of node n of sample k uses `instance_seed(seed, n, k, i)`."""
    num_inference_steps: int = 28
    guidance_scale: float = 3.5
    resolution: int = 1024
    """Generation at about resolution x resolution pixels, the target's aspect ratio kept."""
    device: str = "auto"
    """"auto" (cuda when present, else cpu), "cuda", "cuda:1", "cpu"."""
    dtype: str = "bfloat16"
    """Weights' dtype on a GPU (bfloat16 or float16); always float32 on the CPU."""
    offload: str = "model"
    """On a GPU: "model" (enable_model_cpu_offload), "sequential" (lowest memory, slow) or "none"."""


class GenerativeAnnotator(ModelBackedAnnotator):
    """Base of the four generative annotators: one GPU each, one sample per batch, settings per model."""

    Settings: ClassVar[type] = GenerationSettings
    batch_size = 1
    num_cpus = 2.0
    num_gpus = 1.0

    def override(self, spec: ModelSpec) -> str | None:
        """Each model's location setting is the field named by its role (`model`, `llm`, `controlnet`, ...)."""
        return getattr(self.settings, spec.role)

    def availability(self) -> Availability:
        found = super().availability()
        if not found.ok and "gated" in self.license:
            return Availability(False, found.reason, f"{found.how_to_enable}; {GATED_HOW_TO}")
        return found

    def model_name(self, role: str) -> str:
        """What the metadata records for a model: its setting if given, else the hub id."""
        spec = next(m for m in self.models if m.role == role)
        return getattr(self.settings, role) or spec.repo_id

    def prepare_device(self) -> tuple[str, Any]:
        """(device, dtype) for this worker from the `device` and `dtype` settings."""
        device = resolve_device(self.settings.device)
        return device, torch_dtype(self.settings, device)

    def metadata_settings(self, *names: str) -> dict[str, Any]:
        """The named settings for a sample's metadata, keyed and ordered as `output_settings` records them
        (a renamed setting under its former name: `num_inference_steps` as `steps`)."""
        recorded = {current: former for former, current in former_names(self.Settings).items()}
        wanted = {recorded.get(name, name) for name in names}
        return {k: v for k, v in self.output_settings().items() if k in wanted}

    def checked_instances(self) -> int:
        """The `instances` setting, refused when the node cannot store that many."""
        limit = self.nodes.get(self.produces[0]).max_instances
        if not 1 <= self.settings.instances <= limit:
            raise ValueError(f"{self.name}.instances must be 1..{limit}, got {self.settings.instances}")
        return self.settings.instances


class StylingAnnotator(GenerativeAnnotator):
    """A generative annotator that draws its style references from the `style_dir` pool."""

    def availability(self) -> Availability:
        found = super().availability()
        if not found.ok:
            return found
        try:
            StylePool(self.settings.style_dir)
        except ValueError as err:
            return Availability(False, str(err), "pass --style-dir DIR with style images")
        return Availability.yes()


def generator(seed: int) -> Any:
    """A CPU torch generator: diffusers draws the initial noise on it, so results match across devices."""
    import torch

    return torch.Generator(device="cpu").manual_seed(seed)


def generation_size(width: int, height: int, resolution: int, multiple: int = SIZE_MULTIPLE) -> tuple[int, int]:
    """(width, height) with about resolution² pixels, the aspect ratio of width x height, multiples of `multiple`."""
    if resolution < multiple:
        raise ValueError(f"resolution must be at least {multiple}, got {resolution}")
    scale = (resolution * resolution / float(width * height)) ** 0.5
    w = max(multiple, int(round(width * scale / multiple)) * multiple)
    h = max(multiple, int(round(height * scale / multiple)) * multiple)
    return w, h


def to_pil(image: np.ndarray | Image.Image, mode: str = "RGB") -> Image.Image:
    pil = image if isinstance(image, Image.Image) else Image.fromarray(image)
    return pil.convert(mode) if pil.mode != mode else pil


def fit(image: np.ndarray | Image.Image, size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """`image` as a PIL image of `size` (width, height): Lanczos, the aspect ratio of `size`."""
    pil = to_pil(image, mode)
    return pil if pil.size == size else pil.resize(size, Image.LANCZOS)


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but torch sees no CUDA device")
    return name


def torch_dtype(settings: GenerationSettings, device: str) -> Any:
    import torch

    if device == "cpu":
        return torch.float32
    if settings.dtype not in ("bfloat16", "float16", "float32"):
        raise ValueError(f"dtype must be bfloat16, float16 or float32, got {settings.dtype!r}")
    return getattr(torch, settings.dtype)


def place(pipe: Any, settings: GenerationSettings, device: str) -> Any:
    """Move a loaded pipeline to `device`, with the CPU offload `settings.offload` asks for on a GPU."""
    if settings.offload not in OFFLOAD_MODES:
        raise ValueError(f"offload must be one of {OFFLOAD_MODES}, got {settings.offload!r}")
    if device == "cpu" or settings.offload == "none":
        pipe.to(device)
    elif settings.offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.enable_sequential_cpu_offload(device=device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def first_image(output: Any) -> Image.Image:
    """The single image of a diffusers pipeline output."""
    images = output.images
    if len(images) != 1:
        raise ValueError(f"expected one image from the pipeline, got {len(images)}")
    return images[0]
