"""`python -m inference evaluate` on the bundled samples' shards, the tiny FLUX.1-Fill and tiny metric models.

One evaluation (2 served tasks and an unservable one, 2 queries, contexts 0 and 1, a LoRA and the
base model as baseline, 2 steps at 64 px) is run once for the module, then rerun; the tests read
what it wrote. Tiny random models: the figures test the wiring, not a model.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from diffusers import VisualClozeGenerationPipeline
from PIL import Image

from annotators.perception.canny import canny_edges
from graph200k import TaskGraph, default_task_graph
from graph200k.tasks import TEST_TASKS
from inference import InferenceError
from inference import item_generation
from inference.cli import main
from inference.item_store import GENERATED, SCORES, is_done, save_item
from inference.items import ItemRef, item_dir, select_tasks, share
from inference.scoring import RECIPES, ItemFiles, score_item
from sampler import GridDataset
from tests.metric_models import save_metric_models
from tests.sampler_shards import SAMPLES

TASKS = ["depth->target", "reference->target", "canny->target"]  # the test shards carry no canny map
SERVED = TASKS[:2]
CONTEXTS = (0, 1)
PER_TASK = 2
VARIANTS = ("lora", "baseline")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_lora(tiny_flux_lora) -> Path:
    """The LoRA under evaluation: tests/conftest.py's tiny exported LoRA (non-zero B, as `train` writes it)."""
    return tiny_flux_lora


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_metric_models(tmp_path_factory.mktemp("metric-models"))


def evaluate_args(shards, model, lora, model_dir, out, *extra) -> list[str]:
    return ["evaluate", "--shards", str(shards), "--tasks", ",".join(TASKS), "--model", str(model),
            "--lora", str(lora), "--baseline-lora", "none", "--context", ",".join(map(str, CONTEXTS)),
            "--per-task", str(PER_TASK), "--steps", "2", "--resolution", "64", "--max-sequence-length", "64",
            "--model-dir", str(model_dir), "--device", "cpu", "--out", str(out), *extra]


def run_recorded(args: list[str]) -> dict:
    """Run the CLI; return its exit code, stdout, the number of pipeline calls and every prompt sent to T5."""
    from accelerate.state import AcceleratorState

    seen = {"calls": 0, "prompts": []}
    generate, t5 = item_generation.generate_cells, VisualClozeGenerationPipeline._get_t5_prompt_embeds

    def counting(*a, **k):
        seen["calls"] += 1
        return generate(*a, **k)

    def recording_t5(self, prompt=None, **kwargs):
        seen["prompts"] += [prompt] if isinstance(prompt, str) else list(prompt)
        return t5(self, prompt=prompt, **kwargs)

    AcceleratorState._reset_state(reset_partial_state=True)
    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(stdout):
        mp.setattr(item_generation, "generate_cells", counting)
        mp.setattr(VisualClozeGenerationPipeline, "_get_t5_prompt_embeds", recording_t5)
        seen["code"] = main(args)
    AcceleratorState._reset_state(reset_partial_state=True)
    seen["stdout"] = stdout.getvalue()
    return seen


@pytest.fixture(scope="module")
def evaluation(sampler_shards, tiny_flux_fill, tiny_lora, model_dir, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("evaluate")
    args = evaluate_args(sampler_shards, tiny_flux_fill, tiny_lora, model_dir, out)
    first = run_recorded(args)
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "items").rglob(GENERATED)}
    second = run_recorded(args)
    return {"out": out, "args": args, "first": first, "second": second, "mtimes": mtimes,
            "report": {"rows": json.loads((out / "report.json").read_text()),
                       "provenance": json.loads((out / "provenance.json").read_text())}}


def items_of(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "items").rglob("item.json"))]


# ---------------------------------------------------------------- the run and its outputs


