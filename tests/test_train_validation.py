"""Comparable validation: a fixed held-out set, the same grids/masks/prompts at every step, labelled PNGs."""

import itertools
import json

import numpy as np
import pytest
from diffusers import VisualClozeGenerationPipeline
from diffusers.pipelines.visualcloze.visualcloze_utils import VisualClozeProcessor
from PIL import Image

from graph200k import TaskGraph, is_held_out
from sampler.inference import GridProcessor
from sampler.instruction import content_prompt, diffusers_prompt, task_columns, task_prompt
from tests.sampler_shards import sample_records
from tests.train_grids import KEYS, make_grid
from train.config import ConfigError, load_config
from train.trainer import Trainer
from train.validation import LABEL_HEIGHT, compose, holdout_filters

pytestmark = pytest.mark.usefixtures("one_torch_thread", "fresh_accelerate_state")

HOLDOUT = 0.4  # holds out 4 of the 8 bundled keys (graph200k.holdout)
RECORDS = {r["__key__"]: json.loads(r["json"]) for r in sample_records()}
TEST_TASKS = {t.id for t in TaskGraph().tasks(split="test")}


def config(pretrained, out, shards, *overrides):
    return load_config(None, [
        f"model.pretrained={pretrained}", "model.weight_dtype=fp32", "model.max_sequence_length=64",
        "model.gradient_checkpointing=false", "lora.rank=4", "optim.lr=1e-2", "train.mixed_precision=no",
        f"train.output_dir={out}", "train.global_batch_size=1", "train.max_steps=4", "checkpoint.every=0",
        f"data.shards={shards}", "data.resolution=32", "data.pool_size=16", f"validation.holdout={HOLDOUT}",
        "validation.every=2", "validation.num_grids=2", "validation.num_inference_steps=1", "log.report_to=none",
        *overrides,
    ])


def test_held_out_keys_feed_validation_only(tiny_flux_fill, tmp_path, sampler_shards):
    held = {k for k in RECORDS if is_held_out(k, HOLDOUT)}
    assert 0 < len(held) < len(RECORDS)
    trainer = Trainer(config(tiny_flux_fill, tmp_path, sampler_shards))
    train_keys = {k for plan in itertools.islice(trainer.data.source.plans(), 300) for k in plan.keys}
    assert train_keys == set(RECORDS) - held  # every other key trains, no held-out one ever does
    assert len(trainer.val_grids) == 2
    for grid in trainer.val_grids:
        assert set(grid.keys) <= held and grid.task.id in TEST_TASKS
        assert grid.columns == task_columns(grid.task.nodes)  # task order, as a user lays it out
        assert all(m.sum() == 0 for m in grid.masks[:-1])
        width = grid.rows[-1].shape[-1] // grid.n_cols
        assert grid.masks[-1][:, :, -width:].all() and grid.masks[-1][:, :, :-width].sum() == 0  # the target
        query = RECORDS[grid.keys[-1]]
        content = (content_prompt(query["caption"], query["item"]) if grid.task.target == "target" else "") or None
        assert grid.prompt == diffusers_prompt(grid.n_rows, grid.n_cols, task_prompt(grid.columns), content)


def test_without_a_held_out_grid_the_holdout_key_is_named(tiny_flux_fill, tmp_path, sampler_shards):
    assert not any(is_held_out(k, 0.05) for k in RECORDS)
    with pytest.raises(ConfigError, match="'validation.holdout'"):
        Trainer(config(tiny_flux_fill, tmp_path, sampler_shards, "validation.holdout=0.05"))


def test_holdout_applies_only_when_validation_reads_data_shards():
    train, val = holdout_filters(load_config(None, ["validation.holdout=0.4"]))
    assert {k for k in RECORDS if val(k)} == {k for k in RECORDS if not train(k)} == \
        {k for k in RECORDS if is_held_out(k, 0.4)}
    assert holdout_filters(load_config(None, ["validation.shards=[held.tar]"])) == (None, None)
    assert holdout_filters(load_config(None, ["validation.holdout=0"])) == (None, None)


