"""The four generative annotators on tiny random pipelines, loaded through their real from_pretrained paths.

Each test builds nothing itself: the stand-ins (tests/tiny_generative.py) are
written once per module and every annotator loads them by folder, exactly as
it loads the Hub repositories. Steps are 2 and generation runs at 32 px; the
outputs are resized to the real fixture targets' sizes.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from annotators.base import NODE_METADATA, SampleInput, output_fields
from annotators.generative.caption_edit import CaptionEdit, EditParseError
from annotators.cli import main as annotators_main
from annotators.cli import parse_settings
from annotators.generative.depth_edit import DepthEditAnnotator
from annotators.generative.fill_edit import FillEditAnnotator
from annotators.generative.instant_style import InstantStyleAnnotator
from annotators.generative.redux_style import ReduxStyleAnnotator
from annotators.runner import RunConfig, collect_errors, run
from annotators.generative.style_pool import DEMO_STYLE_DIR, StylePool
from graph200k.catalog import DEFAULT_NODES
from graph200k.decode import decode_image
from graph200k.layout import merge_metadata
from graph200k.packing import pack
from graph200k.shardio import iter_samples
from sampler import GridDataset
from tests import tiny_generative as tiny
from tests.conftest import REPO

SAMPLES = REPO / "samples"
PORTRAIT = "012cd3921e1f97d761eeff580f918ff9"  # caption, depth, foreground mask
GROUNDED = "0fdaecdb7906a1bf0d6e202363f15de3"  # grounded mask, no caption
TAUGHT = CaptionEdit("a bronze statue", "A weathered bronze statue with a green patina.",
                     "A bronze statue stands in the same place, weathered green, in soft natural light.")
FAST = {"resolution": "32", "num_inference_steps": "2", "device": "cpu"}


def _image(key: str, node: str | None = None, mode: str = "RGB", long_side: int = 96) -> np.ndarray:
    """A fixture image scaled to `long_side` (tiny models; the size check still uses a real aspect ratio)."""
    name = f"{key}.jpg" if node is None else f"{key}.{node}.jpg"
    image = decode_image((SAMPLES / name).read_bytes(), mode)
    h, w = image.shape[:2]
    size = (long_side, round(h * long_side / w)) if w >= h else (round(w * long_side / h), long_side)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if node is None else cv2.INTER_NEAREST)


def _caption(key: str) -> str:
    return json.loads((SAMPLES / f"{key}.json").read_text())["caption"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("generative-weights")
    captions = [_caption(PORTRAIT), _caption("2c4e256fa512cb7e7f433f4c7f9101de")]
    paths = tiny.save_tiny_generative(root, teach_answer=json.dumps(TAUGHT.to_json()), teach_captions=captions)
    paths["llm-untaught"] = tiny.save_tiny_llm(root / "llm-untaught")
    return paths


def _settings(weights: dict[str, Path]) -> dict[str, dict[str, str]]:
    """`--set` values pointing every generative annotator at the tiny stand-ins."""
    return {
        "instant_style": {**FAST, "model": str(weights["sdxl"]), "controlnet": str(weights["controlnet-canny"]),
                          "ip_adapter": str(weights["ip-adapter"])},
        "redux_style": {**FAST, "model": str(weights["flux-depth"]), "redux": str(weights["flux-redux"])},
        "fill_edit": {**FAST, "model": str(weights["flux-fill"]), "llm": str(weights["llm"])},
        "depth_edit": {**FAST, "model": str(weights["flux-depth"]), "llm": str(weights["llm"])},
    }


def _annotator(cls, weights, **overrides):
    annotator = cls(DEFAULT_NODES, {**_settings(weights)[cls.name], **overrides})
    assert annotator.availability().ok, annotator.availability()
    annotator.load()
    return annotator


def _portrait(**nodes) -> SampleInput:
    return SampleInput(PORTRAIT, _image(PORTRAIT), nodes, {"caption": _caption(PORTRAIT)})


# --- style transfer ---------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [InstantStyleAnnotator, ReduxStyleAnnotator], ids=["instant_style", "redux_style"])
def test_style_gives_k_target_sized_pairs_with_their_references_and_seeds(weights, cls):
    annotator = _annotator(cls, weights)
    sample = _portrait(depth=_image(PORTRAIT, "depth", "L"))
    (result,) = annotator.annotate([sample])
    node = cls.produces[0]
    pairs, meta = result[node], result[NODE_METADATA][node]
    assert len(pairs) == 3 == len(meta["instances"])  # K = 3, as in the release
    pool = StylePool(DEMO_STYLE_DIR)
    for (image, style), inst in zip(pairs, meta["instances"]):
        assert image.shape == sample.target.shape and image.dtype == np.uint8
        assert np.array_equal(style, pool.load(pool.folder / inst["style"]))  # the pair is the reference used
    assert len({i["style"] for i in meta["instances"]}) == 3 and len({i["seed"] for i in meta["instances"]}) == 3
    fields = output_fields(DEFAULT_NODES.get(node), pairs)
    assert sorted(fields) == sorted([f"{node}.{i}.jpg" for i in range(3)] + [f"{node}_ref.{i}.jpg" for i in range(3)])

    # a fresh worker regenerates instance 0 from its recorded seed; another base seed gives another image
    (again,) = _annotator(cls, weights, instances="1").annotate([sample])
    assert np.array_equal(again[node][0][0], pairs[0][0])
    assert again[NODE_METADATA][node]["instances"] == meta["instances"][:1]
    other = _annotator(cls, weights, seed="7", instances="1").annotate([sample])[0]
    assert len(other[node]) == 1 and not np.array_equal(other[node][0][0], pairs[0][0])


def test_style_pool_draws_distinct_references_per_sample_reproducibly(tmp_path):
    pool = StylePool()
    picks = pool.choose(0, "instant_style", "a", 3)
    assert picks == pool.choose(0, "instant_style", "a", 3) and len(set(picks)) == 3
    assert any(pool.choose(0, "instant_style", k, 3) != picks for k in ("b", "c", "d"))
    (tmp_path / "one.jpg").write_bytes(pool.files[0].read_bytes())
    assert len(StylePool(tmp_path).choose(0, "redux_style", "a", 3)) == 3  # a pool smaller than K repeats
    with pytest.raises(ValueError, match="does not exist"):
        StylePool(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no"):
        StylePool(tmp_path / "empty")


# --- editing ------------------------------------------------------------------------------------------

def test_fill_edit_repaints_the_grounded_mask_k_times_and_keeps_the_background(weights):
    annotator = _annotator(FillEditAnnotator, weights, mask_dilate="2", feather="2")  # 96 px targets
    target, mask = _image(GROUNDED), _image(GROUNDED, "mask")
    sample = SampleInput(GROUNDED, target, {"grounded_mask": mask, "foreground": np.zeros(target.shape[:2], np.uint8)},
                         {"caption": _caption(PORTRAIT)})
    (result,) = annotator.annotate([sample])
    images, meta = result["fill_edit"], result[NODE_METADATA]["fill_edit"]
    assert len(images) == 5 == len({i["seed"] for i in meta["instances"]})  # K = 5, as in the release
    assert (meta["name"], meta["description"], meta["caption"]) == (TAUGHT.name, TAUGHT.description, TAUGHT.caption)
    assert meta["mask"] == "grounded_mask"
    assert (meta["steps"], meta["guidance"], meta["mask_dilate"]) == (2, 30.0, 2)  # recorded under the former names
    subject = mask.max(axis=2) > 127
    far = cv2.dilate(subject.astype(np.uint8), np.ones((17, 17), np.uint8)) == 0  # beyond dilation + feather
    assert far.mean() > 0.2
    for image in images:
        assert image.shape == target.shape
        assert np.array_equal(image[far], target[far])  # the background is the target's own pixels
        assert np.abs(image[subject].astype(int) - target[subject]).mean() > 5  # the subject was repainted
    (again,) = _annotator(FillEditAnnotator, weights, mask_dilate="2", feather="2", instances="1").annotate([sample])
    assert np.array_equal(again["fill_edit"][0], images[0])  # instance 0 regenerated from its seed


def test_fill_edit_falls_back_to_the_foreground_mask(weights):
    annotator = _annotator(FillEditAnnotator, weights, instances="1")
    (result,) = annotator.annotate([_portrait(foreground=_image(PORTRAIT, "foreground", "L"))])
    assert result[NODE_METADATA]["fill_edit"]["mask"] == "foreground" and len(result["fill_edit"]) == 1
    with pytest.raises(ValueError, match="neither grounded_mask nor foreground"):
        annotator.annotate([_portrait()])
    assert FillEditAnnotator.needs() == () and set(FillEditAnnotator.reads()) == {"grounded_mask", "foreground"}


def test_depth_edit_draws_the_rewritten_caption_on_the_depth_map(weights):
    annotator = _annotator(DepthEditAnnotator, weights)
    sample = _portrait(depth=_image(PORTRAIT, "depth", "L"))
    (result,) = annotator.annotate([sample])
    meta = result[NODE_METADATA]["depth_edit"]
    assert result["depth_edit"].shape == sample.target.shape
    assert meta["caption"] == TAUGHT.caption and len(meta["instances"]) == 1
    assert list(output_fields(DEFAULT_NODES.get("depth_edit"), result["depth_edit"])) == ["depth_edit.jpg"]
    assert np.array_equal(annotator.annotate([sample])[0]["depth_edit"], result["depth_edit"])


@pytest.mark.parametrize("cls", [FillEditAnnotator, DepthEditAnnotator], ids=["fill_edit", "depth_edit"])
def test_an_unparseable_rewrite_fails_the_sample_with_the_reason(weights, cls):
    annotator = _annotator(cls, weights, llm=str(weights["llm-untaught"]), llm_max_new_tokens="24")
    with pytest.raises(EditParseError):
        annotator.annotate([_portrait(depth=_image(PORTRAIT, "depth", "L"),
                                      foreground=_image(PORTRAIT, "foreground", "L"))])


# --- settings, list, the whole run --------------------------------------------------------------------

def test_settings_come_from_set_and_style_dir_and_bad_ones_are_named():
    settings = parse_settings(["fill_edit.num_inference_steps=3", "FillEdit.instances=2"], "/pool")
    assert settings["fill_edit"] == {"num_inference_steps": "3", "instances": "2"}
    assert settings["instant_style"]["style_dir"] == settings["redux_style"]["style_dir"] == "/pool"
    assert FillEditAnnotator(DEFAULT_NODES, settings["fill_edit"]).settings.num_inference_steps == 3
    with pytest.raises(ValueError, match="ANNOTATOR.SETTING=VALUE"):
        parse_settings(["num_inference_steps=3"], None)
    with pytest.raises(ValueError, match="no setting 'step'"):
        FillEditAnnotator(DEFAULT_NODES, {"step": "3"})
    with pytest.raises(ValueError, match="cannot read 'many' as int"):
        FillEditAnnotator(DEFAULT_NODES, {"instances": "many"})


def test_list_shows_each_models_licence_and_why_it_cannot_run(capsys):
    assert annotators_main(["list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    for name in ("redux_style", "fill_edit", "depth_edit"):
        assert "Non-Commercial" in rows[name]["license"] and "gated" in rows[name]["license"]
    assert "Apache-2.0" in rows["instant_style"]["license"] and "RAIL" in rows["instant_style"]["license"]
    assert rows["redux_style"]["needs"] == "depth" and rows["fill_edit"]["needs"] == "grounded_mask?, foreground?"
    assert rows["fill_edit"]["available"].startswith("no:")


def test_run_and_pack_serve_every_style_and_editing_family(weights, tmp_path):
    out = tmp_path / "demo"
    settings = _settings(weights)  # fewer instances than the defaults keep the real-size run short
    for name, k in (("instant_style", "1"), ("redux_style", "1"), ("fill_edit", "2")):
        settings[name]["instances"] = k
    summary = run(RunConfig(input=SAMPLES, out=out, progress=False, num_cpus=2, gpus_per_worker=0,
                            cpus_per_worker=1, settings=settings,
                            annotators=["canny", "instant_style", "redux_style", "fill_edit", "depth_edit"]))
    rows = {r.annotator: r for r in summary.annotators}
    assert all(rows[n].status == "ran" for n in ("instant_style", "redux_style", "fill_edit", "depth_edit"))
    assert rows["instant_style"].already_present == 6  # the release's imported instantstyle files are kept
    assert rows["redux_style"].written == 6  # every sample with a depth map
    assert rows["fill_edit"].written == 3 and rows["depth_edit"].written == 3  # the captioned ones
    errors = [e for e in collect_errors(out) if e["stage"] in ("fill_edit", "depth_edit")]
    captioned = {PORTRAIT, "2c4e256fa512cb7e7f433f4c7f9101de", "78dc6506367d7aa43fe42a898abbfe4a"}
    assert {e["key"] for e in errors if e["stage"] == "depth_edit"} == {p.stem for p in SAMPLES.glob("*.jpg")
                                                                        if "." not in p.stem} - captioned
    reasons = ("no caption", "no subject mask", "needs node 'depth'")
    assert all(any(r in e["reason"] for r in reasons) for e in errors), errors

    card = pack(out, progress=False).card
    for node in ("instant_style", "redux_style", "fill_edit", "depth_edit"):
        assert card["node_counts"][node] > 0, node
    for family in ("style transfer", "conditional generation with style", "style transfer with condition",
                   "image editing", "image editing with reference"):
        assert card["families"][family]["tasks_served"] > 0, family
    packed = {s["__key__"]: s for t in sorted((out / "shards").glob("train-*.tar")) for s in iter_samples(t)}
    meta = json.loads(packed[PORTRAIT]["json"])
    assert meta["caption"] == _caption(PORTRAIT)  # the source metadata survives the merge
    assert meta["fill_edit"]["name"] == TAUGHT.name and len(meta["fill_edit"]["instances"]) == 2
    assert len(meta["redux_style"]["instances"]) == 1 and "seed" in meta["depth_edit"]["instances"][0]
    assert {"fill_edit.0.jpg", "fill_edit.1.jpg", "redux_style_ref.0.jpg", "depth_edit.jpg"} <= set(packed[PORTRAIT])

    # the sampler draws grids of the generated nodes: a style node shows its reference beside it
    for node in ("redux_style", "fill_edit", "depth_edit"):
        task = next(t for t in card["tasks"] if node in t["nodes"] and "reference" not in t["nodes"] and t["samples"])
        grid = next(iter(GridDataset(out / "shards", tasks=[task["id"]], resolution=64, rows={1: 1.0}, epochs=1,
                                     pool_size=8)))
        assert grid.task.id == task["id"] and node in grid.columns
        query = grid.rows[-1]
        assert query.shape[0] == 3 and query.shape[2] % len(grid.columns) == 0 and grid.masks[-1].sum() > 0
        if node == "redux_style":
            assert "redux_style_ref" in grid.columns


def test_node_metadata_joins_the_sample_metadata_and_the_source_keys_win():
    source = {"target.jpg": b"x", "json": json.dumps({"caption": "a cat", "fill_edit": {"name": "imported"}}).encode()}
    depth_edit = {"depth_edit.jpg": b"y", "json": json.dumps({"depth_edit": {"seed": 3}}).encode()}
    fill_edit = {"json": json.dumps({"fill_edit": {"name": "generated"}}).encode()}
    merged = json.loads(merge_metadata(source, depth_edit, fill_edit)["json"])
    assert merged == {"caption": "a cat", "depth_edit": {"seed": 3}, "fill_edit": {"name": "imported"}}
    assert merge_metadata(source, {"depth_edit.jpg": b"y"}) is source  # nothing to merge: untouched
