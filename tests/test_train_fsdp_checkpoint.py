"""Checkpoints under FSDP (train/sharded_checkpoint.py) on 2 CPU processes (gloo): no frozen base, exact resume.

The trainer's FSDP route one level below `accelerate launch` (which runs FSDP on GPUs only), as in
tests/test_train_fsdp.py: the transformer sharded by `train.sharding.prepare_transformer` with the
plugin of configs/accelerate/fsdp.yaml, the shipped precision (bf16 base, fp32 LoRA, autocast,
gradient checkpointing), the trainer's loss and AdamW, and the very save/load functions the trainer
calls under FSDP, given what they read from an `Accelerator`.

A run of three steps is the reference; a second model loaded from the checkpoint written after
step two must hold bit for bit the LoRA and the AdamW state of step two, and its third step must
give the reference's loss, LoRA and AdamW state, bit for bit. Beside it, accelerate's own FSDP
layout (`save_fsdp_model` + `save_fsdp_optimizer`, what `Accelerator.save_state` writes) of the
same model, to show what is no longer written. Last, the trainer itself (`save_checkpoint`, `resume`)
on that route in one process, where accelerate cannot start FSDP.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from diffusers import FluxFillPipeline
from safetensors import safe_open
from torch.distributed.tensor import DTensor

from tests.gloo_ranks import free_port, gloo_rank
from tests.test_train_fsdp import (CASES, FSDP_CONFIG, WORLD, Ranks, adamw, launch_env, lora_copy,
                                   new_transformer, train_step)
from tests.test_train_loop import lora_of, mixed_grids, same_lora, tiny_config
from tests.test_train_resume_safety import RUN as RESUME_RUN
from tests.test_train_resume_safety import RunsAShellCommand
from tests.test_train_resume_safety import run as run_trainer
from train.checkpoints import CheckpointError
from train.data import InMemoryGrids
from train.lora import LORA_WEIGHT_NAME
from train.sharded_checkpoint import (checkpoint_route_problem, load_sharded_checkpoint, optimizer_shard_name,
                                      save_sharded_checkpoint)
from train.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CASE = CASES["bf16"]  # the shipped precision


class Process(Ranks):
    """What the checkpoint functions read from an `Accelerator`, at accelerate's step `step`."""

    def __init__(self, step: int = 0):
        super().__init__()
        self.step = step


def optimizer_local(optimizer) -> dict[str, torch.Tensor]:
    """This rank's AdamW state, parameter by parameter (local shards, cloned)."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    names = {id(p): n for n, p in enumerate(params)}
    return {f"{names[id(p)]}.{k}": (v.to_local() if isinstance(v, DTensor) else v).detach().clone()
            for p, state in optimizer.state.items() for k, v in state.items()}


def rng_states():
    return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()[1].copy()}


def same_rng(a, b) -> bool:
    return torch.equal(a["torch"], b["torch"]) and a["python"] == b["python"] and np.array_equal(a["numpy"], b["numpy"])


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and len(a) > 0 and all(torch.equal(a[k], b[k]) for k in a)


def crafted_load(pretrained, folder: Path, marker: Path) -> str:
    """A copy of `folder` whose rank-1 optimizer shard is a pickle that runs a command; the load's error."""
    crafted = folder.with_name("crafted")
    if dist.get_rank() == 0:
        shutil.copytree(folder, crafted)
        torch.save(RunsAShellCommand(marker), crafted / optimizer_shard_name(1))
    dist.barrier()
    model = new_transformer(pretrained, CASE, 3, fsdp_plugin())
    try:
        load_sharded_checkpoint(crafted, Process(), model, adamw(model))
    except CheckpointError as err:
        return str(err)
    return "loaded"


def fsdp_plugin():
    from accelerate.utils import FullyShardedDataParallelPlugin

    return FullyShardedDataParallelPlugin()  # reads the FSDP_* variables, as under `accelerate launch`


