"""inference.metrics: pixel metrics, canny F1 on real maps, CLIP/DINOv2 scorers on tiny models of the real
classes (saved with save_pretrained, loaded back through the scorers' own loading code), FID/KID through
torchmetrics, re-annotation through the annotators, and skips that name the model and how to enable it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from annotators.perception.canny import canny_edges
from graph200k.decode import decode_image
from inference.errors import InferenceError
from inference.metrics import (
    METRIC_MODELS, METRIC_NAMES, ClipScorer, DinoScorer, DistributionScore, IqaScorer, MetricSuite,
    MetricUnavailable, Reannotator, Skipped, canny_f1, canny_f1_pairs, edge_f1, inception_features, map_rmse, psnr,
    reannotate, rmse, ssim,
)
from inference.metrics.metric_models import CLIP_VIT_L14, DINOV2_BASE
from tests import perception_models
from tests.metric_models import save_tiny_clip, save_tiny_dino

TESTS = Path(__file__).resolve().parent
SAMPLES = TESTS.parent / "samples"
CANNY_MAPS = TESTS / "data" / "graph200k_canny"
KEYS = sorted(p.name.split(".")[0] for p in CANNY_MAPS.glob("*.canny.jpg"))


def _target(key: str, size: tuple[int, int] | None = None) -> np.ndarray:
    image = Image.open(SAMPLES / f"{key}.jpg").convert("RGB")
    return np.array(image.resize(size, Image.BICUBIC) if size else image)


def _noisy(image: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, image.shape)
    return np.clip(image + noise, 0, 255).round().astype(np.uint8)


# --- pixel metrics ----------------------------------------------------------------------------------

def test_rmse_is_zero_for_identical_images_and_the_shift_for_a_shifted_one():
    image = (_target(KEYS[0], (64, 48)) * (200 / 255)).astype(np.uint8)  # room for +10 without clipping
    assert rmse(image, image) == 0.0
    assert rmse(image + 10, image) == pytest.approx(10.0)
    assert rmse(Image.fromarray(image + 10), Image.fromarray(image)) == pytest.approx(10.0)
    gray = image[:, :, 0]
    as_rgb = np.repeat(gray[:, :, None], 3, axis=2)  # a depth map saved as RGB keeps its values
    assert map_rmse(as_rgb, gray) == 0.0
    assert map_rmse(gray + 7, Image.fromarray(gray)) == pytest.approx(7.0)


def test_psnr_and_ssim_rank_noise_levels_and_match_the_closed_form():
    image = _target(KEYS[1], (96, 64))
    assert psnr(image, image) == float("inf") and ssim(image, image) == pytest.approx(1.0, abs=1e-6)
    shifted = (image * (200 / 255)).astype(np.uint8)
    assert psnr(shifted + 10, shifted) == pytest.approx(20 * np.log10(255 / 10), abs=1e-3)
    light, heavy = _noisy(image, 5), _noisy(image, 40)
    assert psnr(light, image) > psnr(heavy, image) > 10
    assert 1.0 > ssim(light, image) > ssim(heavy, image) > 0.0


def test_pixel_metrics_refuse_other_sizes_and_float_pixels():
    image = _target(KEYS[0], (64, 48))
    with pytest.raises(InferenceError, match="resize the generated image"):
        rmse(image, image[:-1])
    with pytest.raises(InferenceError, match="uint8"):
        ssim(image / 255.0, image)


# --- canny F1 ---------------------------------------------------------------------------------------

def test_canny_f1_of_a_map_against_itself_is_one_and_against_another_image_is_low():
    image, other = _target(KEYS[0]), _target(KEYS[3])
    edges = canny_edges(image)
    assert canny_f1(edges, image) == 1.0
    unrelated = canny_f1(edges, other)  # other is scaled to the map's size first
    assert unrelated < 0.2
    assert canny_f1_pairs([(edges, image), (edges, other)]) == [1.0, unrelated]


def test_edge_f1_is_torchmetrics_binary_f1_without_tolerance_and_grows_with_it():
    from torchmetrics.functional.classification import binary_f1_score

    image = _target(KEYS[2])
    truth = decode_image((CANNY_MAPS / f"{KEYS[2]}.canny.jpg").read_bytes(), "L")
    mine = canny_edges(image)
    expected = binary_f1_score(torch.from_numpy(mine > 127).flatten(), torch.from_numpy(truth > 127).flatten())
    assert edge_f1(mine, truth) == pytest.approx(float(expected), abs=1e-6)
    assert edge_f1(mine, truth) < edge_f1(mine, truth, tolerance=1) < edge_f1(mine, truth, tolerance=2)
    blank = np.zeros_like(truth)
    assert edge_f1(blank, blank) == 1.0 and edge_f1(blank, truth) == 0.0 and edge_f1(truth, blank) == 0.0


def test_graph200k_canny_maps_score_high_against_their_own_images():
    """The metric's ceiling on real data: Graph200K's own maps against the images they were made from."""
    maps = {k: decode_image((CANNY_MAPS / f"{k}.canny.jpg").read_bytes(), "L") for k in KEYS}
    strict = [canny_f1(maps[k], _target(k)) for k in KEYS]
    loose = [canny_f1(maps[k], _target(k), tolerance=1) for k in KEYS]
    assert np.mean(loose) >= 0.85  # tests/test_canny.py measures 0.93 for the annotator this way
    assert all(s < lo for s, lo in zip(strict, loose)) and np.mean(strict) > 0.5


# --- tiny models of the real classes ------------------------------------------------------------------

CAPTIONS = ["a depth map of a grid", "the style reference photo"]


def _clip_images() -> list[np.ndarray]:
    return [_target(KEYS[0], (48, 48)), _target(KEYS[4], (48, 48))]


@pytest.fixture(scope="module")
def models_root(tmp_path_factory) -> Path:
    """Tiny weights laid out as the real ones under a `model_dir`: `<root>/<repo_id>/`."""
    root = tmp_path_factory.mktemp("metric-weights")
    save_tiny_clip(root / CLIP_VIT_L14.repo_id, teach=(_clip_images(), CAPTIONS), train_steps=20)
    save_tiny_dino(root / DINOV2_BASE.repo_id)
    perception_models.depth_anything(root)
    return root


@pytest.fixture(scope="module")
def clip(models_root) -> ClipScorer:
    return ClipScorer.load(model_dir=str(models_root), device="cpu")


@pytest.fixture(scope="module")
def dino(models_root) -> DinoScorer:
    return DinoScorer.load(str(models_root / DINOV2_BASE.repo_id), device="cpu")


def test_clip_t_ranks_the_matching_caption_above_the_swapped_one(clip):
    images = _clip_images()
    matching, swapped = clip.text(images, CAPTIONS), clip.text(images, CAPTIONS[::-1])
    assert all(m > s for m, s in zip(matching, swapped)), (matching, swapped)
    assert all(0.0 <= s <= 100.0 for s in matching + swapped)


def test_clip_t_is_torchmetrics_clip_score_on_the_same_model(clip):
    """torchmetrics 1.9.0 needs tensors from get_*_features (transformers 5 returns an output object):
    an adapter gives it the same model, and its batch mean must equal the mean of our per-image scores."""
    from torchmetrics.functional.multimodal import clip_score

    class TensorFeatures(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model, self.config = model, model.config

        def get_image_features(self, pixel_values):
            return self.model.get_image_features(pixel_values=pixel_values).pooler_output

        def get_text_features(self, input_ids, attention_mask=None):
            return self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output

    images = _clip_images()
    with torch.no_grad():
        theirs = clip_score([torch.from_numpy(i.copy()).permute(2, 0, 1) for i in images], CAPTIONS,
                            model_name_or_path=lambda: (TensorFeatures(clip.model), clip.processor))
    ours = clip.text(images, CAPTIONS)
    assert min(ours) > 0  # no clipping at 0 in play: the two conventions agree exactly
    assert float(theirs) == pytest.approx(np.mean(ours), abs=1e-3)


def test_a_long_caption_is_truncated_not_refused(clip):
    [score] = clip.text(_clip_images()[:1], [" ".join(["photo"] * 200)])
    assert 0.0 <= score <= 100.0


def test_clip_i_and_dino_are_100_for_the_same_image_and_lower_for_another(clip, dino):
    images = _clip_images()
    for scorer in (clip, dino):
        same, other = scorer.image(images, images), scorer.image(images, images[::-1])
        assert same == pytest.approx([100.0, 100.0], abs=1e-4)
        assert all(o < 99.0 for o in other)
        assert other[0] == pytest.approx(other[1], abs=1e-4)  # symmetric
    with pytest.raises(InferenceError, match="one partner per image"):
        dino.image(images, images[:1])


# --- FID / KID ------------------------------------------------------------------------------------

class TinyFeatures(torch.nn.Module):
    """A tiny fixed feature extractor: uint8 (N, 3, H, W) -> (N, 12) (a random conv, pooled)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 12, 5, stride=2)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(images.float() / 127.5 - 1)).mean(dim=(2, 3))