def test_report_has_a_row_per_variant_task_and_context(evaluation, tiny_lora):
    report = evaluation["report"]
    assert isinstance(report["rows"], list)  # the contract: report.json is a list of rows
    rows = {(r["variant"], r["task"], r["context"]): r for r in report["rows"]}
    assert set(rows) == {(v, t, c) for v in VARIANTS for t in TASKS for c in CONTEXTS}
    for (variant, task, context), row in rows.items():
        assert row["family"] == default_task_graph().find(re.split(r"\+|->", task)).family
        if task == "canny->target":  # unservable: reported, with the reason
            assert row["n"] == 0 and "canny: 0" in row["skipped"]["all"]
            continue
        assert row["n"] == PER_TASK
        # tiny depth annotator, CLIP and DINOv2 under --model-dir: every family metric ran; pyiqa is optional
        expected = {"depth->target": {"depth_rmse", "ssim", "clip_t", "fid", "kid"},
                    "reference->target": {"dino", "clip_i", "clip_t", "ssim", "fid", "kid"}}[task]
        if "clip_t" in row["skipped"]:  # three bundled samples have no caption: clip_t needs one
            assert row["skipped"]["clip_t"] == "the query sample has no caption"
            expected.remove("clip_t")
        assert expected <= set(row["metrics"]), (task, row)
        assert all(np.isfinite(v) for v in row["metrics"].values())
        assert {"maniqa", "musiq"} <= set(row["metrics"]) | set(row["skipped"])
    provenance = report["provenance"]
    assert provenance["lora"]["sha256"] == __import__("hashlib").sha256(tiny_lora.read_bytes()).hexdigest()
    assert provenance["baseline"] is None and provenance["steps"] == 2 and "wiring" in provenance["note"]


def test_variants_differ_and_contexts_are_paired(evaluation):
    items = items_of(evaluation["out"])
    by_query: dict = {}
    for item in items:
        by_query.setdefault((item["task"], item["index"]), []).append(item)
    assert len(by_query) == len(SERVED) * PER_TASK
    for group in by_query.values():
        assert len(group) == len(VARIANTS) * len(CONTEXTS)
        assert len({i["keys"][-1] for i in group}) == 1  # the same query in every context and variant
        assert len({i["seed"] for i in group}) == 1  # the same sampling noise: paired
        one = [i for i in group if i["context"] == 1]
        assert all(len(i["keys"]) == i["context"] + 1 for i in group)
        assert len({tuple(i["keys"]) for i in one}) == 1
    out = evaluation["out"]
    lora = np.asarray(Image.open(item_dir(out, ItemRef("lora", SERVED[0], 0, 0)) / GENERATED))
    base = np.asarray(Image.open(item_dir(out, ItemRef("baseline", SERVED[0], 0, 0)) / GENERATED))
    assert not np.array_equal(lora, base)  # the baseline column really is another model


def test_rerun_generates_nothing_and_says_so(evaluation):
    first, second = evaluation["first"], evaluation["second"]
    n_items = len(VARIANTS) * len(SERVED) * PER_TASK * len(CONTEXTS)
    assert first["code"] == 0 and first["calls"] == n_items
    assert second["code"] == 0 and second["calls"] == 0
    assert f"{n_items} already generated (skipped), 0 to generate" in second["stdout"]
    now = {p: p.stat().st_mtime_ns for p in (evaluation["out"] / "items").rglob(GENERATED)}
    assert now == evaluation["mtimes"]


def test_changed_settings_are_refused_not_mixed_in(evaluation):
    args = evaluation["args"][:]
    args[args.index("--steps") + 1] = "3"
    result = run_recorded(args)
    assert result["code"] == 2 and result["calls"] == 0


def test_prompts_are_the_training_samplers_at_inference_settings(evaluation, sampler_shards):
    """Every prompt the pipeline encoded is what `GridDataset(instruction=None)` emits for the same rows."""
    sampler_prompts = set()
    graph = TaskGraph()
    for item in items_of(evaluation["out"]):
        keys = set(item["keys"])
        grids = GridDataset(sampler_shards, resolution=64, tasks=[graph.find(item["nodes"])],
                            rows={len(keys): 1.0}, mask_any_prob=0.0, shuffle_columns=False, instruction=None,
                            key_filter=keys.__contains__, epochs=8)
        grid = next(g for g in grids if g.keys[-1] == item["keys"][-1])
        assert grid.prompt == item["prompt"]
        sampler_prompts.add(grid.prompt)
    assert set(evaluation["first"]["prompts"]) == sampler_prompts


def test_report_md_and_gallery_show_every_row_with_relative_links(evaluation):
    out = evaluation["out"]
    md = (out / "report.md").read_text()
    assert "## Table 1: conditional generation and restoration" in md and "## Table 2: subject-driven" in md
    assert "Each cell: lora / baseline." in md
    for task in SERVED:
        for context in CONTEXTS:
            assert re.search(rf"^\| {re.escape(task)} \| {context} \| 2 / 2 \|", md, re.M)
    gallery = (out / "gallery.html").read_text()
    links = re.findall(r'src="([^"]+)"', gallery)
    assert links and all(not Path(link).is_absolute() and (out / link).is_file() for link in links)
    assert sum(link.endswith(GENERATED) for link in links) == len(items_of(out))


# ---------------------------------------------------------------- scoring