def run(pretrained: str, out: Path) -> dict:
    from accelerate.utils.fsdp_utils import save_fsdp_model, save_fsdp_optimizer

    rank, plugin = dist.get_rank(), fsdp_plugin()
    pipe = FluxFillPipeline.from_pretrained(pretrained, dtype=CASE.dtype)
    result = {}

    # A checkpoint before the first step holds no optimizer state; resuming from it is a fresh start.
    first = new_transformer(pretrained, CASE, 0, plugin)
    first_optimizer = adamw(first)
    (out / "step0").mkdir(exist_ok=True)
    save_sharded_checkpoint(out / "step0", Process(), first, first_optimizer)
    result["step0_saved_no_state"] = not first_optimizer.state
    again = new_transformer(pretrained, CASE, 5, plugin)
    again_optimizer = adamw(again)
    load_sharded_checkpoint(out / "step0", Process(), again, again_optimizer)
    train_step(pipe, first, first_optimizer, 0, CASE.dtype)
    train_step(pipe, again, again_optimizer, 0, CASE.dtype)
    lora_first, lora_again = lora_copy(first), lora_copy(again)  # collectives: every rank; {} on rank 1
    result["step0_resumed_equal"] = same(lora_first, lora_again) if rank == 0 else True
    result["step0_optimizer_equal"] = same(optimizer_local(first_optimizer), optimizer_local(again_optimizer))

    # The reference: three steps, a checkpoint after the second.
    model = new_transformer(pretrained, CASE, 0, plugin)
    optimizer = adamw(model)
    for step in range(2):
        train_step(pipe, model, optimizer, step, CASE.dtype)
    folder = out / "checkpoint"
    legacy = out / "accelerate-layout"
    for path in (folder, legacy):
        path.mkdir(exist_ok=True)
    torch.manual_seed(77 + rank), random.seed(77 + rank), np.random.seed(77 + rank)
    saved_rng = rng_states()
    save_sharded_checkpoint(folder, Process(step=7), model, optimizer)
    save_fsdp_model(plugin, Process(), model, legacy)
    save_fsdp_optimizer(plugin, Process(), optimizer, model, legacy)
    dist.barrier()
    lora_2, optimizer_2 = lora_copy(model), optimizer_local(optimizer)
    loss_3 = train_step(pipe, model, optimizer, 2, CASE.dtype)[0]
    lora_3, optimizer_3 = lora_copy(model), optimizer_local(optimizer)
    torch.rand(3), random.random(), np.random.rand()  # the RNG moves on, as training would

    resumed = new_transformer(pretrained, CASE, 1, plugin)  # another LoRA init: the load must overwrite it
    resumed_optimizer = adamw(resumed)
    process = Process()
    load_sharded_checkpoint(folder, process, resumed, resumed_optimizer)
    result.update(rng_restored=same_rng(rng_states(), saved_rng), step_restored=process.step)
    result["optimizer_2"] = same(optimizer_local(resumed_optimizer), optimizer_2)
    lora_resumed = lora_copy(resumed)
    resumed_loss_3 = train_step(pipe, resumed, resumed_optimizer, 2, CASE.dtype)[0]
    result["optimizer_3"] = same(optimizer_local(resumed_optimizer), optimizer_3)
    result["loss_3"] = (loss_3, resumed_loss_3)
    if rank == 0:
        result.update(lora_2=same(lora_resumed, lora_2), lora_3=same(lora_copy(resumed), lora_3),
                      lora_moved=not same(lora_2, lora_3))
    else:
        lora_copy(resumed)  # the gather is a collective
    result["trainable"] = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    result["trainable_bytes"] = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    result["frozen_bytes"] = sum(p.numel() * p.element_size() for p in model.parameters() if not p.requires_grad)
    result["frozen"] = sorted(n for n, p in model.named_parameters() if not p.requires_grad)
    result["crafted"] = crafted_load(pretrained, folder, out / "pwned")
    return result


