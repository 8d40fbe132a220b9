"""The model-backed perception annotators: tiny random models through the real loading code, formats on real maps."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotators.base import NODE_METADATA, SampleInput, WithExtras, output_fields
from annotators.perception.colour_masks import distinct_colours, render_masks
from annotators.perception.depth import DepthAnnotator
from annotators.perception.depth_map import normalise_depth
from annotators.perception.foreground import ForegroundMaskAnnotator
from annotators.perception.grounding import GroundedSegmentationAnnotator
from annotators.perception.hed import HedAnnotator
from annotators.perception.mlsd import MlsdAnnotator
from annotators.perception.normal import NormalAnnotator
from annotators.perception.normal_map import renormalise, rgb_to_normals
from annotators.perception.openpose import OpenposeAnnotator
from annotators.perception.qwen_boxes import BoxParseError
from annotators.runner import RunConfig, collect_errors, run
from annotators.perception.sam2_masks import Sam2MaskAnnotator
from annotators.perception.segmentation_palette import ade20k_palette, colourise_labels
from annotators.perception.semantic import SemanticSegmentationAnnotator
from graph200k.catalog import DEFAULT_NODES
from graph200k.shardio import iter_samples, read_stats
from tests import perception_models as tiny

FIXTURES = Path("/work/shared/fixtures/graph200k-samples")
if not FIXTURES.is_dir():
    FIXTURES = Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures" / "graph200k-samples"
WITH_MAPS = sorted(p.parent for p in FIXTURES.glob("*/normal.jpg"))
ANGEL = FIXTURES / "78dc6506367d7aa43fe42a898abbfe4a"


def _load(path: Path, mode: str = "RGB") -> np.ndarray:
    return np.asarray(Image.open(path).convert(mode))


def _small_targets() -> list[SampleInput]:
    """The angel fixture at two small sizes (models here are tiny; sizes differ to test batching by size)."""
    target = Image.open(ANGEL / "target.jpg").convert("RGB")
    return [SampleInput("wide", np.asarray(target.resize((80, 48))), meta={"caption": "an angel and a lion"}),
            SampleInput("square", np.asarray(target.resize((64, 64))), meta={"caption": "an angel and a lion"}),
            SampleInput("wide2", np.asarray(target.resize((80, 48)))[:, ::-1].copy())]


def _annotator(cls, root: Path, **settings):
    annotator = cls(DEFAULT_NODES, {"model_dir": str(root), **settings})
    assert annotator.availability().ok, annotator.availability()
    annotator.load()
    return annotator


# --- tiny models, built once per module ------------------------------------------------------------

@pytest.fixture(scope="module")
def models_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("weights")


@pytest.fixture(scope="module")
def lllyasviel(models_root):
    return tiny.lllyasviel_annotators(models_root)


# --- controlnet_aux annotators ---------------------------------------------------------------------

@pytest.mark.parametrize("cls, node, channels", [
    (HedAnnotator, "hed", 1), (MlsdAnnotator, "mlsd", 1), (OpenposeAnnotator, "openpose", 3),
    (NormalAnnotator, "normal", 3),
])
def test_controlnet_aux_annotator_loads_from_folder_and_fits_target(lllyasviel, models_root, cls, node, channels):
    small = {} if cls is OpenposeAnnotator else {"detect_resolution": "64"}  # openpose detects at the image's size
    annotator = _annotator(cls, models_root, **small)
    batch = _small_targets()[:2]
    results = annotator.annotate(batch)
    assert len(results) == len(batch)
    for sample, result in zip(batch, results):
        image = result[node]
        h, w = sample.target.shape[:2]
        assert image.dtype == np.uint8
        assert image.shape == ((h, w) if channels == 1 else (h, w, 3))
        fields = output_fields(DEFAULT_NODES.get(node), image)
        stored = Image.open(io.BytesIO(fields[f"{node}.png"]))
        assert stored.size == (w, h) and stored.mode == ("L" if channels == 1 else "RGB")
    if node == "normal":  # the map is renormalised: every pixel a unit vector in the fixtures' convention
        lengths = np.linalg.norm(results[0]["normal"].astype(float) / 127.5 - 1, axis=-1)
        assert np.abs(lengths - 1).max() < 0.02


def test_weights_in_neither_folder_nor_cache_make_the_annotator_unavailable(tmp_path):
    found = HedAnnotator(DEFAULT_NODES, {"model_dir": str(tmp_path)}).availability()
    assert not found.ok and "lllyasviel/Annotators" in found.reason
    assert "download" in found.how_to_enable
    (tmp_path / "lllyasviel" / "Annotators").mkdir(parents=True)
    found = HedAnnotator(DEFAULT_NODES, {"model_dir": str(tmp_path)}).availability()
    assert not found.ok and "ControlNetHED.pth" in found.reason


# --- transformers annotators -----------------------------------------------------------------------

def test_depth_anything_output_is_min_max_grayscale_at_target_size(models_root):
    tiny.depth_anything(models_root)
    annotator = _annotator(DepthAnnotator, models_root)
    batch = _small_targets()
    for sample, result in zip(batch, annotator.annotate(batch)):
        depth = result["depth"]
        assert depth.shape == sample.target.shape[:2] and depth.dtype == np.uint8
        assert depth.min() == 0 and depth.max() == 255


def test_semantic_map_uses_only_ade20k_palette_colours(models_root):
    tiny.upernet(models_root)
    annotator = _annotator(SemanticSegmentationAnnotator, models_root)
    batch = _small_targets()
    palette = {tuple(c) for c in ade20k_palette()}
    for sample, result in zip(batch, annotator.annotate(batch)):
        seg = result["semantic_map"]
        assert seg.shape == (*sample.target.shape[:2], 3)
        assert {tuple(c) for c in seg.reshape(-1, 3)} <= palette


@pytest.fixture(scope="module")
def sam2_folder(models_root):
    return tiny.sam2(models_root)


def test_sam2_automatic_masks_are_flat_distinct_colours(sam2_folder, models_root):
    annotator = _annotator(Sam2MaskAnnotator, models_root, points_per_side="4", pred_iou_thresh="0",
                           stability_score_thresh="0", min_area_fraction="0.01")
    batch = _small_targets()[:2]
    results = annotator.annotate(batch)
    for sample, result in zip(batch, results):
        canvas = result["sam2_mask"]
        assert canvas.shape == (*sample.target.shape[:2], 3) and canvas.dtype == np.uint8
    colours = {tuple(c) for c in results[0]["sam2_mask"].reshape(-1, 3)} - {(0, 0, 0)}
    assert colours, "the random model's masks pass the zero thresholds, so some are painted"
    assert colours <= {tuple(c) for c in distinct_colours(64)}


def test_foreground_needs_trust_remote_code_then_writes_a_white_on_black_mask(models_root):
    tiny.birefnet_remote_code(models_root)
    refused = ForegroundMaskAnnotator(DEFAULT_NODES, {"model_dir": str(models_root)}).availability()
    assert not refused.ok and "--trust-remote-code" in refused.how_to_enable
    annotator = _annotator(ForegroundMaskAnnotator, models_root, trust_remote_code="true", resolution="32")
    batch = _small_targets()
    for sample, result in zip(batch, annotator.annotate(batch)):
        mask = result["foreground"]
        assert mask.shape == sample.target.shape[:2] and mask.dtype == np.uint8
    fields = output_fields(DEFAULT_NODES.get("foreground"), mask)
    assert list(fields) == ["foreground_mask.png"]


# --- grounding: Qwen2.5-VL + SAM2 --------------------------------------------------------------------

@pytest.fixture(scope="module")
def grounding(models_root, sam2_folder):
    tiny.qwen25_vl(models_root)
    return _annotator(GroundedSegmentationAnnotator, models_root, max_new_tokens="12")


def test_grounding_turns_an_unreadable_answer_into_a_per_sample_error(grounding):
    batch = _small_targets()[:2]
    answers = grounding.ask(batch)
    assert [size for _, size in answers] == [(56, 28), (56, 56)]  # smart_resize of 80x48 and 64x64 (<= 56*56 px)
    results = grounding.annotate(batch)
    assert len(results) == 2
    for result in results:  # a random model prints no usable JSON: each sample fails alone, with the reason
        assert isinstance(result, Exception)
        assert isinstance(result, BoxParseError) or "grounded no object" in str(result)


def test_grounding_boxes_become_masks_bbox_image_and_metadata(grounding):
    sample = _small_targets()[0]  # 80x48, seen by the model as 56x28
    answer = ('Sure! Here are the main objects:\n```json\n[\n  {"bbox_2d": [0, 0, 28, 28], "label": "angel"},\n'
              '  {"bbox_2d": [28, 7, 56, 28], "label": "lion"}\n]\n```')
    result = grounding.render(sample, answer, (56, 28))
    value = result["grounded_mask"]
    assert isinstance(value, WithExtras)
    meta = result[NODE_METADATA]["grounded_mask"]
    assert [o["label"] for o in meta["objects"]] == ["angel", "lion"]
    assert meta["objects"][0]["bbox"] == [0, 0, 40, 48] and meta["objects"][1]["bbox"] == [40, 12, 80, 48]
    bbox = value.extras["grounded_bbox"]
    assert tuple(bbox[30, 60]) == tuple(meta["objects"][1]["colour"])  # inside the lion's box
    assert meta["objects"][0]["colour"] != meta["objects"][1]["colour"]
    fields = output_fields(DEFAULT_NODES.get("grounded_mask"), value)
    assert set(fields) == {"grounded_mask.png", "grounded_bbox.png"}
    assert Image.open(io.BytesIO(fields["grounded_mask.png"])).size == (80, 48)


SCRIPTED_ANSWER = ('Here are the objects:\n```json\n[\n  {"bbox_2d": [0, 0, 28, 28], "label": "angel"},\n'
                   '  {"bbox_2d": [28, 7, 56, 28], "label": "lion"}\n]\n```')


def test_grounded_shard_holds_mask_bbox_image_and_metadata(models_root, sam2_folder, tmp_path):
    """Success path end to end: Qwen (scripted answer) -> boxes -> SAM2 -> node shard fields and json."""
    from annotators.annotate import annotate_shard
    from graph200k.dataset_dir import DatasetDir
    from annotators.inputs.ingest import write_source_shard
    from annotators.inputs.sources import plan_sources

    scripted = tmp_path / "weights"
    tiny.qwen25_vl(scripted, SCRIPTED_ANSWER)
    inputs, dataset = tmp_path / "in", tmp_path / "dataset"
    inputs.mkdir()
    for sample in _small_targets()[:2]:
        Image.fromarray(sample.target).save(inputs / f"{sample.key}.jpg")
        (inputs / f"{sample.key}.json").write_text(json.dumps({"caption": "an angel beside a lion"}))
    plan = plan_sources(inputs, 8, DEFAULT_NODES)
    write_source_shard(plan.shards[0], dataset, DEFAULT_NODES)
    annotator = _annotator(GroundedSegmentationAnnotator, scripted, segmenter=str(sam2_folder), max_new_tokens="160")
    stats = annotate_shard(annotator, dataset, plan.shards[0].shard)
    assert stats["written"] == 2 and stats["failed"] == 0
    written = {s["__key__"]: s for s in iter_samples(DatasetDir(dataset).node_tar("grounded_mask", plan.shards[0].shard))}
    wide = written["wide"]
    assert {"grounded_mask.png", "grounded_bbox.png", "json"} <= set(wide)
    meta = json.loads(wide["json"])["grounded_mask"]
    assert [(o["label"], o["bbox"]) for o in meta["objects"]] == [("angel", [0, 0, 40, 48]), ("lion", [40, 12, 80, 48])]
    bbox = np.asarray(Image.open(io.BytesIO(wide["grounded_bbox.png"])).convert("RGB"))
    assert bbox.shape == (48, 80, 3) and tuple(bbox[30, 60]) == tuple(meta["objects"][1]["colour"])
    square = json.loads(written["square"]["json"])["grounded_mask"]  # 64x64 seen as 56x56: boxes scale by 8/7
    assert square["objects"][1]["bbox"] == [32, 8, 64, 32]


def test_undeclared_extra_field_is_refused():
    with pytest.raises(ValueError, match="declares no extra field 'boxes'"):
        output_fields(DEFAULT_NODES.get("grounded_mask"), WithExtras(np.zeros((4, 4, 3), np.uint8),
                                                                      {"boxes": np.zeros((4, 4, 3), np.uint8)}))


# --- post-processing on the fixtures' real maps -------------------------------------------------------

@pytest.mark.parametrize("sample", WITH_MAPS, ids=lambda p: p.name[:12])
def test_depth_normalisation_of_a_real_map_round_trips(sample):
    depth = _load(sample / "depth.jpg", "L")
    assert np.abs(normalise_depth(depth).astype(int) - depth).max() <= 1 + 255 - (int(depth.max()) - int(depth.min()))
    stretched = normalise_depth(depth)
    # any positive affine change of the prediction gives the same map; far-is-large input is flipped to near-bright
    assert np.array_equal(normalise_depth(depth * 3.7 + 11.0), stretched)
    assert np.array_equal(normalise_depth(-(depth.astype(float)), near_is_large=False), stretched)


def test_normal_convention_matches_the_fixtures():
    """Red = left, green = up, blue = toward the camera, checked against each fixture's own depth map."""
    from scipy.ndimage import gaussian_filter

    agree_x = agree_y = facing = 0
    for sample in WITH_MAPS:
        rgb = _load(sample / "normal.jpg")
        n = rgb.astype(float) / 127.5 - 1
        assert abs(np.linalg.norm(n, axis=-1).mean() - 1) < 0.03  # stored as (n + 1) / 2 of unit vectors
        assert np.abs(renormalise(rgb).astype(int) - rgb).mean() < 2.0  # decode + encode round-trips
        facing += rgb_to_normals(rgb)[..., 2].mean() > 0  # surfaces face the camera on average: blue is "front"
        depth = gaussian_filter(_load(sample / "depth.jpg", "L").astype(float), 3)
        gy, gx = np.gradient(depth)
        sloped = np.abs(gx) + np.abs(gy) > 0.3
        agree_x += np.corrcoef(n[..., 0][sloped], gx[sloped])[0, 1] > 0  # nearer to the right: surface faces left
        agree_y += np.corrcoef(n[..., 1][sloped], gy[sloped])[0, 1] > 0  # nearer downwards (floor): faces up
    assert agree_x >= len(WITH_MAPS) - 2 and agree_y == len(WITH_MAPS) and facing >= len(WITH_MAPS) - 1


