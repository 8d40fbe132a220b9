"""One source for each default: the trainer's config sections are the settings objects the code runs
with (`train` is the loss's `FlowSettings`, `data.instruction`/`data.row_sharing` are the sampler's
classes), and every sampling default (model, steps, guidance, resolution, T5 length) is
`inference.settings.SamplingSettings`', whatever reads it: `generate`, `evaluate`, the trainer's validation."""

import subprocess
import sys

import pytest

import sampler
from inference.cli import build_parser
from inference.evaluate import EvaluateSettings
from inference.settings import GenerateSettings, SamplingSettings
from train.config import ConfigError, FlowSettings, load_config
from tests.conftest import REPO


def test_the_train_section_is_the_flow_settings_the_loss_takes():
    from train import flow

    assert flow.FlowSettings is FlowSettings  # one class: train/flow.py declares no settings of its own
    cfg = load_config(None, ["train.loss_region=masked", "train.resolution_shift=true", "train.logit_std=0.5"])
    assert isinstance(cfg.train, FlowSettings)
    assert (cfg.train.loss_region, cfg.train.resolution_shift, cfg.train.logit_std) == ("masked", True, 0.5)
    assert load_config().train.guidance == FlowSettings().guidance == 1.0


def test_the_data_sections_are_the_samplers_classes_and_judge_their_values():
    cfg = load_config(None, ["data.instruction.p_drop=0.25", "data.row_sharing.style=prefer_same"])
    assert cfg.data.instruction == sampler.InstructionConfig(p_drop=0.25)
    assert cfg.data.row_sharing == sampler.RowSharing(style="prefer_same")
    with pytest.raises(ConfigError, match=r"config key 'data.instruction.p_task': instruction p_task must be"):
        load_config(None, ["data.instruction.p_task=1.5"])  # the sampler's own rule, under the config key


def test_sampling_defaults_have_one_source():
    d = SamplingSettings()
    cfg = load_config()
    assert (cfg.model.pretrained, cfg.model.max_sequence_length) == (d.model, d.max_sequence_length)
    assert (cfg.validation.num_inference_steps, cfg.validation.guidance) == (d.num_inference_steps, d.guidance_scale)
    generate = build_parser().parse_args(["generate", "--out", "x"])
    from inference import evaluate

    ev = build_parser(evaluate).parse_args(["evaluate", "--shards", "s", "--lora", "none", "--out", "x"])
    for args in (generate, ev):
        assert (args.model, args.steps, args.guidance, args.resolution, args.max_sequence_length, args.seed) == (
            d.model, d.num_inference_steps, d.guidance_scale, d.resolution, d.max_sequence_length, d.seed)
    assert isinstance(GenerateSettings(), SamplingSettings)
    assert isinstance(EvaluateSettings(shards="s", out="o", lora=None, baseline=None), SamplingSettings)


def test_records_keep_their_keys():
    """generate.json, item.json and report.json were written with `steps` and `guidance`: they still are."""
    s = GenerateSettings(num_inference_steps=4, guidance_scale=2.5)
    assert s.record() == {"model": s.model, "steps": 4, "guidance": 2.5, "seed": 0, "resolution": 384}


def test_train_help_imports_no_torch():
    """The config imports the sampler's and inference's light modules; `--help` must stay instant."""
    code = "import sys, train.__main__; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0
