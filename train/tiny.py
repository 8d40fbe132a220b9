"""`python -m train.tiny --out DIR`: a tiny, randomly initialised FLUX.1-Fill pipeline, offline.

Same classes and the same Fill contract as black-forest-labs/FLUX.1-Fill-dev (transformer
in_channels 384 = 64 latent + 64 masked-image latent + 256 folded mask, out_channels 64,
guidance embedding; a VAE with 16 latent channels, an 8x scale factor and the Flux
shift/scaling factors; CLIP + T5 text encoders), so the trainer, the tests and other stages
load it through the very `from_pretrained` path they use for the real model. The tokenizers
are built here from a tiny vocabulary with the `tokenizers`-backed transformers classes:
nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxFillPipeline, FluxTransformer2DModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel, T5Tokenizer

from graph200k.quiet import add_verbose_argument
from graph200k.quiet import configure as configure_output

# FLUX.1-dev VAE latent normalisation (vae/config.json of the real model).
FLUX_VAE_SHIFT = 0.1159
FLUX_VAE_SCALE = 0.3611
TEXT_DIM = 32  # T5 d_model == transformer joint_attention_dim; CLIP hidden == pooled_projection_dim
T5_MAX_LENGTH = 512
CLIP_MAX_LENGTH = 77

# Words the tokenizers know as whole pieces (anything else falls back to letters).
_WORDS = (
    "a the of in on and with to is grid layout rows columns images image row column last depicts "
    "depth edge canny map normal pose segmentation mask style reference target generate "
    "photo picture from this that each arranged side by displaying"
).split()


def _byte_alphabet() -> list[str]:
    """GPT-2/CLIP byte-to-unicode table: the 256 printable stand-ins for raw bytes."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def build_clip_tokenizer() -> CLIPTokenizer:
    """A byte-level BPE CLIP tokenizer: every byte with and without `</w>`, plus a few merged words."""
    vocab: dict[str, int] = {}
    for ch in _byte_alphabet():
        vocab.setdefault(ch, len(vocab))
    for ch in _byte_alphabet():
        vocab.setdefault(ch + "</w>", len(vocab))
    merges: list[tuple[str, str]] = []
    for word in _WORDS:
        # Left-to-right merges build each known word as one token.
        piece = word[0]
        for i, ch in enumerate(word[1:], start=1):
            right = ch + ("</w>" if i == len(word) - 1 else "")
            merges.append((piece, right))
            piece = piece + right
            vocab.setdefault(piece, len(vocab))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab.setdefault(special, len(vocab))
    merges = list(dict.fromkeys(merges))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=CLIP_MAX_LENGTH)


def build_t5_tokenizer() -> T5Tokenizer:
    """A Unigram T5 tokenizer (pad=0, eos=1, unk=2) over letters, digits and a few words."""
    pieces: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    for word in _WORDS:
        pieces.append(("▁" + word, -3.0))
    for ch in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,:;'()[]<>-+=/!?\"&_":
        pieces.append((ch, -5.0))
        pieces.append(("▁" + ch, -5.5))
    pieces = list(dict(pieces).items())
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=T5_MAX_LENGTH)


def build_tiny_pipeline(seed: int = 0) -> FluxFillPipeline:
    """All seven FluxFillPipeline components at toy size (a few hundred thousand parameters)."""
    torch.manual_seed(seed)
    clip_tok, t5_tok = build_clip_tokenizer(), build_t5_tokenizer()
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=384,
        out_channels=64,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=4,
        joint_attention_dim=TEXT_DIM,
        pooled_projection_dim=TEXT_DIM,
        guidance_embeds=True,
        axes_dims_rope=(4, 6, 6),
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 8, 8),  # four blocks: the 8x scale factor Fill's mask folding assumes
        layers_per_block=1,
        latent_channels=16,
        norm_num_groups=4,
        sample_size=64,
        shift_factor=FLUX_VAE_SHIFT,
        scaling_factor=FLUX_VAE_SCALE,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )
    clip = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(clip_tok),
            hidden_size=TEXT_DIM,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=CLIP_MAX_LENGTH,
            projection_dim=TEXT_DIM,
            bos_token_id=clip_tok.bos_token_id,
            eos_token_id=clip_tok.eos_token_id,
            pad_token_id=clip_tok.pad_token_id,
        )
    )
    t5 = T5EncoderModel(
        T5Config(
            vocab_size=len(t5_tok),
            d_model=TEXT_DIM,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            feed_forward_proj="gated-gelu",
            pad_token_id=t5_tok.pad_token_id,
            eos_token_id=t5_tok.eos_token_id,
        )
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        base_image_seq_len=256, base_shift=0.5, max_image_seq_len=4096, max_shift=1.15, shift=1.0,
        use_dynamic_shifting=True,
    )
    return FluxFillPipeline(
        scheduler=scheduler,
        vae=vae.eval(),
        text_encoder=clip.eval(),
        tokenizer=clip_tok,
        text_encoder_2=t5.eval(),
        tokenizer_2=t5_tok,
        transformer=transformer,
    )


def atomic_dir(out: str | os.PathLike, build: Callable[[Path], None]) -> Path:
    """Run `build(tmp)` on a temp dir beside `out`, then rename it into place: a killed build
    never leaves a half-written folder under the final name."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        build(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def save_tiny_pipeline(out: str | os.PathLike, seed: int = 0) -> Path:
    """Write the pipeline with `save_pretrained`, atomically (see `atomic_dir`)."""
    return atomic_dir(out, lambda tmp: build_tiny_pipeline(seed).save_pretrained(tmp))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.tiny", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder to write the pipeline to (replaced if it exists)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random initialisation")
    add_verbose_argument(parser)
    args = parser.parse_args(argv)
    configure_output(args.verbose)
    path = save_tiny_pipeline(args.out, args.seed)
    print(f"tiny FluxFillPipeline written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
