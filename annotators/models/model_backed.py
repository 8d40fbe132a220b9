"""The common part of every annotator that loads published weights.

A subclass lists its `models` (`ModelSpec`: hub id, pinned revision, licence,
required files); this base derives `model_id`/`revision`/`license` from them,
answers `availability()` offline (a `--model-dir` folder, a `model` setting,
or the Hugging Face cache) and resolves the folder each model loads from, so
the code path that loads real weights is the one the tests drive with tiny
random models saved to a temporary folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..base import Annotator, Availability
from .torch_runtime import inference_device
from .weights import ModelSpec, availability, resolve


@dataclass(frozen=True)
class ModelSettings:
    """Where the weights are. `--model-dir DIR` sets `model_dir` for every model-backed annotator."""

    model_dir: str | None = None
    """A folder holding `<repo_id>/` (e.g. `DIR/lllyasviel/Annotators/ControlNetHED.pth`)."""
    model: str | None = None
    """Another hub id, or a local folder, for the main model (same class and file layout)."""


@dataclass(frozen=True)
class DetectorSettings(ModelSettings):
    """controlnet_aux detectors: the resolution of the image's short side the net sees."""

    detect_resolution: int = 512


class ModelBackedAnnotator(Annotator):
    """Base of the annotators that run a published model; see the module docstring."""

    models: ClassVar[tuple[ModelSpec, ...]] = ()
    Settings: ClassVar[type] = ModelSettings

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.models:
            cls.model_id = cls.models[0].repo_id
            cls.revision = cls.models[0].revision
            if "license" not in cls.__dict__:
                cls.license = " + ".join(dict.fromkeys(m.license for m in cls.models))

    # --- where the weights are ------------------------------------------------------------------
    def override(self, spec: ModelSpec) -> str | None:
        """The setting that replaces `spec` (the `model` setting for the main model)."""
        return self.settings.model if spec is self.models[0] else None

    def weights_path(self, spec: ModelSpec) -> str:
        """The local folder to load `spec` from (never downloads)."""
        return resolve(spec, self.settings.model_dir, self.override(spec))

    def availability(self) -> Availability:
        for spec in self.models:
            found = availability(spec, self.settings.model_dir, self.override(spec), self.name)
            if not found.ok:
                return found
        return Availability.yes()

    @classmethod
    def is_available(cls) -> Availability:
        return cls().availability()

    @property
    def device(self) -> torch.device:
        return inference_device()
