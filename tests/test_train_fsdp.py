"""FSDP2 on 2 CPU processes (gloo): the trainer's sharding equals one unsharded process, and checkpoints reload.

accelerate runs FSDP only on accelerators, so this test goes one level down, with the same pieces
the trainer runs: `train.sharding.prepare_transformer` (LoRA + `fully_shard` per Flux block) with
accelerate's FSDP2 plugin built from configs/accelerate/fsdp.yaml by accelerate's own launcher
code, the trainer's loss (`flow_loss` on `encode_grid` inputs, two layouts = two micro-steps, the
first without gradient sync), grad clipping and AdamW, and the trainer's FSDP checkpoint functions
(train/sharded_checkpoint.py, checked in detail by tests/test_train_fsdp_checkpoint.py).

Every rank trains on the same grids with the same noise, so the averaged gradient equals each
rank's own, and one unsharded process on those grids is the reference. Two precisions: fp32,
where the runs agree to float rounding, and the shipped one (bf16 frozen base, fp32 LoRA, bf16
autocast, gradient checkpointing). There FSDP's backward hooks change the order in which
autograd sums bf16 activation gradients, so gradients differ by bf16 rounding (~1e-3), and Adam
turns the sign of near-zero gradients into whole learning-rate steps: bf16 runs are compared by
loss, gradient norm and the relative difference of the LoRA updates, with bounds well above that
noise and far below what a wrong shard or a missing gradient average gives (order 1, or a 2x norm).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from diffusers import FluxFillPipeline, FluxTransformer2DModel
from torch.distributed.fsdp import FSDPModule

from tests.gloo_ranks import free_port, gloo_rank
from tests.train_grids import KEYS, make_grid
from train.flow import FlowSettings, flow_loss
from train.grid_inputs import encode_grid, encode_prompts
from train.lora import LORA_WEIGHT_NAME, is_sharded, lora_state_dict
from train.sharding import ShardingError, fsdp_plugin_of, prepare_transformer, shard_transformer

REPO = Path(__file__).resolve().parents[1]
FSDP_CONFIG = REPO / "configs" / "accelerate" / "fsdp.yaml"
CPU = torch.device("cpu")
WORLD = 2
FLOW = FlowSettings(guidance=1.0)
LR = 1e-2


@dataclass(frozen=True)
class Case:
    dtype: torch.dtype  # the frozen weights (model.weight_dtype)
    mixed_precision: str  # train.mixed_precision
    gradient_checkpointing: bool
    checkpoint: bool  # save after 2 steps, reload into fresh sharded models, then a 3rd step on both
    rtol: float  # losses and gradient norms, sharded vs unsharded
    update_rtol: float  # |LoRA_sharded - LoRA_unsharded| / |LoRA_unsharded - LoRA_init| (L2 over all weights)


CASES = {  # measured on CPU: fp32 ~2e-6 update difference; bf16 ~7e-4 norm, ~2e-2 update
    "fp32": Case(torch.float32, "no", False, checkpoint=False, rtol=1e-5, update_rtol=1e-4),
    "bf16": Case(torch.bfloat16, "bf16", True, checkpoint=True, rtol=5e-3, update_rtol=0.05),  # configs/visualcloze_*
}
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def launch_env(config_file: Path) -> dict[str, str]:
    """The FSDP_* variables `accelerate launch --config_file FILE` gives each process (its own code)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    args = launch_command_parser().parse_args(["--config_file", str(config_file), "-m", "train"])
    args, _, _ = _validate_launch_command(args)
    return {k: v for k, v in prepare_multi_gpu_env(args).items() if k.startswith("FSDP_")}


class Ranks:
    """What accelerate's FSDP checkpoint helpers and the trainer's (train/sharded_checkpoint.py) read from an
    `Accelerator`."""

    is_fsdp2 = True
    step, scaler = 0, None

    def __init__(self):
        self.process_index, self.num_processes = dist.get_rank(), dist.get_world_size()
        self.is_main_process = self.process_index == 0

    def wait_for_everyone(self):
        dist.barrier()


def grids():
    """Two layouts (2 and 3 rows): two micro-steps per optimizer step, as the trainer runs them."""
    return [make_grid(KEYS[:2]), make_grid(KEYS, ("hed", "target"))]


def new_transformer(pretrained, case: Case, seed: int, plugin=None):
    transformer = FluxTransformer2DModel.from_pretrained(pretrained, subfolder="transformer", torch_dtype=case.dtype)
    torch.manual_seed(seed)  # the LoRA init
    return prepare_transformer(transformer, rank=4, gradient_checkpointing=case.gradient_checkpointing,
                               fsdp_plugin=plugin, mixed_precision=case.mixed_precision)