def worker(rank: int, port: int, env: dict[str, str], pretrained: str, out: str) -> None:
    with gloo_rank(rank, WORLD, port, env):
        torch.save(run(pretrained, Path(out)), Path(out) / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def ranks(tiny_flux_fill, tmp_path_factory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("fsdp-checkpoint")
    mp.start_processes(worker, args=(free_port(), launch_env(FSDP_CONFIG), str(tiny_flux_fill), str(out)),
                       nprocs=WORLD, start_method="fork")
    return out, [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def test_a_sharded_checkpoint_holds_no_frozen_weight(ranks):
    out, results = ranks
    folder, ours = out / "checkpoint", results[0]
    per_rank = [name for r in range(WORLD) for name in (optimizer_shard_name(r), f"random_states_{r}.pkl")]
    assert sorted(p.name for p in folder.iterdir()) == sorted([LORA_WEIGHT_NAME, *per_rank])
    assert ours["frozen"] and ours["trainable"] and all("lora_" in name for name in ours["trainable"])
    frozen = set(ours["frozen"])
    for r in range(WORLD):  # the optimizer shards name the LoRA's parameters, each of them, and nothing else
        shard = torch.load(folder / optimizer_shard_name(r), weights_only=True)
        assert sorted(shard["state"]) == ours["trainable"]
        assert sorted(n for group in shard["param_groups"] for n in group["params"]) == ours["trainable"]
        assert not frozen & set(shard["state"])
    with safe_open(folder / LORA_WEIGHT_NAME, "pt") as f:  # the model part: the LoRA file, in diffusers naming
        assert f.keys() and all(".lora_A." in k or ".lora_B." in k for k in f.keys())
    # sizes: the LoRA file is the LoRA's fp32 bytes, each AdamW shard two moments of this rank's half
    lora = ours["trainable_bytes"]
    assert lora <= size(folder / LORA_WEIGHT_NAME) < lora + 64 * 1024
    assert 2 * lora <= sum(size(folder / optimizer_shard_name(r)) for r in range(WORLD)) < 2 * lora + 128 * 1024
    # accelerate's layout of the same model writes every frozen weight too
    legacy_model = size(out / "accelerate-layout" / "pytorch_model_fsdp_0")
    assert legacy_model >= ours["frozen_bytes"] + lora
    assert size(folder) < 3 * lora + 256 * 1024 < legacy_model


def test_resuming_a_sharded_checkpoint_continues_bit_for_bit(ranks):
    _, results = ranks
    assert results[0]["lora_moved"]  # step 3 did change the LoRA, so equality below means something
    assert results[0]["lora_2"] and results[0]["lora_3"]  # LoRA as saved, and after the next step
    for r, result in enumerate(results):
        assert result["optimizer_2"] and result["optimizer_3"], f"rank {r}: AdamW state"
        assert result["loss_3"][0] == result["loss_3"][1], f"rank {r}: the next step's loss"
        assert result["rng_restored"] and result["step_restored"] == 7, f"rank {r}: RNG states"


def test_a_checkpoint_before_the_first_step_resumes_as_a_fresh_start(ranks):
    """torch's optimizer-state helper would take a zero step to create AdamW's state, moving its step count."""
    _, results = ranks
    for r, result in enumerate(results):
        assert result["step0_saved_no_state"], f"rank {r}: saving created optimizer state"
        assert result["step0_optimizer_equal"] and result["step0_resumed_equal"], f"rank {r}"


def test_a_crafted_optimizer_shard_does_not_run_and_every_rank_refuses_it(ranks):
    out, results = ranks
    assert not (out / "pwned").exists()
    for result in results:  # both ranks raise the rank-1 file's error: neither waits in a collective
        assert optimizer_shard_name(1) in result["crafted"] and "not an optimizer shard" in result["crafted"]


def test_each_route_refuses_the_others_checkpoints(ranks):
    out, _ = ranks
    assert checkpoint_route_problem(out / "checkpoint", sharded=True) is None
    assert "written under FSDP" in checkpoint_route_problem(out / "checkpoint", sharded=False)
    assert "older version" in checkpoint_route_problem(out / "accelerate-layout", sharded=True)
    unsharded = out / "unsharded"
    unsharded.mkdir()
    (unsharded / "optimizer.bin").write_bytes(b"")
    assert checkpoint_route_problem(unsharded, sharded=False) is None
    assert "written without FSDP" in checkpoint_route_problem(unsharded, sharded=True)


def test_the_trainer_saves_and_resumes_through_the_sharded_route(tiny_flux_fill, tmp_path, monkeypatch, capsys,
                                                                 fresh_accelerate_state):
    """The trainer's own calls (`save_checkpoint`, `resume`: manifest, rename, verification, JSON state) on the
    FSDP route, in one process: accelerate runs FSDP on GPUs only, so the route is forced here (the
    checkpoint functions take the plain tensors of an unsharded model as they take DTensors)."""
    from accelerate.state import AcceleratorState

    straight = lora_of(run_trainer(tiny_flux_fill, tmp_path / "straight", "train.max_steps=4"))
    AcceleratorState._reset_state(reset_partial_state=True)
    monkeypatch.setattr(Trainer, "sharded", property(lambda self: True))
    out = tmp_path / "sharded"
    run_trainer(tiny_flux_fill, out, "train.max_steps=2")
    folder = out / "checkpoints" / "checkpoint-0000002"
    names = {p.name for p in folder.iterdir()}
    assert {optimizer_shard_name(0), LORA_WEIGHT_NAME, "manifest.json"} <= names and "optimizer.bin" not in names
    AcceleratorState._reset_state(reset_partial_state=True)
    resumed = run_trainer(tiny_flux_fill, out, "train.max_steps=4", "checkpoint.resume=latest")
    assert f"resumed from {folder} at step 2" in capsys.readouterr().out
    assert same_lora(lora_of(resumed), straight)  # 2 + 2 steps == 4 straight, bit for bit

    monkeypatch.undo()  # the DDP / one-process route refuses the FSDP route's checkpoint in one line
    AcceleratorState._reset_state(reset_partial_state=True)
    trainer = Trainer(tiny_config(tiny_flux_fill, out, *RESUME_RUN), train_data=InMemoryGrids(mixed_grids()))
    with pytest.raises(CheckpointError, match="checkpoint-0000004: it was written under FSDP"):
        trainer.resume("latest")
