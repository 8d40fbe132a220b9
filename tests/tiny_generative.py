"""Tiny, randomly initialised stand-ins for the generative annotators' weights (test support).

Each folder has the classes, file layout and tensor contracts of the real
repository it stands in for, so the annotators load it through the very
`from_pretrained` / `load_ip_adapter` calls they use for the real weights:

| folder | stands in for |
|---|---|
| `sdxl/` | stabilityai/stable-diffusion-xl-base-1.0 (two CLIP text encoders, UNet with text-time embedding) |
| `controlnet-canny/` | diffusers/controlnet-canny-sdxl-1.0 |
| `ip-adapter/sdxl_models/` | h94/IP-Adapter: `ip-adapter_sdxl.bin` + `image_encoder/` (CLIPVisionModelWithProjection) |
| `flux-redux/` | black-forest-labs/FLUX.1-Redux-dev (SigLIP vision tower + ReduxImageEncoder into the T5 width 4096) |
| `flux-depth/` | black-forest-labs/FLUX.1-Depth-dev (FluxControlPipeline; transformer in_channels 128 = 2 x 16 x 4) |
| `flux-fill/` | black-forest-labs/FLUX.1-Fill-dev (`train.tiny`) |
| `llm/` | Qwen/Qwen2.5-7B-Instruct (Qwen2ForCausalLM, byte-level BPE tokenizer with a ChatML template) |

Flux-Depth keeps the real text widths (T5 4096, CLIP pooled 768) because
Redux's prior writes embeddings of exactly those widths; its transformer and
encoders are otherwise a few layers of width 16-64. Redux's image embedder is
the one large piece (its 3 x 4096 bottleneck is fixed by the class, 50 M
parameters). The language model is random unless `teach_answer` is given: it
is then trained for a few dozen steps to answer every edit prompt with that
one JSON string, so the tests can exercise the annotators' success path; an
untaught model produces the unparseable replies the failure path expects.
Tokenizers are built locally (`train.tiny`); nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import torch

from train.tiny import atomic_dir, build_clip_tokenizer, build_t5_tokenizer, save_tiny_pipeline

from annotators.generative.caption_edit import edit_messages

T5_WIDTH = 4096  # FLUX.1 T5-XXL d_model: Redux writes prompt embeddings of this width
CLIP_POOLED_WIDTH = 768  # FLUX.1 CLIP-L pooled width
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


# --- SDXL + ControlNet + IP-Adapter -----------------------------------------------------------

_UNET_KW = dict(
    block_out_channels=(32, 64), layers_per_block=2, attention_head_dim=(2, 4), use_linear_projection=True,
    addition_embed_type="text_time", addition_time_embed_dim=8, transformer_layers_per_block=(1, 2),
    projection_class_embeddings_input_dim=80,  # 6 time ids x 8 + text_encoder_2 projection 32
    cross_attention_dim=64,  # the two CLIP encoders' hidden states side by side
)


def save_tiny_sdxl(out: Path, seed: int = 0) -> Path:
    """A StableDiffusionXLPipeline folder (no watermarker, no image encoder: IP-Adapter brings its own)."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    def build(tmp: Path) -> None:
        torch.manual_seed(seed)
        tok = build_clip_tokenizer()
        config = CLIPTextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                                num_attention_heads=4, projection_dim=32, max_position_embeddings=77,
                                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                pad_token_id=tok.pad_token_id)
        unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4,
                                    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), **_UNET_KW)
        vae = AutoencoderKL(block_out_channels=(8, 8, 8, 8), in_channels=3, out_channels=3, latent_channels=4,
                            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                            norm_num_groups=4, sample_size=64)
        scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                           steps_offset=1, timestep_spacing="leading")
        pipe = StableDiffusionXLPipeline(vae=vae.eval(), text_encoder=CLIPTextModel(config).eval(),
                                         text_encoder_2=CLIPTextModelWithProjection(config).eval(), tokenizer=tok,
                                         tokenizer_2=tok, unet=unet.eval(), scheduler=scheduler,
                                         add_watermarker=False)
        pipe.save_pretrained(tmp)

    return atomic_dir(Path(out), build)


def save_tiny_controlnet(out: Path, seed: int = 0) -> Path:
    from diffusers import ControlNetModel

    def build(tmp: Path) -> None:
        torch.manual_seed(seed)
        ControlNetModel(in_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                        conditioning_embedding_out_channels=(4, 4, 8, 8),  # three 2x steps: the VAE's 8x
                        **_UNET_KW).save_pretrained(tmp)

    return atomic_dir(Path(out), build)


