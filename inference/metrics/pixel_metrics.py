"""Full-reference pixel metrics: `rmse`, `map_rmse`, `psnr`, `ssim` on 0-255 pixel values.

Conventions (the paper's Table 1): RMSE is on 0-255 values, over every pixel and
channel (deblur: restored vs original RGB); `map_rmse` compares two one-channel
maps (depth: the input depth map vs the depth predicted from the generated image,
both 0-255 gray). PSNR and SSIM are torchmetrics' (`data_range=255`; SSIM with its
defaults: Gaussian window 11, sigma 1.5, k1 0.01, k2 0.03, averaged over channels);
PSNR of identical images is `inf`. Both inputs must have the same shape.
"""

from __future__ import annotations

import numpy as np
import torch

from .pixels import ImageLike, as_array, as_gray, check_same_shape


def _pair(generated: ImageLike, reference: ImageLike, metric: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = as_array(generated, f"{metric} generated"), as_array(reference, f"{metric} reference")
    check_same_shape(a, b, metric)
    return a, b


def _tensor(pixels: np.ndarray) -> torch.Tensor:
    """(1, C, H, W) float32 on 0-255."""
    chw = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(chw)).float()[None]


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def rmse(generated: ImageLike, reference: ImageLike) -> float:
    """Root mean squared error on 0-255 values over all pixels and channels (deblur's controllability)."""
    return _rmse(*_pair(generated, reference, "rmse"))


def map_rmse(generated_map: ImageLike, reference_map: ImageLike) -> float:
    """RMSE of two maps as 0-255 gray (depth_rmse: depth predicted from the generated image vs the input depth)."""
    a, b = as_gray(generated_map, "map_rmse generated map"), as_gray(reference_map, "map_rmse reference map")
    check_same_shape(a, b, "map_rmse")
    return _rmse(a, b)


def psnr(generated: ImageLike, reference: ImageLike) -> float:
    """Peak signal-to-noise ratio in dB, data range 255 (torchmetrics); `inf` when the images are identical."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    a, b = _pair(generated, reference, "psnr")
    if np.array_equal(a, b):
        return float("inf")
    return float(peak_signal_noise_ratio(_tensor(a), _tensor(b), data_range=255.0))


def ssim(generated: ImageLike, reference: ImageLike) -> float:
    """Structural similarity (torchmetrics, data range 255, Gaussian 11x11, sigma 1.5): 1 for identical images."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    a, b = _pair(generated, reference, "ssim")
    return float(structural_similarity_index_measure(_tensor(a), _tensor(b), data_range=255.0))
