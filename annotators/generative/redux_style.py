"""ReduxStyle: a new image in the style (and with the motifs) of a reference, on the target's layout.

FLUX.1-Redux's prior (`FluxPriorReduxPipeline`) turns the style image into
Flux prompt embeddings (SigLIP tokens projected into the T5 width, beside an
empty text prompt); `FluxControlPipeline` with FLUX.1-Depth-dev generates from
them, conditioned on the target's depth map, so the layout survives while
content and style come from the reference ("semantics changed"). The control
pipeline is loaded without its text encoders (the prior supplies the
embeddings), which saves the 9.5 GB T5. Needs the `depth` node (declared in
the catalog, so the depth annotator runs first). `instances` per sample, each
stored with its reference; seeds and reference names go in the metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..base import NODE_METADATA, SampleInput
from .generation import (DIFFUSERS_FILES, FLUX_DEV_LICENSE, GenerationSettings, StylingAnnotator, first_image, fit,
                         generation_size, generator, place, to_pil)
from .seeds import instance_seed
from .style_pool import StylePool
from ..models.weights import ModelSpec

FLUX_REDUX = "black-forest-labs/FLUX.1-Redux-dev"
FLUX_DEPTH = "black-forest-labs/FLUX.1-Depth-dev"
REDUX_FILES = ("model_index.json", "image_encoder/*", "feature_extractor/*", "image_embedder/*")


class ReduxStyleAnnotator(StylingAnnotator):
    """FLUX.1-Redux-dev prior -> FLUX.1-Depth-dev on the depth node; `instances` styles per sample."""

    name = "redux_style"
    produces = ("redux_style",)
    version = "1"
    models = (
        ModelSpec(FLUX_DEPTH, "main", FLUX_DEV_LICENSE, ("model_index.json",), DIFFUSERS_FILES, role="model"),
        ModelSpec(FLUX_REDUX, "main", FLUX_DEV_LICENSE, ("model_index.json",), REDUX_FILES, role="redux"),
    )

    @dataclass(frozen=True)
    class Settings(GenerationSettings):
        num_inference_steps: int = 30  # FLUX.1-Depth-dev card: 30 steps, guidance 10
        guidance_scale: float = 10.0
        instances: int = 3
        style_dir: str | None = None
        redux: str | None = None
        """Another Redux prior (hub id or folder) instead of FLUX.1-Redux-dev."""
        style_strength: float = 1.0
        """Scale of Redux's prompt embeddings (`prompt_embeds_scale`); below 1 weakens the reference."""

    def load(self) -> None:
        import torch
        from diffusers import FluxControlPipeline, FluxPriorReduxPipeline

        s = self.settings
        self.checked_instances()
        self.pool = StylePool(s.style_dir)
        device, dtype = self.prepare_device()
        depth_model, redux_model = (self.weights_path(m) for m in self.models)
        self.prior = FluxPriorReduxPipeline.from_pretrained(redux_model, dtype=dtype).to(device)  # SigLIP: ~1 GB
        self.prior.set_progress_bar_config(disable=True)
        control = FluxControlPipeline.from_pretrained(depth_model, text_encoder=None, text_encoder_2=None,
                                                      tokenizer=None, tokenizer_2=None, dtype=dtype)
        self.pipe = place(control, s, device)
        self._torch = torch

    def generate(self, depth: np.ndarray, style: np.ndarray, size: tuple[int, int], seed: int) -> np.ndarray:
        """One image at `size` (width, height) from the style reference and the depth map."""
        s = self.settings
        w, h = generation_size(*size, s.resolution)
        with self._torch.inference_mode():
            prior = self.prior(to_pil(style), prompt_embeds_scale=s.style_strength,
                               pooled_prompt_embeds_scale=s.style_strength)
            out = self.pipe(prompt_embeds=prior.prompt_embeds, pooled_prompt_embeds=prior.pooled_prompt_embeds,
                            control_image=fit(depth, (w, h)), width=w, height=h,
                            num_inference_steps=s.num_inference_steps, guidance_scale=s.guidance_scale,
                            generator=generator(seed))
        return np.asarray(fit(first_image(out), size))

    def annotate(self, batch: Sequence[SampleInput]) -> list[dict]:
        s = self.settings
        results = []
        for sample in batch:
            height, width = sample.target.shape[:2]
            depth = sample.nodes["depth"]
            styles = self.pool.choose(s.seed, self.name, sample.key, s.instances)
            pairs, instances = [], []
            for i, path in enumerate(styles):
                seed = instance_seed(s.seed, self.name, sample.key, i)
                style = self.pool.load(path)
                pairs.append((self.generate(depth, style, (width, height), seed), style))
                instances.append({"index": i, "seed": seed, "style": self.pool.name(path)})
            meta = {"instances": instances, "style_dir": str(self.pool.folder),
                    "models": [self.model_name(m.role) for m in self.models],
                    **self.metadata_settings("seed", "num_inference_steps", "guidance_scale", "resolution",
                                            "style_strength")}
            results.append({"redux_style": pairs, NODE_METADATA: {"redux_style": meta}})
        return results
