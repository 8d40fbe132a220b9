"""Tiny metric models of the real classes, laid out under a `model_dir` as the published weights are.

`save_metric_models(root)` writes `<root>/openai/clip-vit-large-patch14/` (a tiny random
`CLIPModel` with a locally built CLIP tokenizer and a `CLIPImageProcessor`),
`<root>/facebook/dinov2-base/` (a tiny random `Dinov2Model` with a `BitImageProcessor`) and the
tiny depth annotator (`tests.perception_models.depth_anything`), so `MetricSuite.load(model_dir=root)`
and the annotators load them through the same `from_pretrained` code as the real weights.
Random weights: the scores they give test the wiring, not the metric.
"""

from __future__ import annotations

from pathlib import Path

import torch

from inference.metrics.metric_models import CLIP_VIT_L14, DINOV2_BASE


def save_tiny_clip(folder: Path, seed: int = 0, teach: tuple[list, list[str]] | None = None,
                   train_steps: int = 0) -> Path:
    """A tiny random CLIPModel beside a locally built CLIP tokenizer and a CLIPImageProcessor (the files the
    real repo has); with `teach` = (images, captions), first `train_steps` contrastive steps on those pairs."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from train.tiny import build_clip_tokenizer

    torch.manual_seed(seed)
    tokenizer = build_clip_tokenizer()
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8),
        projection_dim=16)
    model = CLIPModel(config)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    if teach is not None and train_steps:
        images, captions = teach
        batch = CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)(
            text=captions, images=images, return_tensors="pt", padding=True)
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(train_steps):
            loss = model(**batch, return_loss=True).loss
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    model.eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    image_processor.save_pretrained(folder)
    return folder


def save_tiny_dino(folder: Path, seed: int = 0) -> Path:
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    torch.manual_seed(seed)
    Dinov2Model(Dinov2Config(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                             patch_size=14, image_size=28)).save_pretrained(folder)
    BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 28, "width": 28}).save_pretrained(folder)
    return folder


def save_metric_models(root: Path, depth: bool = True) -> Path:
    """CLIP, DINOv2 and (with `depth`) the depth annotator, tiny, under `root` as `--model-dir` expects."""
    from tests import perception_models

    root = Path(root)
    save_tiny_clip(root / CLIP_VIT_L14.repo_id)
    save_tiny_dino(root / DINOV2_BASE.repo_id)
    if depth:
        perception_models.depth_anything(root)
    return root