def save_tiny_ip_adapter(out: Path, sdxl: Path, seed: int = 0) -> Path:
    """`out/sdxl_models/ip-adapter_sdxl.bin` (image_proj + ip_adapter state dicts in the original
    IP-Adapter layout, sized for the UNet of `sdxl`) and `out/sdxl_models/image_encoder/`."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    def build(tmp: Path) -> None:
        torch.manual_seed(seed)
        unet = UNet2DConditionModel.from_pretrained(sdxl, subfolder="unet")
        folder = tmp / "sdxl_models"
        encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
            hidden_size=32, projection_dim=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
            image_size=32, patch_size=8))
        encoder.save_pretrained(folder / "image_encoder")
        cross = unet.config.cross_attention_dim
        tokens = 4  # IP-Adapter (not Plus): four image tokens
        image_proj = {"proj.weight": torch.randn(cross * tokens, encoder.config.projection_dim) * 0.05,
                      "proj.bias": torch.zeros(cross * tokens),
                      "norm.weight": torch.ones(cross), "norm.bias": torch.zeros(cross)}
        ip_adapter, key_id = {}, 1
        for name in unet.attn_processors:  # the order diffusers' loader numbers them in
            if name.endswith("attn1.processor"):
                continue
            block = name.split(".")[0]
            if block == "mid_block":
                hidden = unet.config.block_out_channels[-1]
            elif block == "up_blocks":
                hidden = list(reversed(unet.config.block_out_channels))[int(name.split(".")[1])]
            else:
                hidden = unet.config.block_out_channels[int(name.split(".")[1])]
            ip_adapter[f"{key_id}.to_k_ip.weight"] = torch.randn(hidden, cross) * 0.05
            ip_adapter[f"{key_id}.to_v_ip.weight"] = torch.randn(hidden, cross) * 0.05
            key_id += 2
        torch.save({"image_proj": image_proj, "ip_adapter": ip_adapter}, folder / "ip-adapter_sdxl.bin")

    return atomic_dir(Path(out), build)


# --- Flux: Redux prior, Depth control, Fill ----------------------------------------------------

def save_tiny_flux_redux(out: Path, seed: int = 0) -> Path:
    from diffusers import FluxPriorReduxPipeline
    from diffusers.pipelines.flux.modeling_flux import ReduxImageEncoder
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    def build(tmp: Path) -> None:
        torch.manual_seed(seed)
        vision = SiglipVisionModel(SiglipVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                                                      num_attention_heads=4, image_size=32, patch_size=8))
        processor = SiglipImageProcessor(size={"height": 32, "width": 32}, do_resize=True)
        embedder = ReduxImageEncoder(redux_dim=32, txt_in_features=T5_WIDTH)
        FluxPriorReduxPipeline(image_encoder=vision.eval(), feature_extractor=processor,
                               image_embedder=embedder.eval()).save_pretrained(tmp)

    return atomic_dir(Path(out), build)


def save_tiny_flux_depth(out: Path, seed: int = 0) -> Path:
    """A FluxControlPipeline folder shaped like FLUX.1-Depth-dev: control latents are concatenated
    to the image latents, so the transformer takes 2 x 64 packed channels."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxControlPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from train.tiny import FLUX_VAE_SCALE, FLUX_VAE_SHIFT

    def build(tmp: Path) -> None:
        torch.manual_seed(seed)
        clip_tok, t5_tok = build_clip_tokenizer(), build_t5_tokenizer()
        transformer = FluxTransformer2DModel(
            patch_size=1, in_channels=128, out_channels=64, num_layers=1, num_single_layers=1,
            attention_head_dim=16, num_attention_heads=2, joint_attention_dim=T5_WIDTH,
            pooled_projection_dim=CLIP_POOLED_WIDTH, guidance_embeds=True, axes_dims_rope=(4, 6, 6))
        vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8, 8, 8, 8),
                            layers_per_block=1, latent_channels=16, norm_num_groups=4, sample_size=64,
                            shift_factor=FLUX_VAE_SHIFT, scaling_factor=FLUX_VAE_SCALE,
                            use_quant_conv=False, use_post_quant_conv=False)
        clip = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(clip_tok), hidden_size=CLIP_POOLED_WIDTH, intermediate_size=16, num_hidden_layers=1,
            num_attention_heads=2, max_position_embeddings=77, projection_dim=32,
            bos_token_id=clip_tok.bos_token_id, eos_token_id=clip_tok.eos_token_id, pad_token_id=clip_tok.pad_token_id))
        t5 = T5EncoderModel(T5Config(
            vocab_size=len(t5_tok), d_model=T5_WIDTH, d_kv=8, d_ff=16, num_layers=1, num_heads=2,
            relative_attention_num_buckets=8, feed_forward_proj="gated-gelu",
            pad_token_id=t5_tok.pad_token_id, eos_token_id=t5_tok.eos_token_id))
        scheduler = FlowMatchEulerDiscreteScheduler(base_image_seq_len=256, base_shift=0.5, max_image_seq_len=4096,
                                                    max_shift=1.15, shift=1.0, use_dynamic_shifting=True)
        FluxControlPipeline(scheduler=scheduler, vae=vae.eval(), text_encoder=clip.eval(), tokenizer=clip_tok,
                            text_encoder_2=t5.eval(), tokenizer_2=t5_tok,
                            transformer=transformer.eval()).save_pretrained(tmp)

    return atomic_dir(Path(out), build)


