"""CLIP scores: `clip_t` (image vs text) and `clip_i` (image vs image), with transformers' CLIPModel.

Conventions, one per metric name, the same in every table:
- `clip_t` = 100 x max(cos(image, text), 0): torchmetrics' CLIPScore convention, the
  paper's "CLIP score x100" (Tables 1 and 2: ~35). Table 3 prints the same cosine
  unscaled (0.29); divide by 100 to compare. Captions longer than CLIP's 77 tokens are
  truncated by the tokenizer (the end token kept). Pass the content caption, not the
  grid instruction.
- `clip_i` = 100 x cos(image, image) (Table 2's CLIP-I, 89.63; Table 3's style
  consistency, 0.55, is the same cosine unscaled).

torchmetrics 1.9.0's CLIPScore cannot be used as is beside transformers 5 (its
`get_image_features` now returns a `BaseModelOutputWithPooling`: Lightning-AI/torchmetrics
#3407, fixed after 1.9.0), so the score is computed here with the same formula; the
tests check it against torchmetrics' `clip_score` on the same model.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .embedding import ImageEmbedder, check_pairs
from .metric_models import CLIP_VIT_L14
from .pixels import ImageLike


class ClipScorer(ImageEmbedder):
    """CLIP loaded once (`ClipScorer.load(hub id or folder)`); `.text` and `.image` score lists of pairs."""

    spec = CLIP_VIT_L14
    metric = "clip_i"

    @classmethod
    def from_folder(cls, path: str):
        from transformers import CLIPModel, CLIPProcessor

        return CLIPModel.from_pretrained(path, dtype=torch.float32), CLIPProcessor.from_pretrained(path)

    @property
    def features_name(self) -> str:
        return f"clip {self.source} projected image embedding"

    @property
    def max_text_tokens(self) -> int:
        return int(self.model.config.text_config.max_position_embeddings)

    def embed_pixels(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.get_image_features(pixel_values=pixel_values).pooler_output

    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, D) projected text embeddings, captions truncated to CLIP's context (77 tokens)."""
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                tokens = self.processor.tokenizer(list(texts[start:start + self.batch_size]), padding=True,
                                                  truncation=True, max_length=self.max_text_tokens,
                                                  return_tensors="pt").to(self.device)
                out.append(self.model.get_text_features(input_ids=tokens["input_ids"],
                                                        attention_mask=tokens["attention_mask"]
                                                        ).pooler_output.float().cpu())
        return torch.cat(out)

    def text(self, images: Sequence[ImageLike], texts: Sequence[str]) -> list[float]:
        """`clip_t` of each image with its text: 100 x max(cos, 0)."""
        check_pairs(images, texts, "clip_t")
        if not images:
            return []
        image = torch.nn.functional.normalize(self.features(list(images)).double(), dim=-1)
        text = torch.nn.functional.normalize(self.text_features(list(texts)).double(), dim=-1)
        return (100.0 * (image * text).sum(-1)).clamp(min=0).tolist()
