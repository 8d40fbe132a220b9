"""The declared degradations (32 in Graph200K) on a real Graph200K photo (tests/data/degradation_photo.jpg,
a 256-px copy of a fixture target)."""

from __future__ import annotations

import io
import json

import cv2
import numpy as np
import pytest
from PIL import Image

from graph200k import DEFAULT_NODES, DEGRADATION_NAMES
from sampler.cli import main as sampler_main
from sampler.degradations import (REFERENCE_SIZE, degrade, degrade_variant, describe, lookup, severity_table,
                                  variants)
from sampler.degradations.jpeg2000 import _forward, _inverse, jpeg2000_roundtrip
from sampler.degradations.palette import multi_otsu_edges
from sampler.degradations.registry import REGISTRY

from .conftest import TESTS

ROTATIONS = [n for n in DEGRADATION_NAMES if "rotation" in DEFAULT_NODES.get(n).details]
WITH_SEVERITY = [n for n in DEGRADATION_NAMES if REGISTRY[n].severities]


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return np.asarray(Image.open(TESTS / "data" / "degradation_photo.jpg").convert("RGB"))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return 0.0
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-10))


def test_every_declared_degradation_is_implemented_and_documented():
    assert set(REGISTRY) == set(DEGRADATION_NAMES)
    assert all(name in severity_table() for name in DEGRADATION_NAMES)
    assert severity_table() in (TESTS.parent / "docs" / "ARCHITECTURE.md").read_text()


@pytest.mark.parametrize("name", DEGRADATION_NAMES)
def test_uint8_rgb_in_and_out_with_the_shape_rule(photo, name):
    image = np.ascontiguousarray(photo[:, 32:224])  # 256 x 192, not square
    out, _ = degrade(image, name, np.random.default_rng(0))
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    turns_sideways = name in ROTATIONS and DEFAULT_NODES.get(name).details["degrees"] % 180 == 90
    assert out.shape[:2] == (image.shape[1::-1] if turns_sideways else image.shape[:2])


@pytest.mark.parametrize("shape", [(45, 67), (9, 8), (300, 41)])
def test_odd_and_small_sizes_work(photo, shape):
    image = np.asarray(Image.fromarray(photo).resize(shape[::-1], Image.LANCZOS))
    for name in DEGRADATION_NAMES:
        for severity, method in variants(name):
            out, params = degrade_variant(image, name, np.random.default_rng(0), severity=severity, method=method)
            assert out.dtype == np.uint8 and sorted(out.shape[:2]) == sorted(shape), describe(params)


@pytest.mark.parametrize("name", DEGRADATION_NAMES)
def test_every_variant_changes_the_image(photo, name):
    for severity, method in variants(name):
        out, params = degrade_variant(photo, name, np.random.default_rng(1), severity=severity, method=method)
        changed = np.abs(out.astype(np.int16) - photo).max(axis=2) > 2
        assert changed.mean() > 0.01, f"{describe(params)} changed only {changed.mean():.2%} of the pixels"


@pytest.mark.parametrize("name", DEGRADATION_NAMES)
def test_same_seed_same_output(photo, name):
    a, pa = degrade(photo, name, np.random.default_rng(42))
    b, pb = degrade(photo, name, np.random.default_rng(42))
    assert pa == pb
    assert np.array_equal(a, b)


@pytest.mark.parametrize("name", DEGRADATION_NAMES)
def test_params_round_trip_reproduces_the_image(photo, name):
    rng = np.random.default_rng(5)
    for _ in range(3):
        out, params = degrade(photo, name, rng)
        stored = json.loads(json.dumps(params))  # what a log or an in-context row keeps
        again, params_again = degrade(photo, name, None, params=stored)
        assert params_again == stored
        assert np.array_equal(out, again), describe(params)


@pytest.mark.parametrize("name", WITH_SEVERITY)
def test_severity_increases_the_distortion(photo, name):
    for method in REGISTRY[name].methods or (None,):
        scores = [psnr(photo, degrade_variant(photo, name, np.random.default_rng(3), severity=s, method=method)[0])
                  for s in REGISTRY[name].severities]
        assert all(b < a for a, b in zip(scores, scores[1:])), f"{name} {method}: PSNR by severity {scores}"


