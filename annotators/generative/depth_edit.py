"""DepthEdit: subject and background changed, the layout kept.

The language model rewrites the caption as a different scene on the same
spatial arrangement (`caption_rewriter`, kind "scene"); FLUX.1-Depth-dev
(`FluxControlPipeline`) draws it on the target's depth map. One image per
sample; the rewrite and the seed go in the metadata; a reply that does not
parse fails that sample only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..base import NODE_METADATA, SampleInput
from .caption_rewriter import LLM_SPEC, CaptionRewriter, CaptionRewriteSettings
from .generation import (DIFFUSERS_FILES, FLUX_DEV_LICENSE, GenerativeAnnotator, first_image, fit,
                         generation_size, generator, place)
from .seeds import instance_seed
from .redux_style import FLUX_DEPTH
from ..models.weights import ModelSpec


class DepthEditAnnotator(GenerativeAnnotator):
    """Caption rewrite (LLM) + FLUX.1-Depth-dev on the depth node; one edit per sample."""

    name = "depth_edit"
    produces = ("depth_edit",)
    version = "1"
    models = (ModelSpec(FLUX_DEPTH, "main", FLUX_DEV_LICENSE, ("model_index.json",), DIFFUSERS_FILES, role="model"),
              LLM_SPEC)

    @dataclass(frozen=True)
    class Settings(CaptionRewriteSettings):
        num_inference_steps: int = 30  # FLUX.1-Depth-dev card: 30 steps, guidance 10
        guidance_scale: float = 10.0

    def load(self) -> None:
        import torch
        from diffusers import FluxControlPipeline

        device, dtype = self.prepare_device()
        depth, llm = (self.weights_path(m) for m in self.models)
        self.rewriter = CaptionRewriter(llm, max_new_tokens=self.settings.llm_max_new_tokens)
        self.rewriter.load(device, dtype)
        self.pipe = place(FluxControlPipeline.from_pretrained(depth, dtype=dtype), self.settings, device)
        self._torch = torch

    def annotate(self, batch: Sequence[SampleInput]) -> list[dict]:
        s = self.settings
        results = []
        for sample in batch:
            edit = self.rewriter.rewrite(str(sample.meta.get("caption") or ""), "scene", sample.meta.get("item"))
            height, width = sample.target.shape[:2]
            size = generation_size(width, height, s.resolution)
            seed = instance_seed(s.seed, self.name, sample.key, 0)
            with self._torch.inference_mode():
                out = self.pipe(prompt=edit.caption, control_image=fit(sample.nodes["depth"], size), width=size[0],
                                height=size[1], num_inference_steps=s.num_inference_steps,
                                guidance_scale=s.guidance_scale, max_sequence_length=512, generator=generator(seed))
            image = np.asarray(fit(first_image(out), (width, height)))
            meta = {**edit.to_json(), "models": [self.model_name(m.role) for m in self.models],
                    "instances": [{"index": 0, "seed": seed}],
                    **self.metadata_settings("seed", "num_inference_steps", "guidance_scale", "resolution")}
            results.append({"depth_edit": image, NODE_METADATA: {"depth_edit": meta}})
        return results