def _patches(n: int, side: int = 32, seed: int = 0) -> list[np.ndarray]:
    """`n` random crops of the bundled samples: a small "real" image set."""
    rng = np.random.default_rng(seed)
    sources = [_target(k, (128, 128)) for k in KEYS]
    out = []
    for i in range(n):
        y, x = rng.integers(0, 128 - side, 2)
        out.append(sources[i % len(sources)][y:y + side, x:x + side].copy())
    return out


def test_fid_and_kid_are_near_zero_for_the_same_set_and_grow_with_a_shift():
    real = _patches(48)

    def score(shift):
        metric = DistributionScore(TinyFeatures(), batch_size=16, kid_subsets=20)
        for image in real:  # one pair per item, as evaluation adds them
            metric.update(image, np.clip(image.astype(int) + shift, 0, 255).astype(np.uint8))
        return metric.compute(), metric.describe()

    (same, described), (shifted, _), (more, _) = score(0), score(30), score(60)
    assert abs(same["fid"]) < 1e-6
    assert 0 < shifted["fid"] < more["fid"] and 0 < shifted["kid"] < more["kid"]
    # unbiased KID of a set against itself is slightly negative (the diagonal counts only across sets)
    assert abs(same["kid"]) < more["kid"] / 10
    assert more["kid_std"] >= 0
    assert described == {"features": "TinyFeatures", "n_real": 48, "n_fake": 48, "kid_subsets": 20,
                         "kid_subset_size": 48}


