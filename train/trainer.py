"""The VisualCloze LoRA training loop on FLUX.1-Fill-dev (accelerate + peft + diffusers).

One optimizer step takes `global_batch_size / world_size` grids on every rank, in micro-batches
of `micro_batch_size`; grids of one micro-batch that share a layout are stacked into one
forward pass, others run as their own micro-steps (no padding, exact attention). Gradients
are synchronised only on the last backward of a step. A step whose loss or gradient norm is
NaN/inf on any rank is skipped on all ranks and counted; `max_nonfinite_in_row` in a row
abort. Randomness of a step (noise, timesteps, VAE sampling) is seeded from
(seed, rank, attempt), so a resumed run repeats exactly what an uninterrupted one does.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import signal
import threading
import time
from collections import OrderedDict, deque
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, ProjectConfiguration, broadcast_object_list, set_seed
from diffusers.optimization import get_scheduler
from tqdm.auto import tqdm

from sampler.grid_sample import GridSample

from .checkpoints import (RUN_INFO_NAME, CheckpointError, check_resume_target, checkpoint_name, choose_checkpoint,
                          commit_checkpoint, fsync_tree, prune_checkpoints, read_state, trainer_state_name, write_state)
from .checkpoints import list_checkpoints  # noqa: F401  (callers of train.trainer use it)
from .config import ConfigError, TrainConfig, to_dict
from .data import GridStream, grid_dataset, sampler_settings
from .flow import flow_loss
from .grid_inputs import encode_grid, encode_prompts, layout_of, stack_inputs
from .launch import check_launch
from .lora import LORA_WEIGHT_NAME, export_lora_atomic, load_lora_into, lora_metadata, lora_state_dict, save_lora
from .output_lock import lock_for_run
from .pretrained import check_pretrained, load_pipeline
from .prompt_tokens import T5Truncation
from .sharded_checkpoint import checkpoint_route_problem, load_sharded_checkpoint, save_sharded_checkpoint
from .sharding import fsdp_plugin_of, prepare_transformer
from .validation import holdout_filters, run_validation, validation_grids

logger = logging.getLogger("train")

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


class TrainingAborted(RuntimeError):
    """Training cannot go on (e.g. too many non-finite losses in a row)."""


@dataclasses.dataclass
class TrainState:
    """Counters saved with every checkpoint (as JSON, in each rank's trainer state)."""

    step: int = 0  # optimizer steps taken
    attempts: int = 0  # steps attempted, skipped ones included (seeds the step's randomness)
    nonfinite_total: int = 0
    nonfinite_in_row: int = 0
    grids_seen: int = 0  # on this rank

    def state_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    def load_state_dict(self, state: dict[str, int]) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, int(state[f.name]))


