"""The prompt builder against diffusers 0.42's VisualCloze pipelines: what a user's call encodes, training emits."""

import itertools
import json

import numpy as np
import pytest
import torch
from diffusers import VisualClozeGenerationPipeline
from diffusers.pipelines.visualcloze.visualcloze_utils import VisualClozeProcessor
from PIL import Image

from sampler import GridDataset
from sampler.inference import GridProcessor
from sampler.instruction import (DIFFUSERS_LAYOUT_FORM, InstructionConfig, build_instruction, content_prompt,
                                 diffusers_layout, diffusers_prompt, task_columns, task_prompt)
from tests.sampler_shards import SAMPLES, sample_records, with_key, write_shards

CONTEXT, QUERY = "78dc6506367d7aa43fe42a898abbfe4a", "2c4e256fa512cb7e7f433f4c7f9101de"
MAX_SEEDS = 200_000  # the canonical 2-column prompt in one diffusers form: p ~ 1.4e-4 per draw


def _image(name):
    with Image.open(SAMPLES / name) as im:
        return im.convert("RGB")


def _meta(key):
    return json.loads((SAMPLES / f"{key}.json").read_text())


@pytest.fixture(scope="module")
def pipeline(tiny_flux_fill):
    """The stock pipeline on the tiny Fill weights; `.encoded` collects every prompt string it encodes."""
    pipe = VisualClozeGenerationPipeline.from_pretrained(tiny_flux_fill, resolution=32)
    pipe.set_progress_bar_config(disable=True)
    pipe.encoded = []
    t5 = pipe._get_t5_prompt_embeds

    def recording_t5(prompt=None, **kwargs):  # diffusers passes the assembled prompt list here
        pipe.encoded.extend([prompt] if isinstance(prompt, str) else prompt)
        return t5(prompt=prompt, **kwargs)

    pipe._get_t5_prompt_embeds = recording_t5
    return pipe


def encoded_by_a_user_call(pipe, task, content):
    """Run the pipeline as the README does (1 step) and return the one string it encoded."""
    pipe.encoded.clear()
    images = [[_image(f"{CONTEXT}.depth.jpg"), _image(f"{CONTEXT}.jpg")], [_image(f"{QUERY}.depth.jpg"), None]]
    pipe(task_prompt=task, content_prompt=content, image=images, num_inference_steps=1, max_sequence_length=64,
         generator=torch.Generator().manual_seed(0), output_type="np")  # diffusers subscripts a None generator
    (prompt,) = pipe.encoded
    return prompt


def first_seed_emitting(prompt, **grid):
    for seed in range(MAX_SEEDS):
        if build_instruction(rng=np.random.default_rng(seed), config=InstructionConfig(), **grid) == prompt:
            return seed
    return None


def test_layout_wording_and_form_are_diffusers_own():
    for rows, cols in ((1, 2), (2, 3), (3, 4)):
        theirs = VisualClozeProcessor(resolution=384).get_layout_prompt((rows, cols))
        assert isinstance(theirs, tuple) and DIFFUSERS_LAYOUT_FORM == "tuple"  # diffusers 0.42.1's bug
        assert diffusers_layout(rows, cols, "tuple") == str(theirs)
        assert diffusers_layout(rows, cols, "sentence") == theirs[0] == GridProcessor().get_layout_prompt((rows, cols))


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("processor", ["stock (tuple layout)", "GridProcessor (sentence layout)"])
def test_what_a_diffusers_user_sends_is_a_prompt_training_emits(pipeline, processor):
    """The acceptance test: task_prompt from our builder, content_prompt = the caption."""
    pipeline.image_processor = (VisualClozeProcessor(resolution=32) if processor.startswith("stock")
                                else GridProcessor(resolution=32))
    columns = task_columns(["depth", "target"])
    caption = _meta(QUERY)["caption"]
    encoded = encoded_by_a_user_call(pipeline, task_prompt(columns), caption)
    form = "tuple" if processor.startswith("stock") else "sentence"
    assert encoded == diffusers_prompt(2, 2, task_prompt(columns), caption, layout_form=form)
    assert encoded.startswith(str(VisualClozeProcessor(resolution=32).get_layout_prompt((2, 2))) if form == "tuple"
                              else "A grid layout with 2 rows")
    # the planner passes the query's item too; the bundled samples' item is their file hash, not a name
    seed = first_seed_emitting(encoded, rows=2, columns=columns, target_node="target", caption=caption,
                               item=_meta(QUERY)["item"])
    assert seed is not None, f"no training draw among {MAX_SEEDS} emits {encoded!r}"
    # at inference settings the builder gives exactly what the stock pipeline encodes
    if form == DIFFUSERS_LAYOUT_FORM:
        assert build_instruction(rows=2, columns=columns, target_node="target", caption=caption,
                                 item=_meta(QUERY)["item"], rng=np.random.default_rng(0), config=None) == encoded


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("task, content", [("T.", None), ("T.", ""), ("", "a cat"), ("T.", " a cat ")])
def test_full_prompt_matches_the_pipelines_assembly_for_empty_and_missing_parts(pipeline, task, content):
    pipeline.encoded.clear()
    layout = VisualClozeProcessor(resolution=32).get_layout_prompt((3, 2))
    pipeline.encode_prompt(layout_prompt=[layout], task_prompt=[task], content_prompt=[content],
                           max_sequence_length=64)
    assert pipeline.encoded == [diffusers_prompt(3, 2, task, content)]


