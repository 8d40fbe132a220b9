"""Where a model's weights are: a `--model-dir` folder, a local path, or the Hugging Face cache.

Loading never touches the network: weights come from `<model_dir>/<repo_id>`
when that folder exists, else from the local Hugging Face cache at the pinned
revision. `python -m annotators download` is the one step that fetches them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from ..base import Availability, hub_weights_available

TRANSFORMERS_FILES = ("*.json", "*.safetensors", "*.txt", "*.jinja", "*.model", "*.tiktoken")
"""What a transformers checkpoint needs (configs, weights, tokenizer files); no .bin/.pt duplicates."""


@dataclass(frozen=True)
class ModelSpec:
    """One set of published weights an annotator loads."""

    repo_id: str
    revision: str
    license: str
    required: tuple[str, ...]
    """Files that must be present for the annotator to run (checked offline)."""
    patterns: tuple[str, ...] = TRANSFORMERS_FILES
    """What `download` fetches (`allow_patterns` of `snapshot_download`)."""
    any_of: tuple[str, ...] = ()
    """At least one of these must be present too (a checkpoint ships safetensors or a .bin, whole or sharded)."""
    role: str = "model"


TRANSFORMERS_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                        "pytorch_model.bin.index.json")


def local_folder(spec: ModelSpec, model_dir: str | None, override: str | None = None) -> Path | None:
    """The local folder holding `spec`'s files, if one is configured and exists.

    `override` is a path or a hub id given in the annotator's settings; a path
    wins, a hub id replaces `spec.repo_id` under `model_dir`."""
    if override and Path(override).is_dir():
        return Path(override)
    repo_id = override or spec.repo_id
    if model_dir and (Path(model_dir) / repo_id).is_dir():
        return Path(model_dir) / repo_id
    return None


def availability(spec: ModelSpec, model_dir: str | None, override: str | None = None,
                 annotator: str = "") -> Availability:
    """Whether `spec`'s required files are present locally (folder or cache); never downloads."""
    folder = local_folder(spec, model_dir, override)
    repo_id = override or spec.repo_id
    if folder is not None:
        found = hub_weights_available(str(folder), None, spec.required)
    else:
        found = hub_weights_available(repo_id, spec.revision if repo_id == spec.repo_id else None, spec.required)
    if found.ok and spec.any_of:
        path = Path(resolve(spec, model_dir, override))
        if not any((path / f).exists() for f in spec.any_of):
            found = Availability(False, f"{repo_id} has no weights file ({', '.join(spec.any_of)}) in {path}")
    if found.ok or folder is not None:
        return found
    fetch = (f"python -m annotators download {annotator}".rstrip() if repo_id == spec.repo_id
             else f"hf download {repo_id}")
    return Availability(False, found.reason, f"{fetch} (on a machine with network), or --model-dir DIR "
                                             f"with the files in DIR/{repo_id}/")


def resolve(spec: ModelSpec, model_dir: str | None, override: str | None = None) -> str:
    """A local folder to `from_pretrained` from: the configured folder, or the cached snapshot."""
    folder = local_folder(spec, model_dir, override)
    if folder is not None:
        return str(folder)
    from huggingface_hub import snapshot_download

    repo_id = override or spec.repo_id
    revision = spec.revision if repo_id == spec.repo_id else None
    return snapshot_download(repo_id, revision=revision, local_files_only=True, allow_patterns=list(spec.patterns))


def download(spec: ModelSpec, model_dir: str | None = None) -> tuple[str, str]:
    """Fetch `spec` (into `<model_dir>/<repo_id>` or the Hugging Face cache); return (path, commit)."""
    from huggingface_hub import HfApi, snapshot_download

    local_dir = str(Path(model_dir) / spec.repo_id) if model_dir else None
    path = snapshot_download(spec.repo_id, revision=spec.revision, allow_patterns=list(spec.patterns),
                             local_dir=local_dir)
    commit = spec.revision
    if len(commit) != 40:
        commit = HfApi().model_info(spec.repo_id, revision=spec.revision).sha or commit
    return path, commit