def test_colour_masks_paint_each_instance_distinctly_larger_first():
    fg = _load(ANGEL / "foreground.jpg", "L") > 127  # the real foreground mask
    h, w = fg.shape
    inner = np.zeros_like(fg)
    inner[h // 3: h // 2, w // 3: w // 2] = True  # a small instance inside the large one
    left = np.zeros_like(fg)
    left[:, : w // 10] = True
    canvas, colours = render_masks([inner, fg, left], h, w)
    assert len({tuple(c) for c in colours}) == 3 and (colours.sum(axis=1) > 0).all()
    assert tuple(canvas[h // 3 + 5, w // 3 + 5]) == tuple(colours[0])  # small one painted over the large one
    assert tuple(canvas[~(fg | inner | left)][0]) == (0, 0, 0)
    assert len({tuple(c) for c in distinct_colours(300)}) == 300


def test_ade20k_colouring_names_a_bad_class_id():
    assert tuple(colourise_labels(np.array([[2]]))[0, 0]) == tuple(ade20k_palette()[2])
    with pytest.raises(ValueError, match="ADE20K class ids"):
        colourise_labels(np.array([[150]]))


# --- the run: annotators with weights run, the others are skipped with the reason ------------------

def test_run_uses_model_dir_weights_and_skips_annotators_without_weights(lllyasviel, grounding, models_root,
                                                                         tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for sample in _small_targets()[:2]:
        Image.fromarray(sample.target).save(inputs / f"{sample.key}.jpg")
        (inputs / f"{sample.key}.json").write_text(json.dumps({"caption": "an angel beside a lion"}))
    out = tmp_path / "out"
    summary = run(RunConfig(
        input=inputs, out=out, annotators=["mlsd", "hed", "depth", "grounded_segmentation"], progress=False,
        num_cpus=2, gpus_per_worker=0,
        settings={"mlsd": {"model_dir": str(models_root), "detect_resolution": "64"},
                  "grounded_segmentation": {"model_dir": str(models_root), "max_new_tokens": "12"}}))
    rows = {r.annotator: r for r in summary.annotators}
    assert rows["mlsd"].status == "ran" and rows["mlsd"].written == 2
    assert {s["__key__"] for s in iter_samples(out / "nodes" / "mlsd" / "000000.tar")} == {"wide", "square"}
    for name in ("hed", "depth"):
        assert rows[name].status == "skipped" and "not in the Hugging Face cache" in rows[name].why
        assert "download" in rows[name].how_to_enable
    # the random Qwen prints no usable boxes: both samples are in the errors record, the shard still completes
    assert rows["grounded_segmentation"].status == "ran" and rows["grounded_segmentation"].failed == 2
    errors = [e for e in collect_errors(out) if e["stage"] == "grounded_mask"]
    assert sorted(e["key"] for e in errors) == ["square", "wide"]
    assert all("Qwen2.5-VL" in e["reason"] or "malformed JSON" in e["reason"] for e in errors)
    assert read_stats(out / "nodes" / "grounded_mask" / "000000.tar")["failed"] == 2


def test_list_shows_licence_and_weights_found_in_model_dir(lllyasviel, models_root, capsys):
    from annotators.cli import main

    assert main(["list", "--json", "--model-dir", str(models_root)]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["mlsd"]["available"] == "yes" and rows["mlsd"]["license"].startswith("other")
    assert rows["depth"]["license"] == "CC-BY-NC-4.0"
    assert rows["foreground_mask"]["available"].startswith("no: ZhengPeng7/BiRefNet runs its own code")
    assert {"hed", "mlsd", "openpose", "depth", "normal", "semantic_segmentation", "sam2_mask", "foreground_mask",
            "grounded_segmentation"} <= set(rows)


def test_contact_sheet_says_where_each_tile_comes_from(tmp_path):
    from annotators.sheet import contact_sheet, save_sheet

    sheet, sources = contact_sheet(ANGEL)
    by_node = {s["node"]: s["source"] for s in sources}
    assert by_node["canny"] == "ours"  # no weights needed
    assert by_node["hed"] == by_node["depth"] == by_node["foreground"] == "Graph200K release"  # real fixture maps
    assert by_node["mlsd"] == "missing"  # neither weights here nor a map in this sample
    save_sheet(sheet, tmp_path / "sheet.png")
    assert (tmp_path / "sheet.png").stat().st_size < 1024 * 1024


def test_download_without_network_names_what_failed(monkeypatch, tmp_path, capsys):
    import huggingface_hub.constants

    from annotators.cli import main

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert main(["download", "mlsd", "--model-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "lllyasviel/Annotators@982e7edaec38" in err and "mlsd_large_512_fp32.pth" in err