def test_gray_has_equal_channels_and_rgb_luma_weights(photo):
    out, _ = degrade(photo, "gray", np.random.default_rng(0))
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255
    value = int(degrade(red, "gray", None, params={"name": "gray"})[0][0, 0, 0])
    assert value == 76  # 0.299 * 255: red read as red, not as blue (0.114 * 255 = 29)


@pytest.mark.parametrize("name", ROTATIONS)
def test_rotation_direction_matches_the_declaration(name):
    details = DEFAULT_NODES.get(name).details
    assert details["rotation"] == "clockwise"
    h, w = 40, 60
    image = np.full((h, w, 3), 128, np.uint8)
    image[0, 0] = (255, 0, 0)  # top-left corner marked
    out, _ = degrade(image, name, np.random.default_rng(0))
    # Where a clockwise turn by `degrees` takes the top-left corner (row, col).
    expected = {90: (0, h - 1), 180: (h - 1, w - 1), 270: (w - 1, 0)}[details["degrees"]]
    assert tuple(np.argwhere(out[..., 1] == 0)[0]) == expected
    if details["degrees"] == 90:
        assert any("clockwise" in p and "counter" not in p for p in DEFAULT_NODES.get(name).phrases)


def test_frost_adds_bright_crystalline_texture_not_a_global_scale(photo):
    for severity in REGISTRY["frost"].severities:
        out, _ = degrade_variant(photo, "frost", np.random.default_rng(2), severity=severity)
        x = photo.reshape(-1, 3).astype(np.float64)
        y = out.reshape(-1, 3).astype(np.float64)
        residual = np.empty_like(y)
        for c in range(3):  # the best per-channel a * x + b explains little of the result
            a, b = np.polyfit(x[:, c], y[:, c], 1)
            residual[:, c] = y[:, c] - (a * x[:, c] + b)
        residual = residual.reshape(photo.shape).mean(axis=2).astype(np.float32)
        assert residual.std() > 8, f"severity {severity}: frost is close to a linear map of the input"
        fine = residual - cv2.GaussianBlur(residual, (0, 0), 2.0)
        assert fine.std() > 2.5, f"severity {severity}: no fine (crystal) structure added"
        low, high = np.percentile(fine, [1, 99])
        assert high > 1.3 * -low, f"severity {severity}: the added fine structure is not bright"
        assert out.mean() > 0.9 * photo.mean()


@pytest.mark.parametrize("severity", REGISTRY["salt_pepper_noise"].severities)
def test_salt_and_pepper_sets_the_expected_fraction(photo, severity):
    image = np.clip(photo, 10, 245)  # no pure black or white pixel before
    out, params = degrade(image, "salt_pepper_noise", np.random.default_rng(severity), severity=severity)
    amount = (0.02, 0.035, 0.05, 0.065, 0.08)[severity - 1]
    white = (out == 255).all(axis=2).mean()
    black = (out == 0).all(axis=2).mean()
    assert white == pytest.approx(amount / 2, abs=0.004)
    assert black == pytest.approx(amount / 2, abs=0.004)
    untouched = ~((out == 255).all(axis=2) | (out == 0).all(axis=2))
    assert np.array_equal(out[untouched], image[untouched])


def test_unknown_name_lists_the_valid_names(photo):
    with pytest.raises(ValueError) as err:
        degrade(photo, "sepia", np.random.default_rng(0))
    assert all(name in str(err.value) for name in DEGRADATION_NAMES)
    with pytest.raises(ValueError, match="not a degradation"):
        degrade(photo, "canny", np.random.default_rng(0))


@pytest.mark.parametrize("name", DEGRADATION_NAMES)
def test_graph200k_spelling_is_accepted(photo, name):
    spelling = DEFAULT_NODES.get(name).graph200k_name
    a, pa = degrade(photo, spelling, np.random.default_rng(9))
    b, pb = degrade(photo, name, np.random.default_rng(9))
    assert pa["name"] == name and pa == pb
    assert np.array_equal(a, b)
    assert lookup(spelling.upper()).name == name


