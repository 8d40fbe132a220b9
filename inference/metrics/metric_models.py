"""The published weights the metrics load, with their licences, and where each is looked for.

Like the annotators' weights (`annotators.models.weights`), a metric model is found without
touching the network: a local folder given in place of the hub id, `<model_dir>/<repo_id>/`,
or the Hugging Face cache at the pinned revision. `download_metric_model` is the one
step that fetches (on a machine with network).

Licences: CLIP ViT-L/14 is MIT and DINOv2 is Apache-2.0 (their model cards). The FID
Inception is torch-fidelity's port of the TF 2015-12-05 InceptionV3 graph (code and
weights Apache-2.0); it needs the `torch-fidelity` package and its weights file, neither
installed here, so FID/KID also take CLIP or DINOv2 image features (the name of the
features used is reported beside the figures). MANIQA and MUSIQ come from pyiqa
(`pip install '.[iqa]'`): the nets' original code is Apache-2.0 (IIGROUP/MANIQA,
google-research MUSIQ) but pyiqa 0.1.16 itself, which ships the loaders and the
converted checkpoints (KonIQ-10k trained), is PolyForm-Noncommercial-1.0.0 (and NTU
S-Lab 1.0 for parts): non-commercial use only (read from the wheel's licence files).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from annotators.models.weights import TRANSFORMERS_WEIGHTS, ModelSpec, availability, download, resolve

from .skipped import MetricUnavailable, Skipped

CLIP_VIT_L14 = ModelSpec(
    "openai/clip-vit-large-patch14", "32bd64288804d66eefd0ccbe215aa642df71cc41", "MIT",
    required=("config.json", "preprocessor_config.json"), any_of=TRANSFORMERS_WEIGHTS, role="metric")
"""torchmetrics' CLIPScore default model; the CLIP used for clip_t and clip_i."""

DINOV2_BASE = ModelSpec(
    "facebook/dinov2-base", "f9e44c814b77203eaa57a6bdbbd535f21ede1415", "Apache-2.0",
    required=("config.json", "preprocessor_config.json"), any_of=TRANSFORMERS_WEIGHTS, role="metric")
"""DINOv2 ViT-B/14: the `dino` subject-fidelity metric (CLS embedding cosine)."""


@dataclass(frozen=True)
class MetricModel:
    """One row of `METRIC_MODELS`: the weights behind some metrics, their licence and loader."""

    source: str
    license: str
    metrics: tuple[str, ...]
    loader: str
    spec: ModelSpec | None = None
    """Set for Hugging Face Hub models (found and fetched like the annotators' weights)."""


METRIC_MODELS: dict[str, MetricModel] = {
    "clip": MetricModel(CLIP_VIT_L14.repo_id, CLIP_VIT_L14.license, ("clip_t", "clip_i", "fid", "kid"),
                        "transformers CLIPModel + CLIPProcessor", CLIP_VIT_L14),
    "dino": MetricModel(DINOV2_BASE.repo_id, DINOV2_BASE.license, ("dino", "fid", "kid"),
                        "transformers AutoModel (Dinov2Model) + AutoImageProcessor", DINOV2_BASE),
    "inception": MetricModel("torch-fidelity weights-inception-2015-12-05-6726825d.pth", "Apache-2.0",
                             ("fid", "kid"), "torchmetrics NoTrainInceptionV3 (needs torch-fidelity)"),
    "maniqa": MetricModel("pyiqa 'maniqa' (ckpt_koniq10k.pt + timm vit_base_patch8_224)",
                          "PolyForm-Noncommercial-1.0.0 (pyiqa); MANIQA code Apache-2.0", ("maniqa",),
                          "pyiqa.create_metric"),
    "musiq": MetricModel("pyiqa 'musiq' (musiq_koniq_ckpt-e95806b9.pth)",
                         "PolyForm-Noncommercial-1.0.0 (pyiqa); MUSIQ code Apache-2.0", ("musiq",),
                         "pyiqa.create_metric"),
}


def locate(spec: ModelSpec, model: str | None, model_dir: str | None, metric: str) -> str:
    """The local folder to `from_pretrained` `model` from (a folder, a hub id, or None for `spec`).

    Raises `MetricUnavailable` naming the model and how to get it when its files are not here."""
    override = None if model in (None, spec.repo_id) else model
    found = availability(spec, model_dir, override)
    if not found.ok:
        repo_id = override or spec.repo_id
        if override and Path(override).is_dir():
            enable = f"put the missing files in {override}"
        else:
            revision = f" --revision {spec.revision}" if repo_id == spec.repo_id else ""
            enable = (f"hf download {repo_id}{revision} (on a machine with network), or model_dir=DIR "
                      f"with the files in DIR/{repo_id}/, or pass a local folder")
        raise MetricUnavailable(Skipped(metric, f"{repo_id}: {found.reason}", enable))
    return resolve(spec, model_dir, override)


def download_metric_model(name: str, model_dir: str | None = None) -> tuple[str, str]:
    """Fetch the hub weights of `METRIC_MODELS[name]` ("clip", "dino") into the cache or `model_dir`."""
    entry = METRIC_MODELS.get(name)
    if entry is None or entry.spec is None:
        hub = [k for k, v in METRIC_MODELS.items() if v.spec is not None]
        raise MetricUnavailable(Skipped(name, f"{name!r} is not a Hugging Face Hub metric model",
                                        f"download one of {', '.join(hub)}; see METRIC_MODELS for the others"))
    return download(entry.spec, model_dir)
