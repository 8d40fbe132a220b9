"""The trainer on the tiny Flux-Fill pipeline: learning, exact resume, export, validation, failures."""

import json
import os
import signal

import numpy as np
import pytest
import torch
from diffusers import FluxFillPipeline, VisualClozeGenerationPipeline
from safetensors import safe_open

from tests.train_grids import KEYS, make_grid, two_fixed_grids
from train.config import load_config
from train.data import InMemoryGrids
from train.flow import flow_loss
from train.grid_inputs import encode_grid, encode_prompts
from train.lora import LORA_WEIGHT_NAME
from train.trainer import Trainer, TrainingAborted, list_checkpoints
from sampler.inference import GridProcessor
from train.validation import fill_grid, visualcloze_pipeline

CPU = torch.device("cpu")
pytestmark = pytest.mark.usefixtures("one_torch_thread", "fresh_accelerate_state")


def tiny_config(pretrained, out, *overrides):
    return load_config(None, [
        f"model.pretrained={pretrained}", "model.weight_dtype=fp32", "model.max_sequence_length=64",
        "model.gradient_checkpointing=false", "lora.rank=8", "optim.lr=3e-3", "train.mixed_precision=no",
        f"train.output_dir={out}", "train.global_batch_size=2", "train.max_steps=6", "checkpoint.every=0",
        "validation.every=0", "log.report_to=none", *overrides,
    ])


def lora_of(trainer):
    return {k: v.detach().clone() for k, v in trainer.lora_layers().items()}


def mixed_grids():
    """Two layouts (2 and 3 rows) so a step runs separate micro-steps."""
    return [make_grid(KEYS[:2]), make_grid(KEYS, ("hed", "target")), make_grid(KEYS[1:], masked_column=0)]


def fixed_eval_loss(trainer, grids):
    """Loss with fixed noise and timesteps, so before/after compare the model alone."""
    total = 0.0
    with torch.no_grad():
        for i, grid in enumerate(grids):
            gen = torch.Generator().manual_seed(100 + i)
            inputs = encode_grid(trainer.pipe, grid, gen, CPU, torch.float32)
            embeds = encode_prompts(trainer.pipe, [grid.prompt], CPU, torch.float32, 64)
            loss = flow_loss(trainer.unwrapped(), inputs, *embeds, trainer.flow, trainer.pipe.scheduler, gen,
                             guidance_embeds=trainer.guidance_embeds)
            total += float(loss[0])
    return total / len(grids)


def test_loss_falls_when_overfitting_two_grids(tiny_flux_fill, tmp_path):
    grids = two_fixed_grids()
    trainer = Trainer(tiny_config(tiny_flux_fill, tmp_path, "train.max_steps=30", "optim.lr=1e-2"),
                      train_data=InMemoryGrids(grids))
    before = fixed_eval_loss(trainer, grids)
    trainer.train()
    after = fixed_eval_loss(trainer, grids)
    losses = [h["loss"] for h in trainer.history]
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.85 * np.mean(losses[:5]), losses
    assert after < 0.9 * before, (before, after)


# One configuration for the runs compared below: warm-up schedule, a checkpoint every 2 steps, keep 2,
# a strong LoRA (lr 2e-2, alpha 4 of rank 8) so that its effect on a sampled image is plain.
RUN = ("optim.lr=2e-2", "lora.alpha=4", "optim.lr_scheduler=constant_with_warmup", "optim.warmup_steps=2",
       "checkpoint.every=2", "checkpoint.keep=2")
FILL = dict(num_inference_steps=3, guidance_scale=30.0, seed=0, max_sequence_length=64, device=CPU)


def vc_cells(vc, grid):
    return np.asarray(fill_grid(vc, grid, **FILL)[0], dtype=np.float32)


def fill_args(grid):
    return dict(prompt=grid.prompt, image=(grid.rows[-1][None] + 1) / 2, mask_image=grid.masks[-1][None],
                height=32, width=64, num_inference_steps=3, max_sequence_length=64, output_type="np")


