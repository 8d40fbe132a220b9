"""`MetricSuite`: every metric model that can load here, loaded once, and why the others cannot.

`MetricSuite.load(model_dir=None, clip=..., dino=..., device=...)` tries each metric
model (CLIP, DINOv2, the FID Inception, pyiqa's MANIQA/MUSIQ, the depth annotator
for depth_rmse) and never fails for a missing one: `suite.skipped` maps each metric
name that cannot be computed to `<reason>; how to enable: <step>`. The pixel metrics
and canny_f1 need no model and are always available.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from ..errors import InferenceError
from .clip import ClipScorer
from .dino import DinoScorer
from .distribution import DistributionScore, inception_features
from .iqa import IQA_MODELS, IqaScorer
from .metric_models import CLIP_VIT_L14, DINOV2_BASE
from .names import METRIC_NAMES
from .reannotate import Reannotator
from .skipped import MetricUnavailable, Skipped

INCEPTION_FEATURES_NAME = "inception-v3-compat (torch-fidelity) pool 2048"
FID_FEATURES = ("auto", "inception", "dino", "clip")
"""`auto` takes the first available of inception, dino, clip."""


@dataclass
class MetricSuite:
    """The loaded metric models; `skipped[name]` says why a metric cannot be computed here."""

    clip: ClipScorer | None = None
    dino: DinoScorer | None = None
    iqa: dict[str, IqaScorer] = field(default_factory=dict)
    inception: torch.nn.Module | None = None
    reannotator: Reannotator = field(default_factory=Reannotator)
    fid_features: str | None = None
    """Which features `distribution()` uses ("inception", "dino", "clip"); None when none can load."""
    skipped: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    """Choices worth reporting beside the figures (e.g. why FID is not on Inception features)."""

    @classmethod
    def load(cls, model_dir: str | None = None, clip: str | None = CLIP_VIT_L14.repo_id,
             dino: str | None = DINOV2_BASE.repo_id, device: str | torch.device | None = None,
             iqa: Sequence[str] = tuple(IQA_MODELS), fid_features: str = "auto",
             inception_weights: str | None = None) -> "MetricSuite":
        """Load what is available: `clip`/`dino` are hub ids or local folders (None: do not load)."""
        if fid_features not in FID_FEATURES:
            raise InferenceError(f"fid_features={fid_features!r}; choose one of {', '.join(FID_FEATURES)}")
        unknown = sorted(set(iqa) - set(IQA_MODELS))
        if unknown:
            raise InferenceError(f"iqa={list(iqa)}: unknown {', '.join(unknown)}; choose from {', '.join(IQA_MODELS)}")
        suite = cls(reannotator=Reannotator(model_dir))
        suite.clip = suite._try(("clip_t", "clip_i"), clip, lambda: ClipScorer.load(clip, model_dir, device))
        suite.dino = suite._try(("dino",), dino, lambda: DinoScorer.load(dino, model_dir, device))
        for name in IQA_MODELS:
            scorer = suite._try((name,), name if name in iqa else None, lambda name=name: IqaScorer.load(name, device))
            if scorer is not None:
                suite.iqa[name] = scorer
        if fid_features in ("auto", "inception"):
            try:
                suite.inception = inception_features(inception_weights)
            except MetricUnavailable as missing:
                suite.notes["fid"] = f"no FID Inception ({missing.skipped.message})"
        suite._choose_fid_features(fid_features)
        depth = suite.reannotator.availability("depth")
        if depth is not None:
            suite.skipped["depth_rmse"] = depth.message
        return suite

    def _try(self, names: tuple[str, ...], model: str | None, load):
        """`load()`, or None with each of `names` recorded as skipped."""
        if model is None:
            for name in names:
                self.skipped[name] = "not requested (pass the model to MetricSuite.load)"
            return None
        try:
            return load()
        except MetricUnavailable as missing:
            for name in names:
                self.skipped[name] = missing.skipped.message
            return None

    def _choose_fid_features(self, wanted: str) -> None:
        loaded = {"inception": self.inception, "dino": self.dino, "clip": self.clip}
        order = ("inception", "dino", "clip") if wanted == "auto" else (wanted,)
        self.fid_features = next((name for name in order if loaded[name] is not None), None)
        if self.fid_features is None:
            reason = f"no feature extractor loaded (tried {', '.join(order)})"
            detail = self.notes.get("fid") if wanted in ("auto", "inception") else self.skipped.get(
                "dino" if wanted == "dino" else "clip_i")
            for name in ("fid", "kid"):
                self.skipped[name] = reason + (f": {detail}" if detail else "")
        elif self.fid_features != "inception" and "fid" in self.notes:
            self.notes["fid"] += f"; fid/kid use {self.fid_features} features instead"

    @property
    def available(self) -> list[str]:
        """The metric names that can be computed here, in `METRIC_NAMES` order."""
        return [name for name in METRIC_NAMES if name not in self.skipped]

    def distribution(self, **kwargs) -> DistributionScore:
        """A fresh FID/KID accumulator on the chosen features (kwargs go to `DistributionScore`)."""
        if self.fid_features is None:
            raise MetricUnavailable(Skipped("fid", self.skipped["fid"],
                                            "load CLIP or DINOv2 weights, or the FID Inception"))
        if self.fid_features == "inception":
            return DistributionScore(self.inception, name=INCEPTION_FEATURES_NAME, **kwargs)
        return DistributionScore(self.dino if self.fid_features == "dino" else self.clip, **kwargs)

    @property
    def fid_features_name(self) -> str | None:
        """The full name of the FID/KID features (reported beside the figures)."""
        scorer = {"dino": self.dino, "clip": self.clip}.get(self.fid_features or "")
        return INCEPTION_FEATURES_NAME if self.fid_features == "inception" else (
            scorer.features_name if scorer else None)

    def describe(self) -> dict:
        """The weights behind the figures and what was skipped, for the report."""
        return {
            "clip": {"model": self.clip.source, "path": self.clip.path} if self.clip else None,
            "dino": {"model": self.dino.source, "path": self.dino.path} if self.dino else None,
            "iqa": sorted(self.iqa),
            "fid_features": self.fid_features_name,
            "skipped": dict(self.skipped),
            "notes": dict(self.notes),
        }
