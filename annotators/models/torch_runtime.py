"""Device, precision and batching rules shared by the model-backed annotators.

On CUDA, transformers models load in half precision (bf16, or fp16 where the
model is known to be fine with it) and controlnet_aux nets run under fp16
autocast; on CPU everything is fp32. Inference always runs under
`torch.inference_mode`.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import numpy as np
import torch


def inference_device() -> torch.device:
    """The GPU Ray assigned to this worker (first visible CUDA device), else the CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def weights_dtype(device: torch.device, half: torch.dtype = torch.bfloat16) -> torch.dtype:
    """`half` on CUDA, fp32 on CPU (half-precision CPU kernels are slow or missing)."""
    return half if device.type == "cuda" else torch.float32


@contextmanager
def inference(device: torch.device, autocast: torch.dtype | None = None) -> Iterator[None]:
    """`torch.inference_mode`, plus autocast to `autocast` on CUDA (for fp32 nets such as controlnet_aux's)."""
    with torch.inference_mode():
        if device.type == "cuda" and autocast is not None:
            with torch.autocast("cuda", dtype=autocast):
                yield
        else:
            yield


def same_size_groups(images: Sequence[np.ndarray]) -> list[list[int]]:
    """Indices of `images` grouped by (height, width): processors batch only equally sized inputs
    without padding, and padding changes a dense prediction near the border."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault(tuple(image.shape[:2]), []).append(i)
    return list(groups.values())
