"""The canny annotator reproduces Graph200K's `canny_100_200_512` maps."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from annotators.base import SampleInput
from annotators.perception.canny import CannyAnnotator, canny_edges, detection_size
from graph200k.decode import decode_image

DATA = Path(__file__).resolve().parent / "data" / "graph200k_canny"
SAMPLES = Path(__file__).resolve().parent.parent / "samples"
KEYS = sorted(p.name.split(".")[0] for p in DATA.glob("*.canny.jpg"))


def edge_f1(pred: np.ndarray, truth: np.ndarray) -> float:
    """F1 of two binary edge maps, an edge pixel counting as matched within 1 pixel (3x3)."""
    kernel = np.ones((3, 3), np.uint8)
    precision = (pred & cv2.dilate(truth, kernel)).sum() / max(pred.sum(), 1)
    recall = (truth & cv2.dilate(pred, kernel)).sum() / max(truth.sum(), 1)
    return float(2 * precision * recall / max(precision + recall, 1e-9))


def _pair(key):
    target = decode_image((SAMPLES / f"{key}.jpg").read_bytes())
    truth = (decode_image((DATA / f"{key}.canny.jpg").read_bytes(), "L") > 127).astype(np.uint8)
    return target, truth


def _area_rule_edges(rgb):
    """The alternative reading of `_512`: the area of 512x512 (multiple-of-64 sides)."""
    h, w = rgb.shape[:2]
    k = (512 * 512 / (w * h)) ** 0.5
    size = (int(round(w * k / 64)) * 64, int(round(h * k / 64)) * 64)
    edges = cv2.Canny(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), 100, 200)
    return (cv2.resize(edges, (w, h), interpolation=cv2.INTER_LINEAR) > 127).astype(np.uint8)


def test_fixture_set_has_square_and_portrait_images():
    sizes = {_pair(k)[0].shape[:2] for k in KEYS}
    assert len(KEYS) == 6 and any(h != w for h, w in sizes)


def test_edge_f1_against_graph200k_is_at_least_085():
    scores = []
    annotator = CannyAnnotator()
    for key in KEYS:
        target, truth = _pair(key)
        [out] = annotator.annotate([SampleInput(key, target)])
        edges = out["canny"]
        assert edges.shape == truth.shape and edges.dtype == np.uint8
        assert set(np.unique(edges)) <= {0, 255}
        scores.append(edge_f1((edges > 127).astype(np.uint8), truth))
    print(f"canny edge F1 vs Graph200K (1-px tolerance): mean {np.mean(scores):.4f}, "
          + ", ".join(f"{s:.3f}" for s in scores))
    assert np.mean(scores) >= 0.85
    assert min(scores) >= 0.8


def test_short_side_rule_matches_better_than_area_rule_on_non_square_images():
    short, area = [], []
    for key in KEYS:
        target, truth = _pair(key)
        if target.shape[0] == target.shape[1]:
            continue
        short.append(edge_f1((canny_edges(target) > 127).astype(np.uint8), truth))
        area.append(edge_f1(_area_rule_edges(target), truth))
    assert short and np.mean(short) > np.mean(area)


@pytest.mark.parametrize("size,expected", [((1024, 1024), (512, 512)), ((832, 1216), (512, 768)),
                                           ((512, 512), (512, 512)), ((1, 1), (512, 512))])
def test_detection_size_short_side_512_multiple_of_64(size, expected):
    assert detection_size(*size) == expected


def test_tiny_image_gets_an_edge_map_of_its_own_size():
    rgb = np.zeros((1, 1, 3), np.uint8)
    assert canny_edges(rgb).shape == (1, 1)
