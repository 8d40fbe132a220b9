"""A transformers causal LM that rewrites a caption into a `CaptionEdit` (shared by FillEdit and DepthEdit).

Any chat model loadable with `AutoModelForCausalLM` works (default
Qwen/Qwen2.5-7B-Instruct, Apache-2.0); the prompt is applied with the
tokenizer's chat template, decoding is greedy (the rewrite of a caption is a
function of the caption and the model), and the reply is parsed by
`caption_edit.parse_caption_edit`, whose `EditParseError` fails only that sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .caption_edit import CaptionEdit, edit_messages, parse_caption_edit
from .generation import GenerationSettings
from ..models.weights import TRANSFORMERS_FILES, TRANSFORMERS_WEIGHTS, ModelSpec

DEFAULT_LLM = "Qwen/Qwen2.5-7B-Instruct"
LLM_SPEC = ModelSpec(DEFAULT_LLM, "main", "Apache-2.0", ("config.json", "tokenizer_config.json"), TRANSFORMERS_FILES,
                     any_of=TRANSFORMERS_WEIGHTS, role="llm")
"""The caption-rewriting model (`--set fill_edit.llm=...` takes any chat causal LM)."""


@dataclass(frozen=True)
class CaptionRewriteSettings(GenerationSettings):
    """The settings of a generative annotator that rewrites the caption first (FillEdit, DepthEdit)."""

    llm: str | None = None
    """Another chat causal LM (hub id or folder) for the caption rewrite."""
    llm_max_new_tokens: int = 512


class CaptionRewriter:
    """Load once, then `rewrite(caption, kind)` per sample."""

    def __init__(self, model: str = DEFAULT_LLM, revision: str | None = None, max_new_tokens: int = 512):
        self.model_name, self.revision, self.max_new_tokens = model, revision, max_new_tokens
        self.model: Any = None
        self.tokenizer: Any = None

    def load(self, device: str, dtype: Any) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.model_name, revision=self.revision)
        self.model = AutoModelForCausalLM.from_pretrained(self.model_name, revision=self.revision, dtype=dtype)
        self.model.to(device).eval()

    def prompt_ids(self, caption: str, kind: str, item: str | None = None) -> Any:
        messages = edit_messages(caption, kind, item)
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                      return_dict=True)
        text = "\n\n".join(m["content"] for m in messages) + "\n\n"
        return self.tokenizer(text, return_tensors="pt")

    def reply(self, caption: str, kind: str, item: str | None = None) -> str:
        """The model's raw answer to the edit prompt."""
        import torch

        if self.model is None:
            raise RuntimeError("CaptionRewriter.load() was not called")
        inputs = self.prompt_ids(caption, kind, item).to(self.model.device)
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False,
                                      pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
        return self.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)

    def rewrite(self, caption: str, kind: str, item: str | None = None) -> CaptionEdit:
        """The parsed edit; raises `EditParseError` (naming the problem) when the reply is not one."""
        return parse_caption_edit(self.reply(caption, kind, item), original_caption=caption)