def test_task_prompt_is_fixed_without_rng_and_tags_every_column():
    columns = task_columns(["reference", "canny", "instant_style"])
    assert columns == ["reference", "canny", "instant_style_ref", "instant_style"]
    text = task_prompt(columns)
    assert text == task_prompt(columns) and text.startswith("Every row performs the same task: [IMAGE1] ")
    assert [f"[IMAGE{i}]" in text for i in (1, 2, 3, 4)] == [True] * 4 and " -> [IMAGE4] " in text
    drawn = {task_prompt(columns, rng=np.random.default_rng(s)) for s in range(20)}
    assert len(drawn) > 10  # with an rng: lead-ins and phrases vary
    with pytest.raises(ValueError, match="task_columns"):
        task_prompt([])


def test_content_prompt_is_item_then_caption():
    assert content_prompt(" A tabby kitten in daisies. ", "Kitten") == "Kitten A tabby kitten in daisies."
    assert content_prompt("A tabby kitten.", QUERY) == "A tabby kitten."  # a file hash is not a subject name
    assert content_prompt("", "") == "" and content_prompt("", "Kitten") == "Kitten"


def test_every_draw_happens_whatever_is_kept():
    grid = dict(rows=2, columns=["depth", "target"], target_node="target", caption="A cat.", item="cat")
    configs = [None, InstructionConfig(), InstructionConfig(p_task=0, p_content=0, p_drop=1, p_diffusers=1),
               InstructionConfig(p_task=1, p_content=1, p_drop=0, p_diffusers=0)]
    after = set()
    for config in configs:
        rng = np.random.default_rng(5)
        build_instruction(rng=rng, config=config, **grid)
        after.add(rng.random())
    assert len(after) == 1


def test_training_forms_and_parts_follow_their_probabilities():
    grid = dict(rows=2, columns=["depth", "target"], target_node="target", caption="A cat.", item="cat")
    n = 4000
    prompts = [build_instruction(rng=np.random.default_rng(s), config=InstructionConfig(), **grid) for s in range(n)]
    kept = [p for p in prompts if p]
    tuple_form = [p for p in kept if p.startswith("('A grid layout")]
    sentence_form = [p for p in kept if p.startswith("A grid layout with")]
    assert abs(1 - len(kept) / n - 0.1) < 0.02
    assert abs((len(tuple_form) + len(sentence_form)) / len(kept) - 0.3) < 0.03
    assert abs(len(tuple_form) / (len(tuple_form) + len(sentence_form)) - 0.5) < 0.06
    for p in tuple_form + sentence_form:
        assert "depicts: cat A cat." in p or "depicts:" not in p
    no_content = build_instruction(rng=np.random.default_rng(0), config=None, **{**grid, "target_node": "depth"})
    assert "depicts" not in no_content and no_content.endswith(".")


def test_the_planner_puts_the_query_item_into_the_content(tmp_path):
    records = [with_key(r, r["__key__"], item="Subject " + r["__key__"][:4]) for r in sample_records()]
    ds = GridDataset(write_shards(tmp_path, records, n_shards=1), seed=1, pool_size=16,
                     instruction=InstructionConfig(p_content=1, p_drop=0))
    plans = [p for p in itertools.islice(ds.plans(), 300) if p.task.target == "target" and p.rows[-1].sample.caption]
    assert plans
    for plan in plans:
        query = plan.rows[-1].sample
        assert f"{query.item} {query.caption.strip()}" in plan.prompt


def test_readme_shows_the_builders_task_prompt():
    readme = (SAMPLES.parent / "README.md").read_text()
    section = readme.split("## Using the LoRA", 1)[1].split("\n## ", 1)[0]
    shown = section.split('task_prompt="', 1)[1].split('"', 1)[0]
    assert shown == task_prompt(task_columns(["canny", "target"]))
