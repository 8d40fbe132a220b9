"""Grounded masks as Graph200K's `qwen_2_5_mask`: Qwen2.5-VL boxes the caption's main objects, SAM2 segments them.

1. `Qwen2_5_VLForConditionalGeneration` reads the image and its caption and
   prints JSON boxes (batched generation, greedy, left padding).
2. `annotators.perception.qwen_boxes` rescales them from the processor's resized input
   (`image_grid_thw` x patch size) to the image, clips and drops empty ones.
3. `Sam2Model` is prompted with the boxes (one mask per box).

Outputs: `grounded_mask.png`, each object a distinct colour on black (larger
first); `grounded_bbox.png`, the same objects as filled boxes in the same
colours on black; and metadata (labels, boxes in pixels, colours, SAM2
scores) in the sample's JSON under `grounded_mask`. A sample whose answer is
malformed, or names no object, fails alone with the reason in the errors record.
On CUDA Qwen2.5-VL runs in bf16 and SAM2 (fp32 weights) under bf16 autocast; fp32 on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..base import NODE_METADATA, SampleInput, WithExtras
from .colour_masks import render_masks
from ..models.model_backed import ModelBackedAnnotator, ModelSettings
from .qwen_boxes import BoxParseError, GroundedBox, parse_qwen_boxes
from .sam2_masks import SAM2_LARGE
from ..models.torch_runtime import inference, weights_dtype
from ..models.weights import TRANSFORMERS_WEIGHTS, ModelSpec

QWEN25_VL_7B = ModelSpec(
    "Qwen/Qwen2.5-VL-7B-Instruct", "cc594898137f460bfe9f0759e9844b3ce807cfb5", "Apache-2.0",
    required=("config.json", "tokenizer_config.json"), any_of=TRANSFORMERS_WEIGHTS,
    role="grounder")

PROMPT = ('Locate the main objects described in this caption of the image and output their bounding boxes '
          'in JSON format: [{{"bbox_2d": [x1, y1, x2, y2], "label": "object name"}}].\nCaption: {caption}')
PROMPT_NO_CAPTION = ('Locate the main objects in the image and output their bounding boxes in JSON format: '
                     '[{"bbox_2d": [x1, y1, x2, y2], "label": "object name"}].')


class GroundingError(RuntimeError):
    """A sample whose grounding found no usable object."""


@dataclass(frozen=True)
class GroundingSettings(ModelSettings):
    segmenter: str | None = None
    """Another hub id or local folder for the SAM2 model (default facebook/sam2.1-hiera-large)."""
    max_new_tokens: int = 512
    max_objects: int = 10


def draw_boxes(boxes: Sequence[GroundedBox], colours: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W, 3) uint8: each box filled with its colour on black, larger boxes first."""
    canvas = np.zeros((height, width, 3), np.uint8)
    areas = [(b.box[2] - b.box[0]) * (b.box[3] - b.box[1]) for b in boxes]
    for i in sorted(range(len(boxes)), key=lambda i: -areas[i]):
        x1, y1, x2, y2 = (int(round(v)) for v in boxes[i].box)
        canvas[y1:max(y2, y1 + 1), x1:max(x2, x1 + 1)] = colours[i]
    return canvas


