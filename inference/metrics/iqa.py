"""`maniqa` and `musiq`: no-reference image quality from pyiqa, an optional extra (`pip install '.[iqa]'`).

pyiqa downloads its checkpoints on first use; here nothing is downloaded: a metric
runs only when pyiqa is installed and its files are already in pyiqa's cache
(`<torch hub dir>/pyiqa/`, i.e. `$TORCH_HOME/hub/pyiqa`) and, for MANIQA, timm's ViT-B/8
backbone is in the Hugging Face cache. Otherwise `IqaScorer.load` raises
`MetricUnavailable` naming the missing file and where to put it. Scales: MANIQA
(KonIQ-10k) ~0-1, MUSIQ (KonIQ-10k) ~0-100, as the paper prints them (0.49, 64.39).
MANIQA scores random 224 crops: each image is scored under a fixed seed, so a score
does not depend on the order of the images. pyiqa's licence is non-commercial
(see `metric_models`).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from annotators.base import hub_weights_available
from annotators.models.torch_runtime import inference_device

from ..errors import InferenceError
from .pixels import ImageLike, as_rgb
from .skipped import MetricUnavailable, Skipped

PYIQA_VERSION = "0.1.16"
PYIQA_WEIGHTS_URL = "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/"


@dataclass(frozen=True)
class IqaModel:
    """A pyiqa metric: its `create_metric` name, its checkpoint file and any hub backbone it loads."""

    pyiqa_name: str
    checkpoint: str
    backbone: str | None = None


IQA_MODELS = {
    "maniqa": IqaModel("maniqa", "ckpt_koniq10k.pt", backbone="timm/vit_base_patch8_224.augreg2_in21k_ft_in1k"),
    "musiq": IqaModel("musiq", "musiq_koniq_ckpt-e95806b9.pth"),
}


def pyiqa_cache() -> Path:
    """Where pyiqa looks for (and would download) its checkpoints."""
    return Path(torch.hub.get_dir()) / "pyiqa"


def iqa_availability(name: str) -> Skipped | None:
    """None when `name` can run here, else why not and how to enable it (never downloads)."""
    if name not in IQA_MODELS:
        raise InferenceError(f"unknown quality metric {name!r}; available: {', '.join(IQA_MODELS)}")
    model = IQA_MODELS[name]
    if importlib.util.find_spec("pyiqa") is None:
        return Skipped(name, "pyiqa is not installed (optional extra)",
                       f"pip install '.[iqa]' (pyiqa=={PYIQA_VERSION})")
    checkpoint = pyiqa_cache() / model.checkpoint
    if not checkpoint.is_file():
        return Skipped(name, f"pyiqa's {name} checkpoint is not at {checkpoint}",
                       f"download {PYIQA_WEIGHTS_URL}{model.checkpoint} to {checkpoint} (or run "
                       f"pyiqa.create_metric('{model.pyiqa_name}') once on a machine with network)")
    if model.backbone:
        found = hub_weights_available(model.backbone, None, ("model.safetensors",))
        if not found.ok:
            return Skipped(name, f"{name}'s backbone {model.backbone}: {found.reason}", found.how_to_enable)
    return None


class IqaScorer:
    """One pyiqa no-reference metric, loaded once; `.score(images)` gives one value per image."""

    def __init__(self, name: str, net, device: torch.device, seed: int = 0):
        self.name = name
        self.net = net
        self.device = device
        self.seed = seed

    @classmethod
    def load(cls, name: str, device: str | torch.device | None = None) -> "IqaScorer":
        """pyiqa's `create_metric(name)` on cached weights; raises `MetricUnavailable` when they are not here."""
        skipped = iqa_availability(name)
        if skipped is not None:
            raise MetricUnavailable(skipped)
        import pyiqa

        device = torch.device(device) if device is not None else inference_device()
        return cls(name, pyiqa.create_metric(IQA_MODELS[name].pyiqa_name, device=device, as_loss=False), device)

    def score(self, images: Sequence[ImageLike]) -> list[float]:
        """The quality of each image (pyiqa takes RGB floats in [0, 1], any size)."""
        scores = []
        for i, image in enumerate(images):
            rgb = torch.from_numpy(as_rgb(image, f"{self.name} image {i}").copy()).permute(2, 0, 1)
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                torch.manual_seed(self.seed)
                with torch.inference_mode():
                    scores.append(float(self.net(rgb[None].float().div(255.0).to(self.device)).flatten()[0]))
        return scores