def _sample(key: str, size=(64, 64)) -> Image.Image:
    with Image.open(SAMPLES / f"{key}.jpg") as image:
        return image.convert("RGB").resize(size)


def _canny_item(folder: Path, generated: Image.Image, condition_of: Image.Image) -> ItemFiles:
    condition = Image.fromarray(canny_edges(np.asarray(condition_of))).convert("RGB")
    record = {"task": "canny->target", "family": "conditional generation", "nodes": ["canny", "target"],
              "columns": ["canny", "target"], "caption": "", "item": "", "context": 0, "index": 0}
    save_item(folder, record, [[condition, condition_of]], generated)
    return ItemFiles.read(folder)


def test_controllability_reannotates_the_generated_image(tmp_path):
    """canny_f1 moves with the GENERATED image while the condition stays: the output is what is re-annotated."""
    from inference.metrics.suite import MetricSuite

    suite = MetricSuite.load(model_dir=str(tmp_path), clip=None, dino=None, iqa=())
    photo, other = _sample("2c4e256fa512cb7e7f433f4c7f9101de"), _sample("78dc6506367d7aa43fe42a898abbfe4a")
    faithful = score_item(_canny_item(tmp_path / "a", photo, photo), suite).metrics["canny_f1"]
    unfaithful = score_item(_canny_item(tmp_path / "b", other, photo), suite).metrics["canny_f1"]
    assert faithful == pytest.approx(1.0) and unfaithful < 0.5


def test_psnr_of_an_edit_ignores_the_edited_region(tmp_path):
    from inference.metrics.suite import MetricSuite

    suite = MetricSuite.load(model_dir=str(tmp_path), clip=None, dino=None, iqa=())
    truth = np.asarray(_sample("2c4e256fa512cb7e7f433f4c7f9101de"))
    mask = np.zeros(truth.shape[:2], bool)
    mask[16:48, 16:48] = True
    record = {"task": "fill_edit->target", "family": "image editing", "nodes": ["fill_edit", "target"],
              "columns": ["fill_edit", "target"], "caption": "", "item": ""}

    def psnr_of(generated: np.ndarray, name: str) -> float:
        save_item(tmp_path / name, record, [[Image.fromarray(truth), Image.fromarray(truth)]],
                  Image.fromarray(generated), edit_mask=mask)
        return score_item(ItemFiles.read(tmp_path / name), suite).metrics["psnr"]

    inside = truth.copy()
    inside[mask] = 255 - inside[mask]
    outside = truth.copy()
    outside[~mask] = np.clip(outside[~mask].astype(int) + 20, 0, 255).astype(np.uint8)
    assert psnr_of(inside, "inside") == float("inf")  # only edited pixels changed
    assert psnr_of(outside, "outside") < 30


def test_every_family_has_a_scoring_recipe():
    assert set(RECIPES) == set(TaskGraph().family_names())


# ---------------------------------------------------------------- items


def test_task_selection_by_split_id_and_family():
    graph = TaskGraph()
    assert [t.id for t in select_tasks("test", graph)] == list(TEST_TASKS)  # the paper's named test tasks
    assert [t.id for t in select_tasks("canny->target, restoration", graph)] == [
        "canny->target", "gaussian_blur->target", "inpainting->target", "rotate90->target", "elastic->target"]
    styled = graph.tasks(family="conditional generation with style")
    assert select_tasks("conditional generation with style", graph) == styled and len(styled) > 1  # no test task: all
    with pytest.raises(InferenceError, match="'restorations'"):
        select_tasks("restorations", graph)


def test_processes_share_whole_queries_and_every_item_once():
    refs = [ItemRef(v, t, c, i) for v in VARIANTS for t in SERVED for i in range(3) for c in (0, 1, 2)]
    shares = [share(refs, rank, 4) for rank in range(4)]
    assert sorted(r for s in shares for r in s) == sorted(refs)
    owner = {(r.variant, r.task, r.index): rank for rank, s in enumerate(shares) for r in s}
    assert all(owner[(r.variant, r.task, r.index)] == rank for rank, s in enumerate(shares) for r in s)
    assert all(shares)


def test_an_interrupted_item_leaves_no_folder(tmp_path):
    class Broken:
        size = (8, 8)

        def save(self, path):
            raise OSError("disk full")

    with pytest.raises(OSError):
        save_item(tmp_path / "0000", {"task": "x"}, [[Broken()]], Broken())
    assert not is_done(tmp_path / "0000") and list(tmp_path.iterdir()) == []
    assert not (tmp_path / "0000" / SCORES).exists()
