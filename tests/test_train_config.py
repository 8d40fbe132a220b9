"""`python -m train` configuration: shipped configs, overrides, errors that name the key, --help, the CLI run."""

from pathlib import Path

import pytest

from train.__main__ import main
from train.config import ConfigError, flat_defaults, load_config
from train.tiny import build_tiny_pipeline

REPO = Path(__file__).resolve().parents[1]


def test_shipped_configs_carry_the_paper_settings():
    for name, resolution in (("visualcloze_384.yaml", 384), ("visualcloze_512.yaml", 512)):
        cfg = load_config(REPO / "configs" / name)
        assert cfg.model.pretrained == "black-forest-labs/FLUX.1-Fill-dev"
        assert cfg.data.resolution == resolution and max(cfg.data.rows) == 3  # up to 2 in-context rows
        assert (cfg.lora.rank, cfg.optim.lr, cfg.optim.grad_clip) == (256, 1e-4, 2.0)
        assert cfg.train.mixed_precision == "bf16" and cfg.model.gradient_checkpointing
        assert cfg.gradient_accumulation(1) == 64 and cfg.gradient_accumulation(8) == 8
    smoke = load_config(REPO / "configs" / "smoke.yaml")
    assert smoke.train.mixed_precision == "no" and smoke.data.shards == ["data/demo/shards"]


def test_overrides_are_typed_yaml_values():
    cfg = load_config(REPO / "configs" / "visualcloze_384.yaml",
                      ["optim.lr=5e-5", "data.shards=[a.tar, b.tar]", "lora.alpha=null", "train.mixed_precision=no"])
    assert cfg.optim.lr == 5e-5 and cfg.data.shards == ["a.tar", "b.tar"] and cfg.lora.alpha is None
    assert cfg.train.mixed_precision == "no"  # YAML 1.2: "no" stays a string


@pytest.mark.parametrize("override, key", [
    ("optim.lrr=1", "optim.lrr"),
    ("trian.max_steps=3", "trian"),
    ("optim.lr=fast", "optim.lr"),
    ("train.loss_region=context", "train.loss_region"),
    ("lora.rank=0", "lora.rank"),
    ("data.resolution=100", "data.resolution"),
    ("data.rows={two: 1.0}", "data.rows"),
])
def test_bad_overrides_name_the_key(override, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        load_config(None, [override])


def test_bad_key_in_a_file_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  max_steps: 3\n  global_batch: 8\n")
    with pytest.raises(ConfigError, match="'train.global_batch'"):
        load_config(path)
    assert main(["--config", str(path)]) == 2


def test_batch_that_does_not_split_over_processes_is_named():
    cfg = load_config(None, ["train.global_batch_size=6", "train.micro_batch_size=4"])
    with pytest.raises(ConfigError, match="'train.global_batch_size'"):
        cfg.gradient_accumulation(1)


def test_help_lists_every_key_with_its_default(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for key, _, default in flat_defaults():
        assert key in text and repr(default) in text


@pytest.mark.usefixtures("one_torch_thread", "fresh_accelerate_state")
def test_cli_smoke_run_on_sampler_shards(tmp_path, sampler_shards):
    """The smoke config end to end: GridDataset grids -> steps -> checkpoint, LoRA file, validation PNG."""
    tiny = tmp_path / "tiny"
    build_tiny_pipeline().save_pretrained(tiny)
    out = tmp_path / "run"
    code = main(["--config", str(REPO / "configs" / "smoke.yaml"), f"model.pretrained={tiny}",
                 f"data.shards={sampler_shards}", f"validation.shards={sampler_shards}", f"train.output_dir={out}",
                 "data.resolution=32", "train.max_steps=2", "validation.every=2", "validation.num_inference_steps=2"])
    assert code == 0
    assert (out / "pytorch_lora_weights.safetensors").is_file()
    assert (out / "checkpoints" / "checkpoint-0000002" / "data_state_rank0.pt").is_file()
    assert list((out / "validation" / "step-0000002").glob("grid-*.png"))