# --- the caption-rewriting language model -----------------------------------------------------

def build_chat_tokenizer(known_texts: Iterable[str] = ()):
    """A byte-level BPE tokenizer with a ChatML template: every byte is a token, and every word of
    `known_texts` is merged into one token (short sequences keep the tiny model fast)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from train.tiny import _byte_alphabet

    pre = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    vocab = {ch: i for i, ch in enumerate(_byte_alphabet())}
    merges: list[tuple[str, str]] = []
    for text in known_texts:
        for piece, _ in pre.pre_tokenize_str(text):
            built = piece[0]
            for ch in piece[1:]:
                if built + ch not in vocab:
                    merges.append((built, ch))
                    vocab[built + ch] = len(vocab)
                built = built + ch
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tokenizer.pre_tokenizer = pre
    tokenizer.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=["<|im_start|>"])
    fast.chat_template = CHATML_TEMPLATE
    return fast


def teach(model, tokenizer, prompts: Iterable[str], answer: str, steps: int = 60, lr: float = 3e-3) -> None:
    """Train `model` to reply `answer` (then end-of-turn) after each chat prompt: loss on the answer only."""
    model.train()
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    answer_ids = tokenizer(answer + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    batches = []
    for prompt in prompts:
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt_ids + answer_ids])
        labels = ids.clone()
        labels[0, : len(prompt_ids)] = -100
        batches.append((ids, labels))
    for step in range(steps):
        ids, labels = batches[step % len(batches)]
        loss = model(input_ids=ids, labels=labels).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()


def save_tiny_llm(out: Path, seed: int = 0, teach_answer: str | None = None,
                  teach_captions: Iterable[str] = (), teach_steps: int = 60) -> Path:
    """A Qwen2ForCausalLM with a local tokenizer; taught to answer `teach_answer` when given."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    def build(tmp: Path) -> None:
        torch.manual_seed(seed)
        captions = list(teach_captions)
        known = [m["content"] for c in captions[:1] or ["a caption"] for m in edit_messages(c, "object")]
        known += [edit_messages("a caption", "scene")[1]["content"], *captions, teach_answer or ""]
        tok = build_chat_tokenizer(known)
        model = Qwen2ForCausalLM(Qwen2Config(
            vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=4096, eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id, tie_word_embeddings=True))
        if teach_answer is not None:
            prompts = [tok.apply_chat_template(edit_messages(c, kind), tokenize=False, add_generation_prompt=True)
                       for c in captions for kind in ("object", "scene")]
            teach(model, tok, prompts, teach_answer, steps=teach_steps)
        model.generation_config.eos_token_id = tok.eos_token_id
        model.generation_config.pad_token_id = tok.pad_token_id
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)

    return atomic_dir(Path(out), build)


def save_tiny_generative(out: str | os.PathLike, seed: int = 0, teach_answer: str | None = None,
                         teach_captions: Iterable[str] = ()) -> dict[str, Path]:
    """Every stand-in under `out`; returns the paths by folder name."""
    out = Path(out)
    paths = {
        "sdxl": save_tiny_sdxl(out / "sdxl", seed),
        "controlnet-canny": save_tiny_controlnet(out / "controlnet-canny", seed),
    }
    paths["ip-adapter"] = save_tiny_ip_adapter(out / "ip-adapter", paths["sdxl"], seed)
    paths["flux-redux"] = save_tiny_flux_redux(out / "flux-redux", seed)
    paths["flux-depth"] = save_tiny_flux_depth(out / "flux-depth", seed)
    paths["flux-fill"] = save_tiny_pipeline(out / "flux-fill", seed)
    paths["llm"] = save_tiny_llm(out / "llm", seed, teach_answer, teach_captions)
    return paths