def autocast_forward(transformer, mixed_precision):
    """The unsharded reference: accelerate wraps the forward in autocast the same way for one process or DDP."""
    if mixed_precision == "bf16":
        transformer.forward = torch.autocast("cpu", dtype=torch.bfloat16)(transformer.forward)
    return transformer


def train_step(pipe, transformer, optimizer, step, dtype) -> tuple[float, float]:
    """One optimizer step of the trainer on `grids()`: per-grid micro-steps, sync on the last, clip 2.0, AdamW."""
    params = [p for p in transformer.parameters() if p.requires_grad]
    generator = torch.Generator().manual_seed(1000 + step)
    batch, losses = grids(), []
    for i, grid in enumerate(batch):
        inputs = encode_grid(pipe, grid, generator, CPU, dtype)
        embeds = encode_prompts(pipe, [grid.prompt], CPU, dtype, 64)
        if is_sharded(transformer):
            transformer.set_requires_gradient_sync(i == len(batch) - 1)
        loss = flow_loss(transformer, inputs, *embeds, FLOW, pipe.scheduler, generator)
        (loss.sum() / len(batch)).backward()
        losses.append(float(loss.detach()[0]))
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, 2.0))
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return sum(losses) / len(losses), grad_norm


def lora_copy(transformer) -> dict[str, torch.Tensor]:
    """`lora_state_dict` detached from the live parameters (unsharded, it shares their storage)."""
    return {k: v.detach().clone() for k, v in lora_state_dict(transformer).items()}


def adamw(transformer):
    return torch.optim.AdamW([p for p in transformer.parameters() if p.requires_grad], lr=LR)


def run_case(pretrained, out: Path, name: str, plugin=None) -> dict:
    """Two steps; sharded (`plugin`) and `checkpoint`, also save, reload into fresh sharded models and a 3rd step."""
    case = CASES[name]
    pipe = FluxFillPipeline.from_pretrained(pretrained, dtype=case.dtype)
    model = new_transformer(pretrained, case, 0, plugin)
    if plugin is None:
        autocast_forward(model, case.mixed_precision)
    optimizer = adamw(model)
    result = {"lora_0": lora_copy(model)}
    steps = [train_step(pipe, model, optimizer, step, case.dtype) for step in range(2)]
    result.update(losses=[loss for loss, _ in steps], grad_norms=[norm for _, norm in steps], lora_2=lora_copy(model),
                  dtypes=sorted({f"{p.requires_grad}:{p.dtype}" for p in model.parameters()}),
                  fsdp_groups=[n for n, m in model.named_modules() if isinstance(m, FSDPModule)])
    if case.checkpoint:
        if plugin is not None:
            result.update(checkpoint_and_reload(pretrained, out / name, case, plugin, pipe, model, optimizer))
        result["losses"].append(train_step(pipe, model, optimizer, 2, case.dtype)[0])
        result["lora_3"] = lora_copy(model)
    return result


def checkpoint_and_reload(pretrained, folder: Path, case: Case, plugin, pipe, model, optimizer) -> dict:
    """Sharded checkpoint as the trainer writes it under FSDP (LoRA file, optimizer shards, RNG states);
    reload into a freshly sharded model."""
    from train.sharded_checkpoint import load_sharded_checkpoint, save_sharded_checkpoint

    folder.mkdir(parents=True, exist_ok=True)
    save_sharded_checkpoint(folder, Ranks(), model, optimizer)
    dist.barrier()

    resumed = new_transformer(pretrained, case, 1, plugin)  # another LoRA init, overwritten by the load
    resumed_optimizer = adamw(resumed)
    load_sharded_checkpoint(folder, Ranks(), resumed, resumed_optimizer)
    reloaded = lora_copy(resumed)
    train_step(pipe, resumed, resumed_optimizer, 2, case.dtype)
    return {"reloaded": reloaded, "resumed_3": lora_copy(resumed), "files": sorted(p.name for p in folder.iterdir())}


def worker(rank: int, port: int, env: dict[str, str], pretrained: str, out: str) -> None:
    from accelerate.utils import FullyShardedDataParallelPlugin

    with gloo_rank(rank, WORLD, port, env):
        plugin = FullyShardedDataParallelPlugin()  # reads the FSDP_* variables, as under `accelerate launch`
        results = {case: run_case(pretrained, Path(out), case, plugin) for case in CASES}
        if rank == 0:
            torch.save(results, Path(out) / "rank0.pt")


