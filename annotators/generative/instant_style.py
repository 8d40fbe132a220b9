"""InstantStyle: the target restyled after a style reference, its content and layout kept.

SDXL with the IP-Adapter injected only into the style block (InstantStyle's
`{"up": {"block_0": [0, 1, 0]}}` scale, diffusers' `set_ip_adapter_scale`), so
the reference gives colours, strokes and texture but not its content; the
caption is the prompt; a Canny ControlNet holds the target's layout. Canny
rather than depth: InstantStyle's own ControlNet script uses Canny, edges keep
the outlines that make the content recognisable (what "semantics kept" asks
for, where a depth map lets shapes drift), and the edges are computed here
with the canny annotator's thresholds, so this node needs only the target.
Each sample gets `instances` stylisations, each stored with the reference it
used; seeds and reference names go in the metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from ..base import NODE_METADATA, SampleInput
from ..perception.canny import HIGH_THRESHOLD, LOW_THRESHOLD
from .generation import (DIFFUSERS_FILES, GenerationSettings, StylingAnnotator, first_image, fit, generation_size,
                         generator, place, to_pil)
from .seeds import instance_seed
from .style_pool import StylePool
from ..models.weights import ModelSpec

SDXL = "stabilityai/stable-diffusion-xl-base-1.0"
CANNY_CONTROLNET = "diffusers/controlnet-canny-sdxl-1.0"
IP_ADAPTER = "h94/IP-Adapter"
IP_ADAPTER_SUBFOLDER = "sdxl_models"
IP_ADAPTER_WEIGHT = "ip-adapter_sdxl.bin"
NEGATIVE_PROMPT = "lowres, low quality, blurry, jpeg artefacts, watermark, text, deformed, disfigured"


def style_only_scale(scale: float) -> dict:
    """IP-Adapter scales that feed the reference into SDXL's style block only (InstantStyle)."""
    return {"up": {"block_0": [0.0, scale, 0.0]}}


def canny_control(rgb: np.ndarray) -> np.ndarray:
    """The ControlNet condition: Canny 100/200 edges of the (already resized) target, as RGB."""
    edges = cv2.Canny(rgb, LOW_THRESHOLD, HIGH_THRESHOLD)
    return np.repeat(edges[:, :, None], 3, axis=2)


def prompt_for(meta: dict) -> str:
    """The caption, else the subject's name, else nothing (the style and the edges still drive the image)."""
    return str(meta.get("caption") or meta.get("item") or "")


class InstantStyleAnnotator(StylingAnnotator):
    """SDXL + IP-Adapter (style block only) + Canny ControlNet; `instances` styles per sample."""

    name = "instant_style"
    produces = ("instant_style",)
    version = "1"
    models = (
        ModelSpec(SDXL, "main", "CreativeML Open RAIL++-M", ("model_index.json",), DIFFUSERS_FILES, role="model"),
        ModelSpec(CANNY_CONTROLNET, "main", "openrail++", ("config.json",),
                  ("config.json", "diffusion_pytorch_model.safetensors"), role="controlnet"),
        ModelSpec(IP_ADAPTER, "main", "Apache-2.0",
                  (f"{IP_ADAPTER_SUBFOLDER}/{IP_ADAPTER_WEIGHT}", f"{IP_ADAPTER_SUBFOLDER}/image_encoder/config.json"),
                  (f"{IP_ADAPTER_SUBFOLDER}/{IP_ADAPTER_WEIGHT}", f"{IP_ADAPTER_SUBFOLDER}/image_encoder/*"),
                  role="ip_adapter"),
    )

    @dataclass(frozen=True)
    class Settings(GenerationSettings):
        num_inference_steps: int = 30
        guidance_scale: float = 5.0
        instances: int = 3
        style_dir: str | None = None
        controlnet: str | None = None
        """Another ControlNet (hub id or folder) instead of diffusers/controlnet-canny-sdxl-1.0."""
        ip_adapter: str | None = None
        """Another IP-Adapter repository (hub id or folder) with sdxl_models/ip-adapter_sdxl.bin + image_encoder/."""
        ip_adapter_scale: float = 1.0
        controlnet_scale: float = 0.6
        negative_prompt: str = NEGATIVE_PROMPT

    def load(self) -> None:
        import torch
        from diffusers import ControlNetModel, StableDiffusionXLControlNetPipeline

        s = self.settings
        self.checked_instances()
        self.pool = StylePool(s.style_dir)
        device, dtype = self.prepare_device()
        base, control_net, ip_adapter = (self.weights_path(m) for m in self.models)
        controlnet = ControlNetModel.from_pretrained(control_net, dtype=dtype)
        pipe = StableDiffusionXLControlNetPipeline.from_pretrained(base, controlnet=controlnet, dtype=dtype)
        pipe.load_ip_adapter(ip_adapter, subfolder=IP_ADAPTER_SUBFOLDER, weight_name=IP_ADAPTER_WEIGHT)
        pipe.set_ip_adapter_scale(style_only_scale(s.ip_adapter_scale))
        self.pipe = place(pipe, s, device)
        self._torch = torch

    def stylise(self, target: np.ndarray, style: np.ndarray, prompt: str, seed: int) -> np.ndarray:
        """One stylisation of `target` after `style`, at the target's size."""
        s = self.settings
        height, width = target.shape[:2]
        size = generation_size(width, height, s.resolution)
        control = canny_control(np.asarray(fit(target, size)))
        with self._torch.inference_mode():
            out = self.pipe(prompt=prompt, negative_prompt=s.negative_prompt, image=fit(control, size),
                            ip_adapter_image=to_pil(style), controlnet_conditioning_scale=s.controlnet_scale,
                            num_inference_steps=s.num_inference_steps, guidance_scale=s.guidance_scale,
                            width=size[0], height=size[1], generator=generator(seed))
        return np.asarray(fit(first_image(out), (width, height)))

    def annotate(self, batch: Sequence[SampleInput]) -> list[dict]:
        s = self.settings
        results = []
        for sample in batch:
            styles = self.pool.choose(s.seed, self.name, sample.key, s.instances)
            prompt = prompt_for(sample.meta)
            pairs, instances = [], []
            for i, path in enumerate(styles):
                seed = instance_seed(s.seed, self.name, sample.key, i)
                style = self.pool.load(path)
                pairs.append((self.stylise(sample.target, style, prompt, seed), style))
                instances.append({"index": i, "seed": seed, "style": self.pool.name(path)})
            meta = {"instances": instances, "prompt": prompt, "style_dir": str(self.pool.folder),
                    "models": [self.model_name(m.role) for m in self.models],
                    **self.metadata_settings("seed", "num_inference_steps", "guidance_scale", "resolution",
                                            "ip_adapter_scale", "controlnet_scale")}
            results.append({"instant_style": pairs, NODE_METADATA: {"instant_style": meta}})
        return results
