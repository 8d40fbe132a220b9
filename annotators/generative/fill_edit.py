"""FillEdit: the subject replaced by another object, the background kept.

A language model rewrites the caption with a different main object
(`caption_rewriter`, JSON `{name, description, caption}`); FLUX.1-Fill-dev
(`FluxFillPipeline`) repaints the subject's mask with the new caption. The mask
is the grounded objects' mask when the sample has one, else the foreground
mask (both white or coloured on black; dilated a little so the new object may
be larger than the old). Outside the mask the target's own pixels are pasted
back over the repaint (with a feathered edge), so the background is kept
exactly rather than through a VAE round trip. As in the release, one rewrite per sample and
`instances` repaints of it with different seeds; the rewrite, its source mask
and the seeds go in the metadata. A reply that is not the JSON asked for fails
that sample only (the runner writes the reason to the errors record).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from ..base import NODE_METADATA, SampleInput
from .caption_rewriter import LLM_SPEC, CaptionRewriter, CaptionRewriteSettings
from .generation import (DIFFUSERS_FILES, FLUX_DEV_LICENSE, GenerativeAnnotator, first_image, fit,
                         generation_size, generator, place)
from .seeds import instance_seed
from ..models.weights import ModelSpec

FLUX_FILL = "black-forest-labs/FLUX.1-Fill-dev"
MASK_SOURCES = ("grounded_mask", "foreground")


def subject_mask(nodes: dict, dilate: int) -> tuple[np.ndarray, str]:
    """(H, W) uint8 mask, 255 = repaint, from the first of MASK_SOURCES the sample has; and its name."""
    for source in MASK_SOURCES:
        if source in nodes:
            image = np.asarray(nodes[source])
            mask = (image.max(axis=2) if image.ndim == 3 else image) > 127
            if not mask.any():
                continue
            mask = mask.astype(np.uint8) * 255
            if dilate > 0:
                mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate + 1,) * 2))
            return mask, source
    raise ValueError(f"no subject mask: the sample has neither {' nor '.join(MASK_SOURCES)} (or they are empty)")


def paste_outside(target: np.ndarray, repaint: np.ndarray, mask: np.ndarray, feather: int) -> np.ndarray:
    """`repaint` inside `mask`, `target` outside it, blended over a Gaussian edge of about `feather` pixels."""
    alpha = mask.astype(np.float32) / 255.0
    if feather > 0:
        alpha = cv2.GaussianBlur(alpha, (0, 0), sigmaX=feather / 2.0)
        alpha = np.maximum(alpha, (mask > 127).astype(np.float32))  # the mask itself stays fully repainted
    alpha = alpha[:, :, None]
    blended = repaint.astype(np.float32) * alpha + target.astype(np.float32) * (1.0 - alpha)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


class FillEditAnnotator(GenerativeAnnotator):
    """Caption rewrite (LLM) + FLUX.1-Fill-dev on the subject mask; `instances` repaints per sample."""

    name = "fill_edit"
    produces = ("fill_edit",)
    optional_needs = MASK_SOURCES
    version = "1"
    models = (ModelSpec(FLUX_FILL, "main", FLUX_DEV_LICENSE, ("model_index.json",), DIFFUSERS_FILES, role="model"),
              LLM_SPEC)

    @dataclass(frozen=True)
    class Settings(CaptionRewriteSettings):
        num_inference_steps: int = 50  # FLUX.1-Fill-dev card: 50 steps, guidance 30
        guidance_scale: float = 30.0
        instances: int = 5
        mask_dilate: int = 8
        """Pixels (at the target's size) the subject mask is grown by."""
        feather: int = 8
        """Width in pixels of the blend between the repaint and the kept background."""

    def load(self) -> None:
        import torch
        from diffusers import FluxFillPipeline

        s = self.settings
        self.checked_instances()
        device, dtype = self.prepare_device()
        fill, llm = (self.weights_path(m) for m in self.models)
        self.rewriter = CaptionRewriter(llm, max_new_tokens=s.llm_max_new_tokens)
        self.rewriter.load(device, dtype)
        self.pipe = place(FluxFillPipeline.from_pretrained(fill, dtype=dtype), s, device)
        self._torch = torch

    def repaint(self, target: np.ndarray, mask: np.ndarray, caption: str, seed: int) -> np.ndarray:
        s = self.settings
        height, width = target.shape[:2]
        size = generation_size(width, height, s.resolution)
        with self._torch.inference_mode():
            out = self.pipe(prompt=caption, image=fit(target, size), mask_image=fit(mask, size, "L"),
                            width=size[0], height=size[1], num_inference_steps=s.num_inference_steps,
                            guidance_scale=s.guidance_scale, max_sequence_length=512, generator=generator(seed))
        return paste_outside(target, np.asarray(fit(first_image(out), (width, height))), mask, s.feather)

    def annotate(self, batch: Sequence[SampleInput]) -> list[dict]:
        s = self.settings
        results = []
        for sample in batch:
            mask, source = subject_mask(sample.nodes, s.mask_dilate)
            edit = self.rewriter.rewrite(str(sample.meta.get("caption") or ""), "object", sample.meta.get("item"))
            seeds = [instance_seed(s.seed, self.name, sample.key, i) for i in range(s.instances)]
            images = [self.repaint(sample.target, mask, edit.caption, seed) for seed in seeds]
            meta = {**edit.to_json(), "mask": source, "models": [self.model_name(m.role) for m in self.models],
                    "instances": [{"index": i, "seed": seed} for i, seed in enumerate(seeds)],
                    **self.metadata_settings("seed", "num_inference_steps", "guidance_scale", "resolution",
                                            "mask_dilate", "feather")}
            results.append({"fill_edit": images, NODE_METADATA: {"fill_edit": meta}})
        return results
