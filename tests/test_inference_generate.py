"""`python -m inference generate` on the tiny random FLUX.1-Fill pipeline: files, LoRAs, prompts, errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml
from diffusers import VisualClozeGenerationPipeline
from PIL import Image

from graph200k import default_task_graph
from inference import InferenceError
from inference.cli import main
from inference.generate import generate_cells
from inference.inputs import load_grid
from inference.picture import GENERATED_COLOUR, grid_picture
from inference.pipeline import load_pipeline
from inference.prompts import prompt_for, resolve_task
from inference.settings import LoraSpec
from inference.spec import spec_from_args
from sampler.instruction import build_instruction, diffusers_prompt, task_columns
from tests.conftest import REPO
from tests.sampler_shards import SAMPLES

PORTRAIT = "012cd3921e1f97d761eeff580f918ff9"  # 832x1216
SQUARE = "78dc6506367d7aa43fe42a898abbfe4a"  # 1024x1024
SMALL = "data-00004-of-00022-7170"  # 512x512, with a reference and a style pair
FAST = ["--steps", "2", "--resolution", "64", "--max-sequence-length", "64"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def sample(name: str) -> str:
    return str(SAMPLES / name)


def depth_row(key: str, query: bool = False) -> str:
    return f"{sample(key + '.depth.jpg')},{'-' if query else sample(key + '.jpg')}"


def run_cli(args, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def encoded(monkeypatch) -> dict[str, list[str]]:
    """Every prompt string the VisualCloze pipeline sends to T5 and to CLIP: diffusers assembles the
    layout, task and content parts inside `encode_prompt` and hands the text to both encoders."""
    seen = {"t5": [], "clip": []}
    t5, clip = (VisualClozeGenerationPipeline._get_t5_prompt_embeds,
                VisualClozeGenerationPipeline._get_clip_prompt_embeds)

    def recording_t5(self, prompt=None, **kwargs):
        seen["t5"].extend([prompt] if isinstance(prompt, str) else prompt)
        return t5(self, prompt=prompt, **kwargs)

    def recording_clip(self, prompt, **kwargs):
        seen["clip"].extend([prompt] if isinstance(prompt, str) else prompt)
        return clip(self, prompt, **kwargs)

    monkeypatch.setattr(VisualClozeGenerationPipeline, "_get_t5_prompt_embeds", recording_t5)
    monkeypatch.setattr(VisualClozeGenerationPipeline, "_get_clip_prompt_embeds", recording_clip)
    return seen


# ---------------------------------------------------------------- the command


def test_generate_writes_the_query_sized_image_a_picture_and_a_manifest(tiny_flux_fill, tiny_flux_lora, tmp_path,
                                                                        capsys):
    spec = tmp_path / "grid.yaml"  # relative paths are read from the spec's folder
    for key in (SQUARE, PORTRAIT):
        for suffix in (".depth.jpg", ".jpg"):
            (tmp_path / f"{key}{suffix}").symlink_to(SAMPLES / f"{key}{suffix}")
    spec.write_text(yaml.safe_dump({
        "task": "depth->target", "caption": "A dog on a beach.", "item": "dog",
        "examples": [[f"{SQUARE}.depth.jpg", f"{SQUARE}.jpg"]],
        "query": [f"{PORTRAIT}.depth.jpg", None],
    }))
    out = tmp_path / "out"
    code, stdout, _ = run_cli(["generate", "--model", tiny_flux_fill, "--lora", f"{tiny_flux_lora}:0.7",
                               "--spec", spec, "--seed", "5", *FAST, "--out", out], capsys)
    assert code == 0, stdout
    generated = Image.open(out / "00-target.png")
    assert generated.size == Image.open(SAMPLES / f"{PORTRAIT}.depth.jpg").size == (832, 1216)
    assert np.asarray(generated).std() > 1  # an image, not a blank
    picture = Image.open(out / "00-grid.png")
    assert picture.width >= 64 and picture.height > 2 * 64  # two rows of 64 px cells, labels and the prompt
    manifest = json.loads((out / "generate.json").read_text())
    (grid,) = manifest["grids"]
    task = resolve_task("depth->target")
    assert grid["prompt"] == prompt_for(task, 2, "A dog on a beach.", "dog").full
    assert grid["content_prompt"] == "dog A dog on a beach."
    assert (grid["task"], grid["seed"], grid["outputs"], grid["picture"]) == ("depth->target", 5, ["00-target.png"],
                                                                              "00-grid.png")
    assert manifest["loras"] == [{"source": str(tiny_flux_lora), "weight": 0.7}]
    assert (manifest["steps"], manifest["guidance"], manifest["resolution"], manifest["model"]) == (
        2, 30.0, 64, str(tiny_flux_fill))
    assert str(out / "00-target.png") in stdout


def test_python_m_inference_generate_runs_as_a_program(tiny_flux_fill, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "inference", "generate", "--model", str(tiny_flux_fill), "--task", "depth->target",
           "--example", depth_row(SQUARE), "--query", depth_row(SMALL, query=True), *FAST, "--out", str(out)]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert Image.open(out / "00-target.png").size == (512, 512)
    assert json.loads((out / "generate.json").read_text())["grids"][0]["outputs"] == ["00-target.png"]


def test_two_blanks_give_two_images_at_the_query_size(tiny_flux_fill, tmp_path, capsys):
    ref = sample(f"{SMALL}.reference.jpg")
    out = tmp_path / "out"
    code, _, err = run_cli(["generate", "--model", tiny_flux_fill, "--task", "reference+depth->target",
                            "--example", f"{ref},{sample(SMALL + '.depth.jpg')},{sample(SMALL + '.jpg')}",
                            "--query", f"{sample(PORTRAIT + '.jpg')},-,-", *FAST, "--out", out], capsys)
    assert code == 0, err
    assert [Image.open(out / f"00-{c}.png").size for c in ("depth", "target")] == [(832, 1216)] * 2


def test_upsampling_stage_writes_the_requested_size(tiny_flux_fill, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = run_cli(["generate", "--model", tiny_flux_fill, "--prompt", "Depth to photo.", "--caption", "A cat.",
                            "--example", depth_row(SQUARE), "--query", depth_row(SMALL, query=True), *FAST,
                            "--upsample", "--upsample-strength", "0.5", "--upsample-size", "96x80", "--out", out],
                           capsys)
    assert code == 0, err
    assert Image.open(out / "00-image2.png").size == (96, 80)
    assert json.loads((out / "generate.json").read_text())["upsampling"] == {"strength": 0.5, "size": [96, 80]}


# ---------------------------------------------------------------- the prompt


@pytest.mark.parametrize("task_id, rows, caption, item", [
    ("depth->target", [[f"{SQUARE}.depth.jpg", f"{SQUARE}.jpg"], [f"{PORTRAIT}.depth.jpg", None]], "A dog.", "dog"),
    ("target->depth", [[f"{SQUARE}.jpg", f"{SQUARE}.depth.jpg"], [f"{PORTRAIT}.jpg", None]], "A dog.", ""),
    ("reference->instant_style", [[f"{SMALL}.reference.jpg", f"{SMALL}.instantstyle_ref.0.jpg", None]], "", ""),
    ("reference+depth->target", [[f"{SMALL}.reference.jpg", f"{SMALL}.depth.jpg", f"{SMALL}.jpg"],
                                 [f"{SQUARE}.jpg", f"{SQUARE}.depth.jpg", f"{SQUARE}.jpg"],
                                 [f"{PORTRAIT}.jpg", f"{PORTRAIT}.depth.jpg", None]], "", "Dog"),
])
def test_the_encoded_prompt_is_the_training_builders(tiny_flux_fill, tmp_path, capsys, encoded,
                                                      task_id, rows, caption, item):
    rows = [",".join("-" if c is None else sample(c) for c in row) for row in rows]
    code, _, err = run_cli(["generate", "--model", tiny_flux_fill, "--task", task_id,
                            *[a for r in rows[:-1] for a in ("--example", r)], "--query", rows[-1],
                            "--caption", caption, "--item", item, *FAST, "--out", tmp_path], capsys)
    assert code == 0, err
    task = default_task_graph().find(task_id.replace("+", "->").split("->"))
    expected = build_instruction(rows=len(rows), columns=task_columns(task.nodes), target_node=task.target,
                                 caption=caption, item=item, rng=np.random.default_rng(123), config=None)
    assert encoded == {"t5": [expected], "clip": [expected]}
    assert prompt_for(task, len(rows), caption, item).full == expected
    assert json.loads((tmp_path / "generate.json").read_text())["grids"][0]["prompt"] == expected


def test_the_library_api_encodes_the_full_prompt(tiny_flux_fill, encoded):
    """load_pipeline + generate_cells, as the evaluation calls them, for a task id and for a task text."""
    pipe = load_pipeline(str(tiny_flux_fill), resolution=64)
    for task, prompt in (("depth->target", None), (None, "Depth to photo.")):
        grid = load_grid(spec_from_args(examples=[depth_row(SQUARE)], query=depth_row(PORTRAIT, query=True),
                                        task=task, prompt=prompt, caption="A dog."))
        encoded["t5"].clear()
        generate_cells(pipe, grid.images, grid.prompt.task_prompt, grid.prompt.content_prompt,
                       num_inference_steps=1, guidance_scale=30.0, seed=0, max_sequence_length=64)
        assert encoded["t5"] == [grid.prompt.full]
    assert grid.prompt.full == diffusers_prompt(2, 2, "Depth to photo.", "A dog.")


# ---------------------------------------------------------------- LoRAs


def _generate(model, loras, grid):
    pipe = load_pipeline(str(model), loras, resolution=64)
    (cell,) = generate_cells(pipe, grid.images, grid.prompt.task_prompt, grid.prompt.content_prompt,
                             num_inference_steps=2, guidance_scale=30.0, seed=3, max_sequence_length=64)
    return np.asarray(cell).astype(int)


def test_a_lora_changes_the_output_and_its_weight_counts(tiny_flux_fill, tiny_flux_lora):
    grid = load_grid(spec_from_args(examples=[depth_row(SQUARE)], query=depth_row(SMALL, query=True),
                                    task="depth->target", prompt=None, caption="A dog."))
    base = _generate(tiny_flux_fill, [], grid)
    assert np.array_equal(base, _generate(tiny_flux_fill, [], grid))  # same seed, same image
    with_lora = _generate(tiny_flux_fill, [LoraSpec(str(tiny_flux_lora))], grid)
    assert np.abs(with_lora - base).mean() > 2
    assert np.array_equal(_generate(tiny_flux_fill, [LoraSpec.parse(f"{tiny_flux_lora}:0")], grid), base)
    halves = _generate(tiny_flux_fill, [LoraSpec(str(tiny_flux_lora), 0.5), LoraSpec(str(tiny_flux_lora.parent), 0.5)],
                       grid)  # two adapters (a file, a folder) at half weight each: the one LoRA at full weight
    assert np.abs(halves - with_lora).max() <= 2


def test_lora_spec_parses_weights_and_keeps_colons_in_paths():
    assert LoraSpec.parse("out/lora.safetensors:0.5") == LoraSpec("out/lora.safetensors", 0.5)
    assert LoraSpec.parse("out/lora.safetensors") == LoraSpec("out/lora.safetensors", 1.0)
    assert LoraSpec.parse("/runs/12:30/lora.safetensors") == LoraSpec("/runs/12:30/lora.safetensors", 1.0)
    assert LoraSpec.parse("owner/repo:-1") == LoraSpec("owner/repo", -1.0)


def test_lora_none_is_the_base_model_as_in_evaluate():
    from inference.cli import build_parser, settings_from_args

    args = build_parser().parse_args(["generate", "--task", "canny->target", "--lora", "none", "--out", "x"])
    assert settings_from_args(args).loras == ()


# ---------------------------------------------------------------- bad input


@pytest.fixture
def undecodable(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not an image")
    return path


@pytest.mark.parametrize("args, message", [
    (["--task", "depth->target", "--example", f"{depth_row(SQUARE)},{sample(SQUARE + '.jpg')}",
      "--query", depth_row(SMALL, query=True)], "example row 1 has 3 cell(s) but task depth->target has 2 columns "
                                                 "(depth, target)"),
    (["--task", "depth->target", "--query", depth_row(SMALL)], "query row has no blank cell"),
    (["--task", "depth->target", "--example", f"{sample(SQUARE + '.depth.jpg')},-", "--query",
      depth_row(SMALL, query=True)], "--example #1"),
    (["--task", "depth->target", "--query", f"{sample('missing.png')},-"], "query row cell 1: file"),
    (["--task", "dpeth->target", "--query", depth_row(SMALL, query=True)], "close matches: depth->target"),
    (["--query", depth_row(SMALL, query=True)], "exactly one of them"),
    (["--task", "depth->target"], "--query is missing"),
    (["--task", "depth->target", "--query=-,-"], "no example row"),  # '=': argparse reads a bare -,- as a flag
    (["--prompt", "  ", "--query", depth_row(SMALL, query=True)], "--prompt is empty"),
    (["--task", "depth->target", "--query", depth_row(SMALL, query=True), "--steps", "0"], "--steps 0"),
    (["--task", "depth->target", "--query", depth_row(SMALL, query=True), "--upsample-size", "64x64"],
     "without --upsample"),
])
def test_bad_rows_are_one_line_naming_the_problem(tiny_flux_fill, tmp_path, capsys, args, message):
    code, out, err = run_cli(["generate", "--model", tiny_flux_fill, *args, "--out", tmp_path / "out"], capsys)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()  # nothing is written, no model loaded, for a bad input


def test_an_undecodable_file_is_named(tmp_path, capsys, undecodable):
    code, _, err = run_cli(["generate", "--task", "depth->target",
                            "--example", f"{undecodable},{sample(SQUARE + '.jpg')}",
                            "--query", depth_row(SMALL, query=True), "--out", tmp_path / "out"], capsys)
    assert code == 2 and f"example row 1 cell 1: '{undecodable}' is not an image PIL can read" in err


@pytest.mark.parametrize("content, message", [
    ({"task": "depth->target", "query": ["a.png", None], "exmaples": []}, "unknown key(s) exmaples"),
    ({"task": "depth->target", "examples": [["a.png", None]], "query": ["a.png", None]}, "examples[0] cell 2 is blank"),
    ({"task": "depth->target", "examples": [["a.png", "b.png"]]}, "'query' is missing"),
    ([{"task": "depth->target", "query": ["a.png", None]}, {"prompt": "P.", "task": "depth->target",
                                                           "query": ["a.png", None]}], "grid #2: give a task id"),
])
def test_bad_spec_files_are_named(tmp_path, capsys, content, message):
    spec = tmp_path / "grids.yaml"
    spec.write_text(yaml.safe_dump(content))
    code, _, err = run_cli(["generate", "--spec", spec, "--out", tmp_path / "out"], capsys)
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_spec_excludes_the_row_flags(tmp_path, capsys):
    spec = tmp_path / "grid.json"
    spec.write_text(json.dumps({"task": "depth->target", "query": ["a.png", None]}))
    code, _, err = run_cli(["generate", "--spec", spec, "--task", "depth->target", "--out", tmp_path], capsys)
    assert code == 2 and "drop --task" in err


def test_task_ids_in_either_spelling_and_close_matches():
    assert resolve_task("reference -> depth -> target").id == "reference+depth->target"
    assert resolve_task("uniformer->target").id == "semantic_map->target"  # Graph200K's spelling
    with pytest.raises(InferenceError, match=r"--task 'canny->taget'.*close matches: canny->target"):
        resolve_task("canny->taget")


def test_evaluate_says_it_is_not_built_when_its_module_is_missing(monkeypatch, capsys):
    monkeypatch.setattr("inference.cli._evaluate_module", lambda: None)
    assert main(["evaluate"]) == 2 and "not built yet" in capsys.readouterr().err


def test_help_imports_no_torch():
    code = ("import sys\nfrom inference.cli import build_parser\ntry: build_parser().parse_args(['generate', '--help'])\n"
            "except SystemExit: pass\nassert 'torch' not in sys.modules, 'torch imported'")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------- the picture


def test_the_picture_shows_the_generated_cell_in_the_blank_outlined():
    images = [[Image.new("RGB", (64, 64), (0, 0, 255)), Image.new("RGB", (64, 64), (255, 255, 0))],
              [Image.new("RGB", (64, 64), (0, 0, 255)), None]]
    green = Image.new("RGB", (200, 200), (0, 255, 0))
    picture = np.asarray(grid_picture(images, [green], columns=["depth", "target"], prompt="P.", resolution=64))
    is_green = np.all(picture == (0, 255, 0), axis=-1)
    rows, cols = np.nonzero(is_green)
    assert is_green.sum() > 0.3 * 64 * 64  # the generated cell at cell size, less its labels and outline
    assert cols.min() >= 64 and rows.min() > 64  # in the query row's second column, not the first row
    assert np.all(picture == GENERATED_COLOUR, axis=-1).sum() > 4 * 50  # its red outline
    assert not np.all(picture == (255, 255, 0), axis=-1)[rows.min():].any()  # the example's target stays above
