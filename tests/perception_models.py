"""Tiny randomly initialised models of the real classes, saved the way the published weights are laid out.

Each builder writes `<root>/<repo_id>/...` so an annotator given
`model_dir=<root>` loads it through the same `from_pretrained` code as the
real weights. controlnet_aux nets have fixed architectures: their random
state dicts are drawn without a real initialisation and saved in fp16 (half
the disk; `load_state_dict` casts back to fp32).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from annotators.perception.depth import DEPTH_ANYTHING_V2_LARGE
from annotators.perception.foreground import BIREFNET
from annotators.perception.grounding import QWEN25_VL_7B
from annotators.perception.hed import LLLYASVIEL_ANNOTATORS
from annotators.perception.sam2_masks import SAM2_LARGE
from annotators.perception.semantic import UPERNET_CONVNEXT_ADE20K


def _random_state(build) -> dict:
    """A random fp16 state dict for the module `build()` makes, without initialising it for real:
    built on the meta device, each tensor drawn fresh (positive running variances, zero counters)."""
    with torch.device("meta"):
        module = build()
    state = {}
    for key, value in module.state_dict().items():
        if not value.is_floating_point():
            state[key] = torch.zeros(value.shape, dtype=value.dtype)
        elif key.endswith("running_var"):
            state[key] = torch.ones(value.shape, dtype=torch.float16)
        else:
            state[key] = (torch.randn(value.shape) * 0.05).half()
    return state


def lllyasviel_annotators(root: Path) -> Path:
    """ControlNetHED.pth, mlsd_large_512_fp32.pth, body_pose_model.pth and scannet.pt with random weights."""
    import types

    from controlnet_aux.hed import ControlNetHED_Apache2
    from controlnet_aux.mlsd.models.mbv2_mlsd_large import MobileV2_MLSD_Large
    from controlnet_aux.normalbae.nets.NNET import NNET
    from controlnet_aux.open_pose.model import bodypose_model

    folder = root / LLLYASVIEL_ANNOTATORS
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(_random_state(ControlNetHED_Apache2), folder / "ControlNetHED.pth")
    torch.save(_random_state(MobileV2_MLSD_Large), folder / "mlsd_large_512_fp32.pth")
    body = _random_state(bodypose_model)  # the published file names layers without their block prefix
    torch.save({k.split(".", 1)[1]: v for k, v in body.items()}, folder / "body_pose_model.pth")
    args = types.SimpleNamespace(mode="client", architecture="BN", pretrained="scannet", sampling_ratio=0.4,
                                 importance_ratio=0.7)
    torch.save({"model": _random_state(lambda: NNET(args))}, folder / "scannet.pt")
    return folder


def depth_anything(root: Path) -> Path:
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    folder = root / DEPTH_ANYTHING_V2_LARGE.repo_id
    backbone = Dinov2Config(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                            patch_size=14, image_size=28, out_features=["stage1", "stage2"],
                            reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=16, reassemble_factors=[2, 1],
                                 neck_hidden_sizes=[8, 16], fusion_hidden_size=8, head_hidden_size=8)
    torch.manual_seed(0)
    DepthAnythingForDepthEstimation(config).save_pretrained(folder)
    DPTImageProcessor(size={"height": 28, "width": 28}, keep_aspect_ratio=True, ensure_multiple_of=14,
                      do_pad=False).save_pretrained(folder)
    return folder


def upernet(root: Path) -> Path:
    from transformers import ConvNextConfig, SegformerImageProcessor, UperNetConfig, UperNetForSemanticSegmentation

    folder = root / UPERNET_CONVNEXT_ADE20K.repo_id
    backbone = ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, out_features=["stage1", "stage2"])
    config = UperNetConfig(backbone_config=backbone, hidden_size=16, use_auxiliary_head=False, num_labels=150,
                           pool_scales=[1, 2])
    torch.manual_seed(0)
    UperNetForSemanticSegmentation(config).save_pretrained(folder)
    SegformerImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def sam2(root: Path, side: int = 64) -> Path:
    """A Sam2Model with a 4-stage Hiera of 8..64 channels on `side`-pixel inputs (~120k parameters)."""
    from transformers import Sam2Config, Sam2ImageProcessor, Sam2Model, Sam2Processor

    folder = root / SAM2_LARGE.repo_id
    s = side
    config = Sam2Config(
        vision_config=dict(
            backbone_config=dict(model_type="sam2_hiera_det_model", hidden_size=8, embed_dim_per_stage=[8, 16, 32, 64],
                                 num_attention_heads_per_stage=[1, 1, 1, 1], blocks_per_stage=[1, 1, 2, 1],
                                 global_attention_blocks=[3], window_size_per_stage=[4, 4, 2, 2],
                                 window_positional_embedding_background_size=[2, 2], image_size=[s, s]),
            backbone_channel_list=[64, 32, 16, 8], backbone_feature_sizes=[[s // 4] * 2, [s // 8] * 2, [s // 16] * 2],
            fpn_hidden_size=32),
        prompt_encoder_config=dict(hidden_size=32, image_size=s, mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=32, mlp_dim=32, num_attention_heads=2, iou_head_hidden_dim=16),
    )
    torch.manual_seed(0)
    Sam2Model(config).save_pretrained(folder)
    processor = Sam2Processor(image_processor=Sam2ImageProcessor(size={"height": s, "width": s},
                                                                 mask_size={"height": s // 4, "width": s // 4}),
                              target_size=s)
    processor.save_pretrained(folder)
    return folder


CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>"]


def qwen25_vl(root: Path, scripted_answer: str | None = None) -> Path:
    """A 2-layer, 16-wide Qwen2_5_VLForConditionalGeneration with a character-level tokenizer built locally.

    A random model prints noise. With `scripted_answer`, the saved generation
    config carries a `sequence_bias` that makes the real `generate()` print
    exactly that answer after the assistant turn starts (each next character
    is boosted only after the answer's prefix), so the success path runs
    through the same loading and generation code as the real model."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import (PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration,
                              Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor)

    folder = root / QWEN25_VL_7B.repo_id
    vocab = {c: i for i, c in enumerate([chr(i) for i in range(32, 127)] + ["\n"])}
    for token in SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="?"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tokenizer.decoder = decoders.Fuse()
    tokenizer.add_special_tokens(SPECIAL_TOKENS)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    processor = Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(min_pixels=28 * 28, max_pixels=56 * 56),
                                    tokenizer=fast, video_processor=Qwen2VLVideoProcessor(),
                                    chat_template=CHAT_TEMPLATE)
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [1, 1, 2]},
                         bos_token_id=vocab["<|endoftext|>"], eos_token_id=vocab["<|im_end|>"],
                         pad_token_id=vocab["<|endoftext|>"]),
        vision_config=dict(depth=1, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=16,
                           fullatt_block_indexes=[0], window_size=28),
        image_token_id=vocab["<|image_pad|>"], video_token_id=vocab["<|video_pad|>"],
        vision_start_token_id=vocab["<|vision_start|>"], vision_end_token_id=vocab["<|vision_end|>"])
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config)
    if scripted_answer is not None:
        prompt_tail = [vocab[c] for c in "assistant\n"]
        script = [vocab[c] for c in scripted_answer] + [vocab["<|im_end|>"]]
        model.generation_config.sequence_bias = [[prompt_tail + script[: i + 1], 1000.0] for i in range(len(script))]
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


