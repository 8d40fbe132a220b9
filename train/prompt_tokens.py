"""Whether the training prompts fit T5's `model.max_sequence_length`: said once, in one line.

FLUX reads each prompt through two text encoders. CLIP gives only a pooled summary of the first
77 tokens; VisualCloze prompts are longer by design and the rest is dropped, as in the reference
(nothing to report). T5 gives the token sequence the transformer attends to, cut at
`model.max_sequence_length` (at most 512): words past the cut never reach the model. transformers
("Token indices sequence length is longer than ...") and diffusers ("The following part of your
input was truncated ...") warn about both cuts alike on every step, and diffusers names the wrong
words for T5 (it slices at CLIP's 77). Those are hidden (`graph200k.quiet`, `train.trainer`); this
counts the prompts' T5 tokens with the pipeline's own tokenizer and describes the first cut.
"""

from __future__ import annotations

from typing import Any, Iterable

SHOWN_CHARS = 80  # of the cut text, in the line


class T5Truncation:
    """`check(prompts)`: the line to log for the first prompt T5 cuts, once per instance; else None."""

    def __init__(self, tokenizer: Any, max_sequence_length: int):
        self.tokenizer, self.max_tokens = tokenizer, max_sequence_length
        self.reported = False

    def check(self, prompts: Iterable[str]) -> str | None:
        if self.reported:
            return None
        for prompt in prompts:
            ids = self.tokenizer(prompt, truncation=False).input_ids  # ends with </s>
            if len(ids) <= self.max_tokens:
                continue
            self.reported = True
            kept = self.max_tokens - 1  # the cut sequence still ends with </s>, as diffusers tokenizes it
            cut = self.tokenizer.decode(ids[kept:-1], skip_special_tokens=True).strip()
            shown = cut if len(cut) <= SHOWN_CHARS else cut[:SHOWN_CHARS] + "..."
            return (f"T5 prompts are cut at model.max_sequence_length={self.max_tokens} tokens: the first cut one has "
                    f"{len(ids)}, so the model never reads its last {len(ids) - 1 - kept} ({shown!r}); raise "
                    "model.max_sequence_length (FLUX's T5 takes up to 512) to keep them (said once per run)")
        return None
