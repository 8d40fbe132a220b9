"""The trainer's validation scores its fixed grids with the evaluation's cheap metrics and logs them."""

import io
import json
import logging
import math

import numpy as np
import pytest
import torch
from PIL import Image

from annotators.perception.canny import canny_edges
from graph200k import default_task_graph
from inference.metrics import ClipScorer, canny_f1, psnr, ssim
from inference.metrics.metric_models import CLIP_VIT_L14
from sampler.grid_sample import GridSample
from sampler.instruction import content_prompt, diffusers_prompt, task_prompt
from tests.metric_models import save_tiny_clip
from tests.sampler_shards import sample_records, write_shards
from tests.train_grids import KEYS, cell, make_grid, two_fixed_grids
from train import validation
from train.config import VALIDATION_METRICS, ConfigError, ValidationConfig, load_config
from train.data import InMemoryGrids
from train.trainer import Trainer
from train.validation import LABEL_HEIGHT, to_pil
from train.validation_metrics import ValidationMetrics, content_text

pytestmark = pytest.mark.usefixtures("one_torch_thread", "fresh_accelerate_state")

RECORDS = {r["__key__"]: json.loads(r["json"]) for r in sample_records()}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    return save_tiny_clip(tmp_path_factory.mktemp("tiny-clip") / "clip", seed=2)  # a seed whose cosines are > 0


@pytest.fixture(scope="module")
def canny_shards(tmp_path_factory):
    """The captioned bundled samples with Canny maps (the data's annotator, detecting at 48 px so that the
    edges survive the 32 px cells; the bundle carries none)."""
    records = []
    for record in sample_records():
        if not json.loads(record["json"])["caption"]:
            continue
        photo = np.asarray(Image.open(io.BytesIO(record["target.jpg"])).convert("RGB"))
        png = io.BytesIO()
        Image.fromarray(canny_edges(photo, resolution=48)).save(png, format="PNG")
        records.append({**record, "canny.png": png.getvalue()})
    out = tmp_path_factory.mktemp("canny-shards")
    write_shards(out, records, n_shards=1)
    return out


def config(pretrained, out, *overrides):
    return load_config(None, [
        f"model.pretrained={pretrained}", "model.weight_dtype=fp32", "model.max_sequence_length=64",
        "model.gradient_checkpointing=false", "lora.rank=4", "optim.lr=1e-2", "train.mixed_precision=no",
        f"train.output_dir={out}", "train.global_batch_size=1", "train.max_steps=2", "checkpoint.every=0",
        "data.resolution=32", "data.pool_size=16", "validation.num_grids=2", "validation.num_inference_steps=1",
        *overrides,
    ])