BIREFNET_CODE = '''"""A two-conv stand-in with BiRefNet's remote-code interface: forward(x) returns a list of maps, the last final."""
import torch
from transformers import PretrainedConfig, PreTrainedModel


class TinyBiRefNetConfig(PretrainedConfig):
    model_type = "tiny_birefnet"


class TinyBiRefNet(PreTrainedModel):
    config_class = TinyBiRefNetConfig

    def __init__(self, config):
        super().__init__(config)
        self.coarse = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.fine = torch.nn.Conv2d(4, 1, 3, padding=1)
        self.post_init()

    def forward(self, x):
        coarse = torch.relu(self.coarse(x))
        return [coarse.mean(1, keepdim=True), self.fine(coarse)]
'''


def birefnet_remote_code(root: Path) -> Path:
    """A model folder that loads only through trust_remote_code, as ZhengPeng7/BiRefNet does."""
    import importlib.util
    import sys

    folder = root / BIREFNET.repo_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny_birefnet.py").write_text(BIREFNET_CODE)
    spec = importlib.util.spec_from_file_location("tiny_birefnet_build", folder / "tiny_birefnet.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    model = module.TinyBiRefNet(module.TinyBiRefNetConfig())
    model.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "tiny_birefnet.TinyBiRefNetConfig",
                          "AutoModelForImageSegmentation": "tiny_birefnet.TinyBiRefNet"}
    (folder / "config.json").write_text(json.dumps(config))
    return folder
