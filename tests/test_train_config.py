"""`python -m train` configuration: shipped configs, overrides, errors that name the key, --help, the CLI run."""

import dataclasses
import inspect
from pathlib import Path

import pytest

from sampler import GridDataset, InstructionConfig, RowSharing
from sampler.settings import GRID_DEFAULTS, GridSettings
from train.__main__ import main
from train.config import ConfigError, flat_defaults, load_config
from train.data import grid_dataset, sampler_settings
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
        assert cfg.data.instruction.p_diffusers == 0.3 and cfg.data.mask_any_prob == 0.5  # spelled out, = defaults
        assert cfg.validation.holdout == 0.01 and not cfg.validation.shards
    smoke = load_config(REPO / "configs" / "smoke.yaml")
    assert smoke.train.mixed_precision == "no" and smoke.data.shards == ["data/demo/shards"]
    assert smoke.validation.holdout == 0.4 and not smoke.validation.shards  # validates on held-out demo keys


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
    ("data.mask_any_prob=1.5", "data.mask_any_prob"),
    ("data.shuffle_columns=maybe", "data.shuffle_columns"),
    ("data.instruction.p_diffusers=2", "data.instruction.p_diffusers"),
    ("data.instruction.p_drop=-0.1", "data.instruction.p_drop"),
    ("data.instruction.p_mask=0.1", "data.instruction.p_mask"),
    ("data.row_sharing.degradation=some", "data.row_sharing.degradation"),
    ("data.row_sharing.style=same", "data.row_sharing.style"),
    ("validation.holdout=1", "validation.holdout"),
    ("data.tasks=reference -> cany -> target", "data.tasks"),
    ("data.tasks=[dense prediction, restoraton]", "data.tasks"),
    ("data.family_weights={restoraton: 2}", "data.family_weights"),
    ("data.family_weights={restoration: -1}", "data.family_weights"),
    ("data.tasks=restoration", "data.family_weights"),  # with the next override: its only family weighs 0
])
def test_bad_overrides_name_the_key(override, key):
    extra = ["data.family_weights={restoration: 0}"] if override == "data.tasks=restoration" else []
    with pytest.raises(ConfigError, match=f"'{key}'"):
        load_config(None, [override, *extra])


def test_task_selection_and_family_weights_reach_the_grid_dataset(sampler_shards):
    """`data.tasks` takes what `graph200k tasks` prints (ids, families, splits, lists); weights are a key."""
    cfg = load_config(None, ["data.tasks=[dense prediction, reference+canny->target, canny->target]",
                             "data.family_weights={dense prediction: 3, conditional generation: 0.5}"])
    ds = grid_dataset([str(sampler_shards)], key="data.shards", resolution=64, seed=0, tasks=cfg.data.tasks,
                      rows=None, pool_size=8, rank=0, world_size=1, **sampler_settings(cfg.data))
    chosen = {t.id for tasks in ds.mix.by_family.values() for t in tasks}
    assert {"reference+canny->target", "canny->target"} <= chosen
    assert set(ds.mix.by_family) == {"dense prediction", "conditional generation",
                                     "conditional generation with reference"}
    assert ds.mix.weights == {"dense prediction": 3.0, "conditional generation": 0.5,
                              "conditional generation with reference": 1.0}
    with pytest.raises(ConfigError, match="did you mean 'dense prediction'"):
        load_config(None, ["data.tasks=dense predictoin"])


def test_sampler_knobs_reach_the_grid_dataset(tmp_path, sampler_shards):
    path = tmp_path / "knobs.yaml"
    path.write_text("data:\n  mask_any_prob: 0.2\n  square_cells: true\n  instruction: {p_drop: 0, p_diffusers: 0.5}\n"
                    "  row_sharing:\n    degradation: none\n    style: prefer_same\n")
    cfg = load_config(path, ["data.shuffle_columns=false", "validation.holdout=0.05"])
    assert cfg.validation.holdout == 0.05
    ds = grid_dataset([str(sampler_shards)], key="data.shards", resolution=64, seed=0, tasks="train", rows=None,
                      pool_size=8, rank=0, world_size=1, **sampler_settings(cfg.data))
    planner = ds.planner
    assert (planner.mask_any_prob, planner.shuffle_columns, planner.square_cells) == (0.2, False, True)
    assert planner.instruction == InstructionConfig(p_task=0.8, p_content=0.8, p_drop=0.0, p_diffusers=0.5)
    assert planner.sharing == RowSharing(degradation="none", style="prefer_same")


def test_config_defaults_are_the_samplers():
    cfg = load_config()
    assert type(cfg.data.instruction) is InstructionConfig and cfg.data.instruction == InstructionConfig()
    assert type(cfg.data.row_sharing) is RowSharing and cfg.data.row_sharing == RowSharing()
    assert isinstance(cfg.data, GridSettings)  # the data section IS the sampler's settings: one default each
    defaults = inspect.signature(GridDataset).parameters
    for f in dataclasses.fields(GridSettings):
        assert getattr(cfg.data, f.name) == defaults[f.name].default == getattr(GRID_DEFAULTS, f.name), f.name


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
    for key in ("data.mask_any_prob", "data.shuffle_columns", "data.square_cells", "data.instruction.p_diffusers",
                "data.row_sharing.degradation", "data.row_sharing.style", "validation.holdout"):
        assert key in text


@pytest.mark.usefixtures("one_torch_thread", "fresh_accelerate_state")
def test_cli_smoke_run_on_sampler_shards(tmp_path, sampler_shards):
    """The smoke config end to end: GridDataset grids -> steps -> checkpoint, LoRA file, validation PNG."""
    tiny = tmp_path / "tiny"
    build_tiny_pipeline().save_pretrained(tiny)
    out = tmp_path / "run"
    code = main(["--config", str(REPO / "configs" / "smoke.yaml"), f"model.pretrained={tiny}",
                 f"data.shards={sampler_shards}", f"train.output_dir={out}",  # validates on its held-out keys
                 "data.resolution=32", "train.max_steps=2", "validation.every=2", "validation.num_inference_steps=2"])
    assert code == 0
    assert (out / "pytorch_lora_weights.safetensors").is_file()
    assert (out / "checkpoints" / "checkpoint-0000002" / "trainer_state_rank0.json").is_file()
    assert list((out / "validation" / "step-0000002").glob("grid-*.png"))


@pytest.mark.parametrize("override, key", [
    ("optim.lr=-1e-4", "optim.lr"),
    ("optim.lr=.nan", "optim.lr"),
    ("optim.lr=0", "optim.lr"),
    ("optim.eps=0", "optim.eps"),
    ("optim.beta1=1", "optim.beta1"),
    ("optim.beta2=-0.1", "optim.beta2"),
    ("optim.weight_decay=-0.01", "optim.weight_decay"),
    ("optim.grad_clip=.inf", "optim.grad_clip"),
    ("optim.warmup_steps=-5", "optim.warmup_steps"),
])
def test_optimizer_numbers_are_checked_before_the_model_loads(override, key, tmp_path, capsys):
    with pytest.raises(ConfigError, match=f"config key '{key}': must be a finite number"):
        load_config(None, [override])
    # the CLI says so and stops: the pipeline named here does not even exist
    assert main([override, f"model.pretrained={tmp_path / 'missing'}"]) == 2
    assert f"'{key}'" in capsys.readouterr().err