class GroundedSegmentationAnnotator(ModelBackedAnnotator):
    """Qwen2.5-VL-7B-Instruct boxes + SAM 2.1 Hiera-Large masks of the caption's main objects."""

    name = "grounded_segmentation"
    produces = ("grounded_mask",)
    models = (QWEN25_VL_7B, SAM2_LARGE)
    Settings = GroundingSettings
    version = "1"
    batch_size = 4
    num_gpus = 1.0

    def override(self, spec: ModelSpec) -> str | None:
        if spec is SAM2_LARGE:
            return self.settings.segmenter
        return super().override(spec)

    def load(self) -> None:
        from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration, Sam2Model

        dtype = weights_dtype(self.device)
        qwen = self.weights_path(QWEN25_VL_7B)
        self.grounder_processor = AutoProcessor.from_pretrained(qwen)
        self.grounder_processor.tokenizer.padding_side = "left"
        self.grounder = Qwen2_5_VLForConditionalGeneration.from_pretrained(qwen, dtype=dtype).to(self.device).eval()
        sam = self.weights_path(SAM2_LARGE)
        self.segmenter_processor = AutoProcessor.from_pretrained(sam)
        self.segmenter = Sam2Model.from_pretrained(sam).to(self.device).eval()  # fp32 weights, bf16 autocast
        self.dtype = dtype

    # --- 1. boxes ---------------------------------------------------------------------------------
    def ask(self, batch: Sequence[SampleInput]) -> list[tuple[str, tuple[int, int]]]:
        """Per sample: Qwen2.5-VL's answer and the (width, height) of the resized input it saw."""
        processor = self.grounder_processor
        texts = []
        for sample in batch:
            caption = str(sample.meta.get("caption") or "").strip()
            prompt = PROMPT.format(caption=caption) if caption else PROMPT_NO_CAPTION
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
            texts.append(processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
        inputs = processor(text=texts, images=[s.target for s in batch], padding=True, return_tensors="pt")
        inputs = inputs.to(self.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        generated = self.grounder.generate(**inputs, max_new_tokens=self.settings.max_new_tokens, do_sample=False)
        answers = processor.batch_decode(generated[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        patch = processor.image_processor.patch_size
        sizes = [(int(g[2]) * patch, int(g[1]) * patch) for g in inputs["image_grid_thw"].tolist()]
        return list(zip(answers, sizes))

    # --- 2. masks ---------------------------------------------------------------------------------
    def segment(self, image: np.ndarray, boxes: Sequence[GroundedBox]) -> tuple[list[np.ndarray], list[float]]:
        """One boolean (H, W) mask per box from SAM2 prompted with the boxes, and SAM2's IoU estimates."""
        processor = self.segmenter_processor
        inputs = processor(images=[image], input_boxes=[[list(b.box) for b in boxes]], return_tensors="pt")
        with inference(self.device, torch.bfloat16):
            outputs = self.segmenter(pixel_values=inputs["pixel_values"].to(self.device),
                                     input_boxes=inputs["input_boxes"].to(self.device), multimask_output=False)
        masks = processor.post_process_masks(outputs.pred_masks.float().cpu(), inputs["original_sizes"])[0]
        scores = outputs.iou_scores.float().cpu().reshape(-1).tolist()
        return [m[0].numpy().astype(bool) for m in masks], scores[: len(boxes)]

    def render(self, sample: SampleInput, answer: str, input_size: tuple[int, int]) -> dict:
        h, w = sample.target.shape[:2]
        parsed = parse_qwen_boxes(answer, input_size, (w, h))
        boxes = parsed.boxes[: self.settings.max_objects]
        parsed.dropped += [f"{b.label}: beyond max_objects={self.settings.max_objects}"
                           for b in parsed.boxes[self.settings.max_objects:]]
        if not boxes:
            why = f" (dropped: {'; '.join(parsed.dropped)})" if parsed.dropped else ""
            raise GroundingError(f"Qwen2.5-VL grounded no object in this image{why}: {answer.strip()[:160]!r}")
        masks, scores = self.segment(sample.target, boxes)
        mask_image, colours = render_masks(masks, h, w)
        metadata = {
            "model": f"{self.models[0].repo_id} + {self.models[1].repo_id}",
            "objects": [{"label": b.label, "bbox": [int(round(v)) for v in b.box], "colour": c.tolist(),
                         "score": round(float(s), 4)} for b, c, s in zip(boxes, colours, scores)],
            "dropped": parsed.dropped,
        }
        return {"grounded_mask": WithExtras(mask_image, {"grounded_bbox": draw_boxes(boxes, colours, h, w)}),
                NODE_METADATA: {"grounded_mask": metadata}}

    def annotate(self, batch: Sequence[SampleInput]) -> list:
        out: list = []
        with inference(self.device):
            for sample, (answer, size) in zip(batch, self.ask(batch)):
                try:
                    out.append(self.render(sample, answer, size))
                except (BoxParseError, GroundingError) as err:
                    out.append(err)
        return out
