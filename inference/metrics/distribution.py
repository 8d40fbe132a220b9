"""`fid` and `kid`: how far the generated images' distribution is from the real one's.

torchmetrics computes both (`FrechetInceptionDistance`, `KernelInceptionDistance`);
the features come from a feature extractor chosen at construction and named in
`describe()["features"]`, since FID values are only comparable under the same features:
- the FID Inception (`inception_features()`: torch-fidelity's InceptionV3, 2048-d pool
  features, the number papers print); needs `torch-fidelity` and its weights file;
- a `ClipScorer` or `DinoScorer` (their unnormalised image embeddings);
- any `torch.nn.Module` mapping uint8 images (N, 3, H, W) to (N, D) features.
Each image is embedded once; both metrics then read the same features. FID on a few
hundred images is biased upwards and noisy: KID (unbiased, polynomial kernel, mean and
std over `kid_subsets` random subsets of `min(1000, n)` images, seeded) is reported beside it.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch

from ..errors import InferenceError
from .embedding import ImageEmbedder
from .pixels import ImageLike, as_rgb
from .skipped import MetricUnavailable, Skipped

INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_WEIGHTS_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_WEIGHTS_FILE}"

FeatureSource = Union[ImageEmbedder, torch.nn.Module]


class _GivenFeatures(torch.nn.Module):
    """The "feature extractor" handed to torchmetrics: features are computed once, before."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def inception_features(weights_path: str | None = None) -> torch.nn.Module:
    """torch-fidelity's FID InceptionV3 (2048-d), as torchmetrics wraps it; never downloads.

    The weights are `weights_path` or torch hub's `checkpoints/` copy; raises `MetricUnavailable` otherwise."""
    import importlib.util

    if importlib.util.find_spec("torch_fidelity") is None:
        raise MetricUnavailable(Skipped("fid", "the FID Inception needs the torch-fidelity package",
                                        "pip install torch-fidelity==0.4.0 and its weights file, or pass a CLIP/DINOv2 "
                                        "scorer or another module as the feature extractor"))
    path = Path(weights_path) if weights_path else Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE
    if not path.is_file():
        raise MetricUnavailable(Skipped("fid", f"the FID Inception weights are not at {path}",
                                        f"download {INCEPTION_WEIGHTS_URL} to {path} (on a machine with network) "
                                        "or pass its path as weights_path"))
    from torchmetrics.image.fid import NoTrainInceptionV3

    return NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                              feature_extractor_weights_path=str(path))


class DistributionScore:
    """FID and KID of generated vs real images; `update(real, fake)` per item, `compute()` at the end."""

    def __init__(self, features: FeatureSource, name: str | None = None, batch_size: int = 32,
                 kid_subsets: int = 100, kid_subset_size: int = 1000, seed: int = 0):
        if not isinstance(features, (ImageEmbedder, torch.nn.Module)):
            raise InferenceError(f"DistributionScore: features must be a ClipScorer, a DinoScorer or a torch.nn.Module "
                                 f"mapping uint8 (N, 3, H, W) images to (N, D), got {type(features).__name__}")
        self.extractor = features
        self.name = name or (features.features_name if isinstance(features, ImageEmbedder)
                             else type(features).__name__)
        self.batch_size = batch_size
        self.kid_subsets = kid_subsets
        self.kid_subset_size = kid_subset_size
        self.seed = seed
        self.reset()

    def reset(self) -> None:
        self._pending: dict[bool, list[np.ndarray]] = {True: [], False: []}
        self._features: dict[bool, list[torch.Tensor]] = {True: [], False: []}

    def update(self, real: ImageLike | Sequence[ImageLike] | None,
               fake: ImageLike | Sequence[ImageLike] | None) -> None:
        """Add a real and a generated image (or lists of them; either may be None)."""
        for is_real, items in ((True, real), (False, fake)):
            if items is None:
                continue
            for item in (items if isinstance(items, (list, tuple)) else [items]):
                self._pending[is_real].append(as_rgb(item, "real image" if is_real else "generated image"))
            if len(self._pending[is_real]) >= self.batch_size:
                self._embed(is_real)

    def _embed(self, is_real: bool) -> None:
        images, self._pending[is_real] = self._pending[is_real], []
        if not images:
            return
        if isinstance(self.extractor, ImageEmbedder):
            self._features[is_real].append(self.extractor.features(images))
            return
        groups: dict[tuple[int, int], list[np.ndarray]] = {}
        for image in images:  # a module takes one tensor: stack equally sized images
            groups.setdefault(image.shape[:2], []).append(image)
        with torch.inference_mode():
            for group in groups.values():
                batch = torch.from_numpy(np.stack(group)).permute(0, 3, 1, 2).contiguous()
                device = next(self.extractor.parameters(), torch.empty(0)).device
                self._features[is_real].append(self.extractor(batch.to(device)).reshape(len(group), -1).float().cpu())

    def counts(self) -> tuple[int, int]:
        """(real, generated) images added so far."""
        return tuple(sum(len(f) for f in self._features[k]) + len(self._pending[k]) for k in (True, False))

    def compute(self) -> dict[str, float]:
        """{"fid", "kid", "kid_std"} over everything added; at least 2 real and 2 generated images."""
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.kid import KernelInceptionDistance

        self._embed(True)
        self._embed(False)
        n_real, n_fake = self.counts()
        if min(n_real, n_fake) < 2:
            raise InferenceError(f"fid/kid need at least 2 real and 2 generated images, got {n_real} and {n_fake}; "
                                 "score more items")
        real, fake = torch.cat(self._features[True]), torch.cat(self._features[False])
        given = _GivenFeatures(real.shape[1])
        fid = FrechetInceptionDistance(feature=given)
        with warnings.catch_warnings():  # "KID keeps every feature in memory": so does this class, by design
            warnings.filterwarnings("ignore", message=".*save all extracted features.*")
            kid = KernelInceptionDistance(feature=given, subsets=self.kid_subsets,
                                          subset_size=min(self.kid_subset_size, n_real, n_fake))
        for metric in (fid, kid):
            metric.update(real, real=True)
            metric.update(fake, real=False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            kid_mean, kid_std = kid.compute()
        return {"fid": float(fid.compute()), "kid": float(kid_mean), "kid_std": float(kid_std)}

    def describe(self) -> dict:
        """What the figures were computed with: the features, the counts, the KID subsets."""
        n_real, n_fake = self.counts()
        return {"features": self.name, "n_real": n_real, "n_fake": n_fake, "kid_subsets": self.kid_subsets,
                "kid_subset_size": min(self.kid_subset_size, n_real, n_fake)}