def test_bad_input_is_named(photo):
    with pytest.raises(ValueError, match="RGB uint8"):
        degrade(photo.astype(np.float32), "blur", np.random.default_rng(0))
    with pytest.raises(ValueError, match="RGB uint8"):
        degrade(photo[..., 0], "blur", np.random.default_rng(0))
    with pytest.raises(ValueError, match="severity 9"):
        degrade(photo, "blur", np.random.default_rng(0), severity=9)
    with pytest.raises(ValueError, match="no severity"):
        degrade(photo, "gray", np.random.default_rng(0), severity=2)
    _, params = degrade(photo, "blur", np.random.default_rng(0))
    with pytest.raises(ValueError, match="not for 'jpeg'"):
        degrade(photo, "jpeg", None, params=params)
    with pytest.raises(ValueError, match="lack"):
        degrade(photo, "blur", None, params={k: v for k, v in params.items() if k != "method"})


@pytest.mark.parametrize("name,fixed", [("gaussian_blur", {"severity": 5}), ("defocus", {"severity": 5}),
                                        ("blur", {"severity": 4, "method": "motion"}),
                                        ("blur", {"severity": 5, "method": "lens"}), ("elastic", {"severity": 5})])
def test_a_small_cell_looks_like_the_reference_size_result_resized(photo, name, fixed):
    """Degrading the cell equals degrading at REFERENCE_SIZE and resizing (the scaling contract)."""
    big = np.asarray(Image.fromarray(photo).resize((REFERENCE_SIZE,) * 2, Image.LANCZOS))
    big_out, params = degrade_variant(big, name, np.random.default_rng(4), **fixed)
    cell_out, _ = degrade(photo, name, None, params=params)
    resized = np.asarray(Image.fromarray(big_out).resize(photo.shape[1::-1], Image.LANCZOS))
    assert psnr(resized, cell_out) > 35  # unscaled kernels (2x too wide here) give 21-30 dB


def test_jpeg2000_matches_openjpeg_quality(photo):
    ll, bands = _forward(photo[..., 1].astype(np.float32), 5)
    assert np.abs(_inverse(ll, bands) - photo[..., 1]).max() < 0.01  # the wavelet is perfectly invertible
    for db in (29.0, 26.0):
        ours = jpeg2000_roundtrip(photo, db)
        buffer = io.BytesIO()
        Image.fromarray(photo).save(buffer, format="JPEG2000", quality_mode="dB", quality_layers=[db])
        openjpeg = np.asarray(Image.open(buffer).convert("RGB"))
        assert abs(psnr(photo, ours) - psnr(photo, openjpeg)) < 1.5
        ycc = [cv2.cvtColor(x, cv2.COLOR_RGB2YCrCb).astype(np.float64) for x in (photo, ours, openjpeg)]
        chroma_ours = np.sqrt(((ycc[1] - ycc[0])[..., 1:] ** 2).mean())
        chroma_openjpeg = np.sqrt(((ycc[2] - ycc[0])[..., 1:] ** 2).mean())
        assert 0.6 < chroma_ours / chroma_openjpeg < 1.5  # colour survives as it does in real JPEG 2000


def test_multi_otsu_agrees_with_scikit_image(photo):
    from skimage.filters import threshold_multiotsu

    hist = np.bincount(photo[..., 0].ravel() // 9, minlength=29).astype(np.float64)
    for classes in (3, 4):
        thresholds = threshold_multiotsu(hist=(hist, np.arange(len(hist), dtype=np.float64)), classes=classes)
        ours = multi_otsu_edges(hist, classes)
        assert [e - 1 for e in ours] == [int(t) for t in thresholds]


def test_contact_sheet_cli(tmp_path):
    out = tmp_path / "sheet.png"
    assert sampler_main(["degradations", "--image", str(TESTS / "data" / "degradation_photo.jpg"),
                         "--out", str(out), "--seed", "3", "--cell", "64"]) == 0
    sheet = Image.open(out)
    assert sheet.width > 6 * 64 and sheet.height > 6 * 64
    assert not list(tmp_path.glob(".*.tmp"))
    assert sampler_main(["degradations", "--image", str(tmp_path / "missing.jpg"), "--out", str(out)]) == 2