def test_fid_on_dinov2_features_names_them_and_needs_two_images(dino):
    metric = DistributionScore(dino)
    metric.update(_patches(3), _patches(3, seed=1))
    result = metric.compute()
    assert set(result) == {"fid", "kid", "kid_std"} and result["fid"] > 0
    assert metric.describe()["features"] == f"dinov2 {dino.source} CLS embedding"
    one = DistributionScore(dino)
    one.update(_patches(1), _patches(1))
    with pytest.raises(InferenceError, match="at least 2 real and 2 generated"):
        one.compute()


# --- re-annotation ------------------------------------------------------------------------------------

def test_reannotate_gives_canny_as_the_data_made_it_and_depth_from_the_data_model(models_root):
    image = _target(KEYS[0], (80, 48))
    assert np.array_equal(reannotate("canny", image), canny_edges(image))
    depth = reannotate("depth", image, model_dir=str(models_root))
    assert depth.shape == (48, 80) and depth.dtype == np.uint8 and depth.max() == 255  # min-max normalised
    assert map_rmse(depth, depth) == 0.0


def test_reannotate_skips_with_the_reason(tmp_path):
    image = _target(KEYS[0], (64, 64))
    missing = Reannotator(str(tmp_path)).map("depth", image)
    assert isinstance(missing, Skipped)
    assert "depth-anything/Depth-Anything-V2-Large-hf" in missing.reason and "download" in missing.how_to_enable
    assert "no annotator produces" in reannotate("target", image).reason
    assert "generated" in reannotate("instant_style", image).reason
    with pytest.raises(InferenceError, match="unknown node"):
        reannotate("not_a_node", image)