def scalars(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = min((p.parent for p in log_dir.rglob("events.out.tfevents.*")), key=lambda p: len(p.parts))
    acc = EventAccumulator(str(events))  # the run's own file (add_hparams writes one in a subfolder)
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def query_truth_cells(png, grid):
    """The query row's ground-truth cells, cut from the validation PNG's upper grid."""
    image = np.asarray(Image.open(png))
    top = 2 * LABEL_HEIGHT + sum(r.shape[1] for r in grid.rows[:-1])
    height, width = grid.rows[-1].shape[1], grid.rows[-1].shape[2] // grid.n_cols
    return [image[top:top + height, c * width:(c + 1) * width] for c in range(grid.n_cols)]


def test_validation_logs_canny_clip_ssim_psnr(tiny_flux_fill, tiny_clip, sampler_shards, canny_shards, tmp_path,
                                              monkeypatch):
    fills, texts = [], []  # what each validation fill generated, and the texts clip_t scored against
    fill_grid, clip_text = validation.fill_grid, ClipScorer.text

    def recording_fill(*args, **kwargs):
        fills.append(fill_grid(*args, **kwargs))
        return fills[-1]

    def recording_text(self, images, given):
        texts.append(list(given))
        return clip_text(self, images, given)

    monkeypatch.setattr(validation, "fill_grid", recording_fill)
    monkeypatch.setattr(ClipScorer, "text", recording_text)
    trainer = Trainer(config(tiny_flux_fill, tmp_path, f"data.shards={sampler_shards}",
                             f"validation.shards={canny_shards}", "validation.tasks=canny->target",
                             "validation.every=2",
                             "validation.metrics=[canny_f1, clip_t, ssim, psnr]", f"validation.clip_model={tiny_clip}",
                             "log.report_to=tensorboard"))
    assert trainer.train()["step"] == 2

    step_dir = tmp_path / "validation" / "step-0000002"
    report = json.loads((step_dir / "grids.json").read_text())["metrics"]
    assert report["skipped"] == {} and len(report["per_grid"]) == len(fills) == 2
    clip = ClipScorer.load(str(tiny_clip), device="cpu")
    monkeypatch.undo()
    for i, (grid, values, (generated,)) in enumerate(zip(trainer.val_grids, report["per_grid"], fills)):
        truth = query_truth_cells(step_dir / f"grid-{i:02d}.png", grid)
        produced = generated.resize(truth[1].shape[1::-1])
        query = RECORDS[grid.keys[-1]]
        caption = content_prompt(query["caption"], query["item"])
        assert grid.columns == ["canny", "target"] and caption
        assert texts[i] == [caption]  # clip_t reads the caption out of the instruction
        assert values == pytest.approx({
            "canny_f1": canny_f1(truth[0], produced),  # the condition's edges vs the generated photo's
            "clip_t": clip.text([produced], [caption])[0],
            "ssim": ssim(produced, truth[1]), "psnr": psnr(produced, truth[1]),  # vs the ground-truth photo
        }, abs=1e-6)
    logged = scalars(tmp_path / "logs")
    for name in ("canny_f1", "clip_t", "ssim", "psnr"):
        assert logged[f"validation/{name}"] == {2: pytest.approx(report["means"][name], abs=1e-5)}
        assert report["means"][name] == pytest.approx(np.mean([v[name] for v in report["per_grid"]]))


def test_missing_clip_is_skipped_with_one_warning(tiny_flux_fill, tmp_path, caplog, capsys):
    grids = two_fixed_grids()  # depth->target and hed->target: no canny column
    cfg = config(tiny_flux_fill, tmp_path, "validation.every=1", "validation.metrics=[canny_f1, clip_t, ssim]",
                 "validation.clip_model=example-org/no-such-clip")
    with caplog.at_level(logging.WARNING, logger="train"):
        summary = Trainer(cfg, train_data=InMemoryGrids(grids), val_grids=grids).train()
    assert summary["step"] == 2
    warnings = [r.getMessage() for r in caplog.records if "clip_t" in r.getMessage()]
    assert len(warnings) == 1  # two validations, one warning
    assert "example-org/no-such-clip" in warnings[0] and "how to enable: hf download" in warnings[0]
    for step in (1, 2):
        report = json.loads((tmp_path / "validation" / f"step-{step:07d}" / "grids.json").read_text())["metrics"]
        assert list(report["skipped"]) == ["clip_t"]
        assert [set(v) for v in report["per_grid"]] == [{"ssim"}, {"ssim"}]
    printed = capsys.readouterr().out
    assert "validation step 2 means: ssim " in printed and "clip_t" not in printed


def test_metric_names_are_checked():
    with pytest.raises(ConfigError, match=r"'validation.metrics': unknown 'fid'; choose from canny_f1, clip_t"):
        load_config(None, ["validation.metrics=[canny_f1, fid]"])
    with pytest.raises(ConfigError, match="'validation.metrics_on'"):
        load_config(None, ["validation.metrics_on=gpu"])
    assert load_config(None, ["validation.metrics=[]"]).validation.metrics == []
    assert ValidationConfig().clip_model == CLIP_VIT_L14.repo_id  # the evaluation's CLIP by default
    assert set(ValidationConfig().metrics) <= set(VALIDATION_METRICS)


def canny_grid(prompt: str, size: int = 256) -> GridSample:
    """One row canny -> target, the canny cell made by the data's own annotator from the target (at 256 px:
    detecting at 512, the annotator finds hardly an edge in a 32 px cell)."""
    target = cell(KEYS[0], "target", size)
    edges = canny_edges(np.asarray(to_pil(target)))
    assert edges.any()
    edges = torch.from_numpy(np.repeat(edges[:, :, None], 3, axis=2)).permute(2, 0, 1) / 127.5 - 1
    mask = torch.zeros(1, size, 2 * size)
    mask[:, :, size:] = 1
    task = next(t for t in default_task_graph().tasks() if t.id == "canny->target")
    return GridSample(rows=[torch.cat([edges, target], dim=2)], masks=[mask], prompt=prompt, task=task,
                      columns=["canny", "target"], keys=[KEYS[0]])


def test_scores_use_the_right_cells_and_apply_only_where_they_mean_something():
    metrics = ValidationMetrics(("canny_f1", "ssim", "psnr"))
    grid = canny_grid(diffusers_prompt(1, 2, task_prompt(["canny", "target"]), "a chair"))
    photo = to_pil(grid.rows[0][:, :, 256:])
    assert metrics.score(grid, [photo]) == {"canny_f1": 1.0, "ssim": pytest.approx(1.0), "psnr": math.inf}
    flat = metrics.score(grid, [Image.new("RGB", (48, 48), (128, 128, 128))])  # resized to the cell first
    assert flat["canny_f1"] == 0.0 and flat["ssim"] < 0.5 and flat["psnr"] < 30

    reverse = make_grid(KEYS[:2], ("depth", "target"), masked_column=0)  # a depth map is generated
    assert set(metrics.score(reverse, [photo])) == {"ssim", "psnr"}


def test_content_text_is_the_caption_part_of_a_validation_prompt():
    columns = ["canny", "target"]
    assert content_text(diffusers_prompt(2, 2, task_prompt(columns), "chair a wooden chair")) == \
        "chair a wooden chair"
    assert content_text(diffusers_prompt(2, 2, task_prompt(["target", "depth"]), None)) is None
    assert content_text("Generate the target from the depth.") is None