@pytest.fixture(scope="module")
def sharded(tiny_flux_fill, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("fsdp")
    # fork: the children inherit the imported libraries (a spawn would import torch and diffusers again)
    mp.start_processes(worker, args=(free_port(), launch_env(FSDP_CONFIG), str(tiny_flux_fill), str(out)),
                       nprocs=WORLD, start_method="fork")
    return torch.load(out / "rank0.pt", weights_only=False)


def flat(lora: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([lora[k].float().flatten() for k in sorted(lora)])


def update_difference(ours: dict, reference: dict, init: dict) -> float:
    """How far the sharded LoRA is from the reference, relative to how far training moved it."""
    assert ours.keys() == reference.keys() == init.keys() and ours
    return float((flat(ours) - flat(reference)).norm() / (flat(reference) - flat(init)).norm())


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and len(a) > 0 and all(torch.equal(a[k], b[k]) for k in a)


def test_shipped_config_is_fsdp2_per_flux_block():
    env = launch_env(FSDP_CONFIG)
    assert env["FSDP_VERSION"] == "2"
    assert env["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP"
    assert env["FSDP_TRANSFORMER_CLS_TO_WRAP"].split(",") == ["FluxTransformerBlock", "FluxSingleTransformerBlock"]
    assert env["FSDP_ACTIVATION_CHECKPOINTING"] == "false"


@pytest.mark.parametrize("setting, match", [
    (dict(fsdp_version=1), "fsdp_version: 1"),
    (dict(fsdp_version=2, auto_wrap_policy="NO_WRAP"), "fsdp_auto_wrap_policy: NO_WRAP"),
    (dict(fsdp_version=2, auto_wrap_policy="TRANSFORMER_BASED_WRAP", activation_checkpointing=True),
     "model.gradient_checkpointing"),
])
def test_settings_that_cannot_shard_the_lora_model_are_refused(setting, match, tiny_flux_fill):
    """Refused before any process group is needed, with the setting named."""
    from types import SimpleNamespace

    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    plugin = FullyShardedDataParallelPlugin(**setting)
    accelerator = SimpleNamespace(distributed_type=DistributedType.FSDP, state=SimpleNamespace(fsdp_plugin=plugin))
    transformer = FluxTransformer2DModel.from_pretrained(tiny_flux_fill, subfolder="transformer")
    with pytest.raises(ShardingError, match=match):
        shard_transformer(transformer, fsdp_plugin_of(accelerator))


@pytest.mark.parametrize("name", list(CASES))
def test_two_sharded_ranks_train_as_one_unsharded_process(name, sharded, tiny_flux_fill, tmp_path):
    case, ours = CASES[name], sharded[name]
    reference = run_case(str(tiny_flux_fill), tmp_path, name)
    assert ours["fsdp_groups"] == ["", "transformer_blocks.0", "single_transformer_blocks.0"]  # root + one per block
    assert reference["fsdp_groups"] == []
    assert ours["dtypes"] == reference["dtypes"]  # the frozen base keeps its dtype beside the fp32 LoRA
    assert "True:torch.float32" in ours["dtypes"] and f"False:{case.dtype}" in ours["dtypes"]
    torch.testing.assert_close(ours["losses"], reference["losses"], rtol=case.rtol, atol=0)
    torch.testing.assert_close(ours["grad_norms"], reference["grad_norms"], rtol=case.rtol, atol=0)
    assert same(ours["lora_0"], reference["lora_0"])  # the same LoRA init, gathered from the shards
    for after in ("lora_2", "lora_3") if case.checkpoint else ("lora_2",):
        assert update_difference(ours[after], reference[after], reference["lora_0"]) <= case.update_rtol, after
    assert (flat(reference["lora_2"]) - flat(reference["lora_0"])).abs().max() > LR / 2  # it did train


def test_sharded_checkpoint_reloads_into_freshly_sharded_models(sharded):
    ours = sharded["bf16"]
    assert {LORA_WEIGHT_NAME, "optimizer_shard_rank0.bin", "optimizer_shard_rank1.bin"} <= set(ours["files"])
    assert "pytorch_model_fsdp_0" not in ours["files"]  # the frozen base is not written
    assert not same(ours["lora_0"], ours["lora_2"])
    assert same(ours["reloaded"], ours["lora_2"])  # cut into the shards from the checkpoint's LoRA file
    assert same(ours["resumed_3"], ours["lora_3"])  # a step after the reload repeats the original's: optimizer too