def _record_pipeline_inputs(monkeypatch):
    """What every validation fill hands the pipeline: cell images (None = blank) and the encoded prompt."""
    calls = []
    preprocess, t5 = GridProcessor.preprocess_image, VisualClozeGenerationPipeline._get_t5_prompt_embeds

    def recording_preprocess(self, input_images, vae_scale_factor):
        calls.append({"cells": [[None if c is None else np.asarray(c) for c in row] for row in input_images]})
        return preprocess(self, input_images, vae_scale_factor)

    def recording_t5(self, prompt=None, **kwargs):
        calls[-1]["prompt"] = prompt
        return t5(self, prompt=prompt, **kwargs)

    monkeypatch.setattr(GridProcessor, "preprocess_image", recording_preprocess)
    monkeypatch.setattr(VisualClozeGenerationPipeline, "_get_t5_prompt_embeds", recording_t5)
    return calls


def _same_inputs(a, b):
    return a["prompt"] == b["prompt"] and all(
        (x is None and y is None) or (x is not None and y is not None and np.array_equal(x, y))
        for ra, rb in zip(a["cells"], b["cells"]) for x, y in zip(ra, rb))


def test_every_validation_step_fills_the_same_grids(tiny_flux_fill, tmp_path, sampler_shards, monkeypatch):
    calls = _record_pipeline_inputs(monkeypatch)
    trainer = Trainer(config(tiny_flux_fill, tmp_path, sampler_shards))
    trainer.train()
    at_2, at_4 = calls[:2], calls[2:]
    assert len(at_4) == 2 and all(_same_inputs(a, b) for a, b in zip(at_2, at_4))
    assert [c["cells"][-1][-1] is None for c in calls] == [True] * 4  # the target is the blank

    # the text the model saw is what the stock pipeline assembles from our task and content prompts
    vc = VisualClozeGenerationPipeline.from_pretrained(tiny_flux_fill, resolution=32)
    for call, grid in zip(at_2, trainer.val_grids):
        query = RECORDS[grid.keys[-1]]
        content = (content_prompt(query["caption"], query["item"]) if grid.task.target == "target" else "") or None
        layout = VisualClozeProcessor(resolution=32).get_layout_prompt((grid.n_rows, grid.n_cols))
        vc.encode_prompt(layout_prompt=[layout], task_prompt=[task_prompt(grid.columns)], content_prompt=[content],
                         max_sequence_length=64)
        assert calls[-1]["prompt"] == call["prompt"] == [grid.prompt]

    runs = [tmp_path / "validation" / f"step-{s:07d}" for s in (2, 4)]
    manifests = [json.loads((r / "grids.json").read_text()) for r in runs]
    assert [m["step"] for m in manifests] == [2, 4] and manifests[0]["grids"] == manifests[1]["grids"]
    for name in ("grid-00.png", "grid-01.png"):
        a, b = (np.asarray(Image.open(r / name)) for r in runs)
        assert a.shape == b.shape
        assert not np.array_equal(a[:LABEL_HEIGHT], b[:LABEL_HEIGHT])  # the header names the step
        truth = slice(2 * LABEL_HEIGHT, 2 * LABEL_HEIGHT + sum(g.shape[1] for g in trainer.val_grids[0].rows))
        if name == "grid-00.png":
            assert np.array_equal(a[truth], b[truth])  # the ground truth is the same grid


def test_png_carries_step_task_and_row_labels():
    grid = make_grid(KEYS[:2], ("depth", "target"))
    generated = [Image.new("RGB", (32, 32), (0, 255, 0))]
    image = np.asarray(compose(grid, generated, step=1200, index=3))
    height = LABEL_HEIGHT + 2 * (LABEL_HEIGHT + 64) + 4
    assert image.shape[0] == height and image.shape[1] >= 64
    header = image[:LABEL_HEIGHT]
    assert (header == 40).all(axis=-1).mean() > 0.5 and (header > 200).all(axis=-1).any()  # white text on grey
    for y in (LABEL_HEIGHT, 2 * LABEL_HEIGHT + 64 + 4):  # "ground truth" and "generated" label lines
        assert (image[y:y + LABEL_HEIGHT] < 100).all(axis=-1).any()
    top, bottom = 2 * LABEL_HEIGHT, 3 * LABEL_HEIGHT + 64 + 4
    truth = ((grid.rows[1][:, :, 32:] + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    assert np.array_equal(image[top + 32:top + 64, 32:64], truth)
    assert (image[bottom + 40:bottom + 60, 36:60] == [0, 255, 0]).all()  # the generated cell, inside its outline
    assert (image[bottom + 32, 32:64] == [255, 0, 0]).all()
    other = np.asarray(compose(grid, generated, step=1300, index=3))
    assert not np.array_equal(other[:LABEL_HEIGHT], header)  # only the step label differs
    assert np.array_equal(other[LABEL_HEIGHT:], image[LABEL_HEIGHT:])