@pytest.fixture(scope="module")
def straight(one_torch_thread, tiny_flux_fill, tmp_path_factory):
    """Six uninterrupted steps; the trained model's samples are taken while it is still in memory."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    trainer = Trainer(tiny_config(tiny_flux_fill, tmp_path_factory.mktemp("straight"), *RUN),
                      train_data=InMemoryGrids(mixed_grids()))
    summary = trainer.train()
    grid = two_fixed_grids()[0]
    trainer.pipe.set_progress_bar_config(disable=True)
    result = dict(
        lora=lora_of(trainer), lora_file=summary["lora"], lr=trainer.lr_scheduler.get_last_lr(),
        output_dir=trainer.output_dir, grid=grid, vc=vc_cells(visualcloze_pipeline(trainer.pipe, 32), grid),
        fill=trainer.pipe(**fill_args(grid), generator=torch.Generator().manual_seed(1)).images,
    )
    AcceleratorState._reset_state(reset_partial_state=True)
    return result


def same_lora(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_three_steps_resume_three_steps_equals_six_straight(tiny_flux_fill, tmp_path, straight):
    first = Trainer(tiny_config(tiny_flux_fill, tmp_path, *RUN, "train.max_steps=3"),
                    train_data=InMemoryGrids(mixed_grids()))
    first.train()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-0000002", "checkpoint-0000003"]
    assert not same_lora(lora_of(first), straight["lora"])
    resumed = Trainer(tiny_config(tiny_flux_fill, tmp_path, *RUN, "checkpoint.resume=latest"),
                      train_data=InMemoryGrids(mixed_grids()))
    resumed.train()

    assert resumed.state.step == 6
    assert same_lora(lora_of(resumed), straight["lora"])
    assert resumed.lr_scheduler.get_last_lr() == straight["lr"]
    assert max(v.abs().max().item() for k, v in straight["lora"].items() if "lora_B" in k) > 0  # it did train


def test_sigterm_saves_a_checkpoint_and_resume_matches_an_uninterrupted_run(tiny_flux_fill, tmp_path, straight):
    class SignalAfter(InMemoryGrids):
        """Sends SIGTERM to this process when the 7th grid is drawn (inside step 4)."""

        def __iter__(self):
            for grid in super().__iter__():
                if self.position == 7:
                    os.kill(os.getpid(), signal.SIGTERM)
                yield grid

    summary = Trainer(tiny_config(tiny_flux_fill, tmp_path, *RUN), train_data=SignalAfter(mixed_grids())).train()
    assert summary["interrupted"] == "SIGTERM" and summary["step"] == 4
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-0000002", "checkpoint-0000004"]
    assert not any(p.name.startswith(".tmp") for p in (tmp_path / "checkpoints").iterdir())

    resumed = Trainer(tiny_config(tiny_flux_fill, tmp_path, *RUN, "checkpoint.resume=latest"),
                      train_data=InMemoryGrids(mixed_grids()))
    resumed.train()
    assert same_lora(lora_of(resumed), straight["lora"])
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-0000004", "checkpoint-0000006"]


def test_exported_lora_reproduces_the_trained_model_in_fresh_pipelines(tiny_flux_fill, straight):
    lora = straight["lora_file"]
    assert lora == straight["output_dir"] / LORA_WEIGHT_NAME
    with safe_open(str(lora), "pt") as f:
        meta = json.loads(f.metadata()["lora_adapter_metadata"])
        keys = set(f.keys())
    assert meta["transformer.r"] == 8 and meta["transformer.lora_alpha"] == 4
    assert "transformer.x_embedder.lora_A.weight" in keys  # every linear, embedders included

    grid = straight["grid"]
    base = vc_cells(visualcloze_pipeline(FluxFillPipeline.from_pretrained(tiny_flux_fill), 32), grid)
    fresh_vc = VisualClozeGenerationPipeline.from_pretrained(tiny_flux_fill, resolution=32)
    fresh_vc.load_lora_weights(lora)
    fresh_vc.image_processor = GridProcessor(resolution=32, layout=False)  # as validation prompts it
    fresh_vc.set_progress_bar_config(disable=True)
    assert np.abs(straight["vc"] - base).max() > 10  # the LoRA changes the picture ...
    assert np.abs(vc_cells(fresh_vc, grid) - straight["vc"]).max() <= 1  # ... and the exported file reproduces it

    fresh = FluxFillPipeline.from_pretrained(tiny_flux_fill)
    fresh.load_lora_weights(lora)
    fresh.set_progress_bar_config(disable=True)
    theirs = fresh(**fill_args(grid), generator=torch.Generator().manual_seed(1)).images
    assert np.allclose(straight["fill"], theirs, atol=1e-5)


def test_validation_pngs_and_tensorboard_logs(tiny_flux_fill, tmp_path):
    grids = two_fixed_grids()
    cfg = tiny_config(tiny_flux_fill, tmp_path, "train.max_steps=2", "validation.every=2", "validation.num_grids=2",
                      "validation.num_inference_steps=2", "log.report_to=tensorboard", "log.every=1")
    Trainer(cfg, train_data=InMemoryGrids(grids), val_grids=grids).train()
    pngs = sorted((tmp_path / "validation" / "step-0000002").glob("*.png"))
    assert [p.name for p in pngs] == ["grid-00.png", "grid-01.png"]
    from PIL import Image

    from train.validation import LABEL_HEIGHT
    width, height = Image.open(pngs[0]).size  # 2 x 2 cells of 32 px: header, truth, filled, each labelled
    assert width >= 64 and height == LABEL_HEIGHT + 2 * (LABEL_HEIGHT + 64) + 4
    events = list((tmp_path / "logs").rglob("events.out.tfevents.*"))
    assert events
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events[0].parent), size_guidance={"images": 0})
    acc.Reload()
    assert {"loss", "lr", "grad_norm", "grids_per_s", "tokens_per_s"} <= set(acc.Tags()["scalars"])
    assert "validation/grid-00" in acc.Tags()["images"]


def nan_grid():
    grid = make_grid(KEYS[:2])
    grid.rows[0] = torch.full_like(grid.rows[0], float("nan"))
    return grid


def test_nonfinite_losses_are_skipped_and_counted(tiny_flux_fill, tmp_path):
    cfg = tiny_config(tiny_flux_fill, tmp_path, "train.global_batch_size=1", "train.max_steps=3")
    trainer = Trainer(cfg, train_data=InMemoryGrids([nan_grid(), make_grid(KEYS[:2])]))
    summary = trainer.train()
    assert summary["step"] == 3 and summary["nonfinite_total"] == 3
    assert [h["skipped"] for h in trainer.history] == [1, 0, 1, 0, 1, 0]
    assert all(torch.isfinite(v).all() for v in lora_of(trainer).values())


def test_too_many_nonfinite_losses_in_a_row_abort(tiny_flux_fill, tmp_path):
    cfg = tiny_config(tiny_flux_fill, tmp_path, "train.global_batch_size=1", "train.max_nonfinite_in_row=2")
    with pytest.raises(TrainingAborted, match="2 non-finite losses in a row"):
        Trainer(cfg, train_data=InMemoryGrids([nan_grid()])).train()


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_continues_the_sampler_stream_exactly(tiny_flux_fill, tmp_path, sampler_shards, workers):
    """GridDataset's position (in the training process, or in each DataLoader worker) goes into the
    checkpoint: 2 + resume + 2 steps == 4 straight."""
    shards = (f"data.shards={sampler_shards}", "data.resolution=32", "data.pool_size=16", "train.max_steps=4",
              f"data.num_workers={workers}")
    straight = Trainer(tiny_config(tiny_flux_fill, tmp_path / "a", *shards))
    straight.train()
    Trainer(tiny_config(tiny_flux_fill, tmp_path / "b", *shards, "train.max_steps=2")).train()
    resumed = Trainer(tiny_config(tiny_flux_fill, tmp_path / "b", *shards, "checkpoint.resume=latest"))
    resumed.train()
    assert resumed.state.grids_seen == straight.state.grids_seen == 8
    a, b = lora_of(straight), lora_of(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bf16_base_with_fp32_lora_checkpointing_and_cpu_text_encoders(tiny_flux_fill, tmp_path):
    """The production precision path (bf16 weights + autocast, fp32 LoRA and AdamW state) trains and validates."""
    cfg = tiny_config(tiny_flux_fill, tmp_path, "model.weight_dtype=bf16", "train.mixed_precision=bf16",
                      "model.gradient_checkpointing=true", "model.text_encoders_on=cpu", "train.max_steps=2",
                      "validation.every=2", "validation.num_grids=1", "validation.num_inference_steps=2")
    trainer = Trainer(cfg, train_data=InMemoryGrids(two_fixed_grids()), val_grids=two_fixed_grids())
    summary = trainer.train()
    model = trainer.unwrapped()
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
    assert {p.dtype for p in model.parameters() if not p.requires_grad} == {torch.bfloat16}
    state = trainer.optimizer.state_dict()["state"]
    assert state and all(s["exp_avg"].dtype == torch.float32 for s in state.values())
    assert all(np.isfinite(h["loss"]) for h in trainer.history) and summary["nonfinite_total"] == 0
    assert (tmp_path / "validation" / "step-0000002" / "grid-00.png").is_file()