class Trainer:
    """Builds the model, data and optimizer from a `TrainConfig` and runs `train()`.

    `train_data` / `val_grids` replace the shard-backed sources (any iterable of GridSample,
    e.g. `InMemoryGrids`); without them `data.shards` / `validation.shards` are read with
    `sampler.GridDataset`.
    """

    def __init__(self, cfg: TrainConfig, train_data: Iterable[GridSample] | None = None,
                 val_grids: list[GridSample] | None = None):
        self.cfg = cfg
        self.output_dir = Path(cfg.train.output_dir)
        report_to = None if cfg.log.report_to == "none" else cfg.log.report_to
        self.accelerator = Accelerator(
            mixed_precision=cfg.train.mixed_precision,
            log_with=report_to,
            project_config=ProjectConfiguration(project_dir=str(self.output_dir),
                                                logging_dir=str(self.output_dir / "logs")),
        )
        acc = self.accelerator
        check_launch(acc.num_processes)  # else every process would train alone into the same folder
        self.device = acc.device
        self.grad_accum = cfg.gradient_accumulation(acc.num_processes)
        self.weight_dtype = DTYPES[cfg.model.weight_dtype]
        # Everything a user can get wrong fails in seconds, before minutes of model loading.
        self.pretrained = check_pretrained(cfg.model)
        check_resume_target(self.output_dir, cfg.checkpoint.resume)
        self._build_data(train_data, val_grids)
        # One run per output folder (train/output_lock.py): the first write, after the checks, before the model.
        self.output_lock = lock_for_run(acc, self.output_dir)
        set_seed(cfg.train.seed)  # same LoRA init on every rank

        transformer = self._build_model()
        self.params = [p for p in transformer.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(self.params, lr=cfg.optim.lr, betas=(cfg.optim.beta1, cfg.optim.beta2),
                                      weight_decay=cfg.optim.weight_decay, eps=cfg.optim.eps)
        # Not prepared by accelerate (which would step it once per process); checkpointed as JSON with
        # TrainState (`_trainer_state`), not registered with accelerate, which pickles custom objects.
        try:
            self.lr_scheduler = get_scheduler(cfg.optim.lr_scheduler, optimizer=optimizer,
                                              num_warmup_steps=cfg.optim.warmup_steps,
                                              num_training_steps=cfg.train.max_steps)
        except ValueError as err:
            raise ConfigError(f"config key 'optim.lr_scheduler': {err}") from None
        self.transformer, self.optimizer = acc.prepare(transformer, optimizer)
        self.state = TrainState()
        acc.register_save_state_pre_hook(self._save_hook)
        acc.register_load_state_pre_hook(self._load_hook)

        self.flow = cfg.train  # a FlowSettings: the objective's keys are train.*
        self.guidance_embeds = bool(transformer.config.guidance_embeds)
        self._stop_signal: int | None = None
        self.history: deque[dict[str, float]] = deque(maxlen=1000)  # latest steps' metrics, for callers and tests

    def _build_data(self, train_data, val_grids) -> None:
        """Training grids (this rank's share, held-out keys excluded) and the fixed validation set,
        drawn once here so every validation step fills the same grids (train/validation.py)."""
        cfg, acc = self.cfg, self.accelerator
        d = cfg.data
        if train_data is None:
            not_held_out, _ = holdout_filters(cfg)
            train_data = grid_dataset(d.shards, key="data.shards", resolution=d.resolution, seed=d.seed, tasks=d.tasks,
                                      rows=d.rows, pool_size=d.pool_size, rank=acc.process_index,
                                      world_size=acc.num_processes, key_filter=not_held_out, **sampler_settings(d))
        self.data = GridStream(train_data, num_workers=d.num_workers)
        if val_grids is None and cfg.validation.every:
            val_grids = validation_grids(cfg)
        self.val_grids = list(val_grids or [])[: cfg.validation.num_grids]

    def _build_model(self):
        """The pipeline from `model.pretrained`, frozen, with a trainable LoRA on the transformer; under
        FSDP the transformer comes back sharded (train/sharding.py), else on this process's device."""
        cfg = self.cfg
        self.pipe = load_pipeline(self.pretrained, cfg.model, self.weight_dtype)
        self.pipe.set_progress_bar_config(disable=True)
        # VisualCloze prompts run past CLIP's 77 tokens by design (the reference truncates them too);
        # diffusers would warn about it on every step. A T5 cut is said once instead (prompt_tokens.py).
        for name in ("flux.pipeline_flux_fill", "visualcloze.pipeline_visualcloze_generation"):
            logging.getLogger(f"diffusers.pipelines.{name}").setLevel(logging.ERROR)
        self.t5_truncation = T5Truncation(self.pipe.tokenizer_2, cfg.model.max_sequence_length)
        for module in (self.pipe.vae, self.pipe.text_encoder, self.pipe.text_encoder_2):
            module.requires_grad_(False)
        text_device = self.device if cfg.model.text_encoders_on == "device" else torch.device("cpu")
        self.pipe.vae.to(self.device)
        self.pipe.text_encoder.to(text_device)
        self.pipe.text_encoder_2.to(text_device)
        return prepare_transformer(
            self.pipe.transformer, rank=cfg.lora.rank, alpha=cfg.lora.alpha, dropout=cfg.lora.dropout,
            target_modules=cfg.lora.target_modules, gradient_checkpointing=cfg.model.gradient_checkpointing,
            device=self.device, fsdp_plugin=fsdp_plugin_of(self.accelerator),
            mixed_precision=self.accelerator.mixed_precision,
        )

    # ------------------------------------------------------------------ LoRA I/O

    def unwrapped(self):
        return self.accelerator.unwrap_model(self.transformer)

    @property
    def sharded(self) -> bool:
        """FSDP: checkpoints go through train/sharded_checkpoint.py, not accelerate's save_state/load_state
        (which write and read the frozen base's shards)."""
        return self.accelerator.distributed_type == DistributedType.FSDP

    def lora_layers(self) -> dict[str, torch.Tensor]:
        """The LoRA state dict in diffusers/peft naming. Under FSDP only the LoRA shards are gathered, onto
        the main process (the others get {}); call on all ranks."""
        return lora_state_dict(self.unwrapped())

    def _save_hook(self, models, weights, output_dir):
        layers = self.lora_layers()
        while weights:
            weights.pop()  # the frozen base model is never written
        if self.accelerator.is_main_process:
            save_lora(output_dir, layers, lora_metadata(self.unwrapped()))

    def _load_hook(self, models, input_dir):
        while models:
            models.pop()
        load_lora_into(self.unwrapped(), input_dir)

    def export_lora(self, path: str | Path | None = None) -> Path:
        """Write the current LoRA as diffusers safetensors, atomically (default: output_dir/LORA_WEIGHT_NAME)."""
        layers = self.lora_layers()
        path = Path(path) if path is not None else self.output_dir / LORA_WEIGHT_NAME
        if self.accelerator.is_main_process:
            export_lora_atomic(path, {k: v.detach().cpu() for k, v in layers.items()}, lora_metadata(self.unwrapped()))
        self.accelerator.wait_for_everyone()
        return path

    # ------------------------------------------------------------------ checkpoints

    def _trainer_state(self) -> dict[str, Any]:
        """This rank's state beside accelerate's: JSON only, so that reading a checkpoint runs no code."""
        return {"world_size": self.accelerator.num_processes, "train": self.state.state_dict(),
                "lr_scheduler": self.lr_scheduler.state_dict(), "data": self.data.state_dict()}

    def save_checkpoint(self) -> Path:
        """All state into a hidden temp folder, flushed, a manifest last, then one rename
        (train/checkpoints.py); keep the newest `checkpoint.keep`."""
        acc = self.accelerator
        final = self.output_dir / "checkpoints" / checkpoint_name(self.state.step)
        tmp = final.with_name(f".tmp-{final.name}")
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        if self.sharded:  # the LoRA, optimizer shards and RNG states; never the frozen base (sharded_checkpoint.py)
            save_sharded_checkpoint(tmp, acc, self.unwrapped(), self.optimizer)
        else:
            acc.save_state(str(tmp))
        write_state(tmp / trainer_state_name(acc.process_index), self._trainer_state())
        acc.wait_for_everyone()
        fsync_tree(tmp)  # every rank: on a shared file system each node flushes its own writes
        acc.wait_for_everyone()
        if acc.is_main_process:
            (tmp / RUN_INFO_NAME).write_text(json.dumps(
                {"step": self.state.step, "world_size": acc.num_processes, "config": to_dict(self.cfg)}, indent=2))
            commit_checkpoint(tmp, final, self.state.step)
            prune_checkpoints(self.output_dir, self.cfg.checkpoint.keep)
        acc.wait_for_everyone()
        return final

    def resume(self, which: str) -> Path | None:
        """Load 'latest' (the newest checkpoint whose manifest verifies) or a named checkpoint folder;
        None when 'latest' finds no checkpoint. The main process verifies; every rank loads its choice."""
        acc = self.accelerator
        choice: list[Any] = [None]
        if acc.is_main_process:
            try:
                path, skipped = choose_checkpoint(self.output_dir, which)
                choice = [(path and str(path), skipped, None)]
            except CheckpointError as err:
                choice = [(None, [], str(err))]
        path, skipped, error = broadcast_object_list(choice)[0]
        if error:
            raise CheckpointError(error)
        for line in skipped:
            acc.print(f"checkpoint.resume={which}: {line}")
        if path is None:
            acc.print(f"checkpoint.resume=latest: no checkpoint in {self.output_dir}/checkpoints, starting fresh")
            return None
        path = Path(path)
        written_by = read_state(path / RUN_INFO_NAME).get("world_size")
        if written_by != acc.num_processes:
            raise CheckpointError(f"checkpoint {path} was written by {written_by} processes, this run has "
                                  f"{acc.num_processes}: the data position cannot carry over; resume it with "
                                  f"{written_by} processes, or start fresh in another train.output_dir")
        state_file = path / trainer_state_name(acc.process_index)
        saved = read_state(state_file)
        if self.sharded:
            load_sharded_checkpoint(path, acc, self.unwrapped(), self.optimizer)
        else:
            problem = checkpoint_route_problem(path, sharded=False)
            if problem:
                raise CheckpointError(f"checkpoint {path}: {problem}")
            acc.load_state(str(path))
        try:
            self.state.load_state_dict(saved["train"])
            self.lr_scheduler.load_state_dict(saved["lr_scheduler"])
            data_state = saved["data"]
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{state_file}: not a state this trainer wrote ({err!r})") from None
        self.data.load_state_dict(data_state)
        acc.print(f"resumed from {path} at step {self.state.step}")
        return path

    # ------------------------------------------------------------------ one step

    def _generator(self) -> torch.Generator:
        seed = np.random.SeedSequence([self.cfg.train.seed, self.accelerator.process_index, self.state.attempts])
        return torch.Generator(device=self.device).manual_seed(int(seed.generate_state(1, dtype=np.uint64)[0] >> 1))

    def _micro_step(self, grids: list[GridSample], generator: torch.Generator, scale: float,
                    last: bool) -> tuple[list[float], int]:
        """Forward/backward for one micro-batch; returns per-grid losses and image tokens seen."""
        groups: "OrderedDict[Any, list[GridSample]]" = OrderedDict()
        for grid in grids:
            groups.setdefault(layout_of(grid), []).append(grid)
        losses, tokens = [], 0
        for g, members in enumerate(groups.values()):
            inputs = stack_inputs([encode_grid(self.pipe, grid, generator, self.device, self.weight_dtype)
                                   for grid in members])
            prompts = [grid.prompt for grid in members]
            cut = self.t5_truncation.check(prompts)
            if cut and self.accelerator.is_main_process:
                logger.warning(cut)
            prompt_embeds, pooled, text_ids = encode_prompts(self.pipe, prompts, self.device,
                                                             self.weight_dtype, self.cfg.model.max_sequence_length)
            sync = last and g == len(groups) - 1
            with nullcontext() if sync else self.accelerator.no_sync(self.transformer):
                per_grid = flow_loss(self.transformer, inputs, prompt_embeds, pooled, text_ids, self.flow,
                                     self.pipe.scheduler, generator, guidance_embeds=self.guidance_embeds)
                self.accelerator.backward(per_grid.sum() * scale)
            losses.extend(per_grid.detach().float().cpu().tolist())
            tokens += inputs.num_tokens * len(members)
        return losses, tokens

    def train_step(self) -> dict[str, float]:
        """One optimizer step (or a counted skip); returns its metrics."""
        acc, cfg = self.accelerator, self.cfg
        n_local = cfg.train.micro_batch_size * self.grad_accum
        generator = self._generator()
        self.state.attempts += 1
        losses, tokens = [], 0
        start = time.perf_counter()
        self.transformer.train()
        for i in range(self.grad_accum):
            grids = self.data.take(cfg.train.micro_batch_size)
            self.state.grids_seen += len(grids)
            last = i == self.grad_accum - 1
            batch_losses, batch_tokens = self._micro_step(grids, generator, 1.0 / n_local, last=last)
            losses += batch_losses
            tokens += batch_tokens
        loss = float(np.mean(losses))
        bad = torch.tensor(0.0 if math.isfinite(loss) else 1.0, device=self.device)
        bad = float(acc.reduce(bad, reduction="sum")) > 0
        grad_norm = acc.clip_grad_norm_(self.params, cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else math.inf)
        grad_norm = float(grad_norm) if grad_norm is not None else float("nan")
        if bad or not math.isfinite(grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            self.state.nonfinite_total += 1
            self.state.nonfinite_in_row += 1
            logger.warning("non-finite loss/grad at attempt %d (loss %s, grad norm %s): step skipped (%d in a row)",
                           self.state.attempts, loss, grad_norm, self.state.nonfinite_in_row)
            if self.state.nonfinite_in_row >= cfg.train.max_nonfinite_in_row:
                raise TrainingAborted(
                    f"{self.state.nonfinite_in_row} non-finite losses in a row (train.max_nonfinite_in_row="
                    f"{cfg.train.max_nonfinite_in_row}) at step {self.state.step}: check the data and the learning rate"
                )
            skipped = 1.0
        else:
            self.optimizer.step()
            self.lr_scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.state.step += 1
            self.state.nonfinite_in_row = 0
            skipped = 0.0
        elapsed = time.perf_counter() - start
        metrics = {
            "loss": loss, "lr": self.lr_scheduler.get_last_lr()[0], "grad_norm": grad_norm,
            "grids_per_s": acc.num_processes * n_local / elapsed, "tokens_per_s": acc.num_processes * tokens / elapsed,
            "skipped": skipped, "nonfinite_total": float(self.state.nonfinite_total),
        }
        if torch.cuda.is_available():
            metrics["gpu_mem_gb"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        return metrics

    # ------------------------------------------------------------------ loop

    def _on_signal(self, signum, frame):
        if self._stop_signal is not None:  # a second signal: stop now, without the checkpoint
            raise KeyboardInterrupt if signum == signal.SIGINT else SystemExit(128 + signum)
        self._stop_signal = signum
        logger.warning("%s: finishing this step, then saving a checkpoint (send it again to stop at once)",
                       signal.Signals(signum).name)

    def _stop_requested(self) -> bool:
        flag = torch.tensor(1.0 if self._stop_signal is not None else 0.0, device=self.device)
        return float(self.accelerator.reduce(flag, reduction="sum")) > 0

    def validate(self) -> list[Path]:
        if not self.val_grids:
            return []
        acc, cfg = self.accelerator, self.cfg
        paths: list[Path] = []
        # Under FSDP every rank must join the forward passes; otherwise the main process alone samples.
        if acc.is_main_process or acc.distributed_type == DistributedType.FSDP:
            out = self.output_dir / "validation" / f"step-{self.state.step:07d}"
            # the metric models load once, at the first validation, on the main process only
            metrics = None
            if acc.is_main_process and cfg.validation.metrics:
                from .validation_metrics import ValidationMetrics  # the metrics' imports only when they run

                if getattr(self, "validation_metrics", None) is None:
                    self.validation_metrics = ValidationMetrics.load(cfg.validation, self.device)
                metrics = self.validation_metrics
            with acc.autocast():
                run = run_validation(self.pipe, self.val_grids, out, step=self.state.step,
                                     resolution=cfg.data.resolution,
                                     num_inference_steps=cfg.validation.num_inference_steps,
                                     guidance_scale=cfg.validation.guidance, seed=cfg.validation.seed,
                                     max_sequence_length=cfg.model.max_sequence_length, device=self.device,
                                     metrics=metrics, save=acc.is_main_process)
            if acc.is_main_process and cfg.log.report_to == "tensorboard":
                # one tag per grid: TensorBoard's step slider shows the same grid step after step
                writer = acc.get_tracker("tensorboard", unwrap=True)
                for i, ((_, image), grid) in enumerate(zip(run.images, self.val_grids)):
                    writer.add_image(f"validation/grid-{i:02d}", image, self.state.step, dataformats="HWC")
                    writer.add_text(f"validation/grid-{i:02d}", f"{grid.task.id}: {grid.prompt}", self.state.step)
            means = run.means
            if means:
                if cfg.log.report_to != "none":
                    acc.log({f"validation/{name}": value for name, value in means.items()}, step=self.state.step)
                acc.print(f"validation step {self.state.step} means: "
                          + ", ".join(f"{name} {value:.4g}" for name, value in means.items())
                          + f" (per grid: {out / 'grids.json'})")
            paths = [p for p, _ in run.images]
        acc.wait_for_everyone()
        return paths

    def _after_step(self, metrics: dict[str, float], bar) -> None:
        """Progress, logs, periodic checkpoint and validation after an optimizer step."""
        cfg, step = self.cfg, self.state.step
        bar.update(1)
        bar.set_postfix(loss=f"{metrics['loss']:.4f}", gn=f"{metrics['grad_norm']:.3f}")
        if cfg.log.report_to != "none" and (step % cfg.log.every == 0 or step == 1):
            self.accelerator.log(metrics, step=step)
        if cfg.checkpoint.every and step % cfg.checkpoint.every == 0 and step < cfg.train.max_steps:
            self.save_checkpoint()
        if cfg.validation.every and step % cfg.validation.every == 0:
            self.validate()

    def train(self) -> dict[str, Any]:
        """Run to `train.max_steps` (or until SIGTERM/SIGINT); returns a summary. The output folder's
        lock (train/output_lock.py) is released when it returns or raises."""
        try:
            return self._train()
        finally:
            if self.output_lock is not None:
                self.output_lock.release()

    def _train(self) -> dict[str, Any]:
        acc, cfg = self.accelerator, self.cfg
        if cfg.checkpoint.resume:
            self.resume(cfg.checkpoint.resume)
        if acc.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        if cfg.log.report_to != "none":
            flat = {k: (v if isinstance(v, (int, float, str, bool)) else str(v))
                    for k, v in _flatten(to_dict(cfg)).items()}
            acc.init_trackers("visualcloze-lora", config=flat)
        handled = (signal.SIGTERM, signal.SIGINT) if threading.current_thread() is threading.main_thread() else ()
        previous = {s: signal.signal(s, self._on_signal) for s in handled}
        bar = tqdm(total=cfg.train.max_steps, initial=self.state.step, desc="train",
                   disable=not acc.is_local_main_process)
        interrupted = None
        try:
            while self.state.step < cfg.train.max_steps:
                metrics = self.train_step()
                self.history.append(metrics)
                if not metrics["skipped"]:
                    self._after_step(metrics, bar)
                if self._stop_requested():
                    interrupted = signal.Signals(self._stop_signal or signal.SIGTERM).name
                    break
        finally:
            bar.close()
            for s, handler in previous.items():
                signal.signal(s, handler)
        checkpoint = self.save_checkpoint()
        if interrupted:
            acc.print(f"{interrupted}: saved {checkpoint} at step {self.state.step}; "
                      f"continue with checkpoint.resume=latest")
        else:
            if cfg.validation.every and self.state.step % cfg.validation.every:
                self.validate()
        lora = self.export_lora()
        acc.end_training()
        return {"step": self.state.step, "checkpoint": checkpoint, "lora": lora, "interrupted": interrupted,
                "nonfinite_total": self.state.nonfinite_total}


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