# --- what cannot load here is skipped with the reason -------------------------------------------------

def test_missing_clip_weights_name_the_model_and_how_to_fetch_them(tmp_path):
    with pytest.raises(MetricUnavailable) as caught:
        ClipScorer.load(model_dir=str(tmp_path))
    skipped = caught.value.skipped
    assert CLIP_VIT_L14.repo_id in skipped.reason
    assert f"hf download {CLIP_VIT_L14.repo_id} --revision {CLIP_VIT_L14.revision}" in skipped.how_to_enable
    with pytest.raises(MetricUnavailable, match="lacks preprocessor_config.json"):
        (tmp_path / "half").mkdir()
        (tmp_path / "half" / "config.json").write_text("{}")
        DinoScorer.load(str(tmp_path / "half"))


def hide_package(monkeypatch, name: str) -> None:
    """Make `name` look not installed to the metrics' `find_spec` check, whether it is installed or not."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == name else real(n, *a))
    monkeypatch.setitem(sys.modules, name, None)  # and `import name` fails too


def test_iqa_without_pyiqa_is_skipped_with_the_install_step(monkeypatch):
    hide_package(monkeypatch, "pyiqa")
    with pytest.raises(MetricUnavailable) as caught:
        IqaScorer.load("maniqa")
    assert "pyiqa is not installed" in caught.value.skipped.reason
    assert "pip install '.[iqa]'" in caught.value.skipped.how_to_enable
    with pytest.raises(InferenceError, match="unknown quality metric"):
        IqaScorer.load("brisque")


def test_fid_inception_without_torch_fidelity_is_skipped(monkeypatch):
    hide_package(monkeypatch, "torch_fidelity")
    with pytest.raises(MetricUnavailable, match="torch-fidelity"):
        inception_features()


def test_suite_without_weights_keeps_the_model_free_metrics_and_says_why_for_the_rest(tmp_path):
    suite = MetricSuite.load(model_dir=str(tmp_path), device="cpu")
    assert set(suite.skipped) >= {"clip_t", "clip_i", "dino", "fid", "kid", "depth_rmse"}
    assert CLIP_VIT_L14.repo_id in suite.skipped["clip_t"] and "how to enable" in suite.skipped["clip_t"]
    assert DINOV2_BASE.repo_id in suite.skipped["dino"]
    assert {"canny_f1", "rmse", "ssim", "psnr"} <= set(suite.available)
    assert set(suite.skipped) | set(suite.available) == set(METRIC_NAMES)
    with pytest.raises(MetricUnavailable):
        suite.distribution()


def test_suite_loads_tiny_models_from_model_dir_and_falls_back_to_dinov2_features(models_root):
    suite = MetricSuite.load(model_dir=str(models_root), device="cpu", iqa=())
    assert {"clip_t", "clip_i", "dino", "fid", "kid", "depth_rmse", "canny_f1"} <= set(suite.available)
    assert set(suite.skipped) == {"maniqa", "musiq"} and "not requested" in suite.skipped["maniqa"]
    assert suite.fid_features == ("inception" if suite.inception is not None else "dino")
    described = suite.describe()
    assert described["clip"] == {"model": CLIP_VIT_L14.repo_id, "path": str(models_root / CLIP_VIT_L14.repo_id)}
    assert described["fid_features"] == suite.fid_features_name and described["skipped"] == suite.skipped
    score = suite.distribution(batch_size=4)
    score.update(_patches(4), _patches(4, seed=2))
    assert score.compute()["fid"] > 0


def test_every_metric_model_has_a_licence_and_every_metric_name_a_source():
    assert all(entry.license for entry in METRIC_MODELS.values())
    with_models = {name for entry in METRIC_MODELS.values() for name in entry.metrics}
    assert with_models | {"canny_f1", "depth_rmse", "control_ssim", "rmse", "ssim", "psnr"} == set(METRIC_NAMES)
