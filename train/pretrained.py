"""`model.pretrained`: a local pipeline folder or a Hub id, checked in seconds and loaded with one-line errors.

`check_pretrained` runs before the data and the model are built: a folder that does not exist,
or is no diffusers pipeline folder, and a Hub id that is neither cached nor downloadable (offline,
`HF_HUB_OFFLINE`, or the Hub not answering within seconds: `graph200k.hub`) each raise
`ConfigError` naming the model and what to do (for the gated FLUX.1 [dev] repositories: accept the
licence, log in, or point `model.pretrained` at a local folder). `load_pipeline` then loads it,
from the cache only when the Hub cannot be reached, turning the Hub's errors (gated, not found,
incomplete cache) into the same kind of line instead of pages of httpx tracebacks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .config import ConfigError, ModelConfig

KEY = "config key 'model.pretrained'"
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
LOCAL_HINT = "model.pretrained=/path/to/local/folder (a FluxFillPipeline folder: `save_pretrained` output or a " \
             "downloaded snapshot)"


def gated_licence(repo_id: str) -> str | None:
    """The licence that gates `repo_id` on the Hub, for the FLUX.1 [dev] family (FLUX.1-Fill-dev, ...)."""
    owner, _, name = repo_id.partition("/")
    if owner == "black-forest-labs" and name.startswith("FLUX.1") and name.endswith("-dev"):
        return "the FLUX.1 [dev] Non-Commercial License"
    return None


def how_to_get(repo_id: str) -> str:
    """What a user does to make `repo_id` loadable."""
    licence = gated_licence(repo_id)
    if licence:
        return (f"{repo_id} is gated under {licence}: accept it on https://huggingface.co/{repo_id}, run "
                f"`huggingface-cli login` (or `hf auth login`) and run again with network to download it, or set "
                f"{LOCAL_HINT}")
    return (f"download it with `hf download {repo_id}` on a machine with network (`hf auth login` first for a "
            f"private or gated repository), or set {LOCAL_HINT}")


@dataclass(frozen=True)
class Pretrained:
    """Where the pipeline comes from: a local folder, or a Hub id (cached, or downloadable)."""

    name: str  # what from_pretrained gets
    local_folder: bool
    cache_only: bool  # the Hub is unreachable: load from the cache without asking it


def _looks_like_hub_id(text: str) -> bool:
    return bool(_HUB_ID.fullmatch(text)) and not text.startswith((".", "~"))


def check_pretrained(model: ModelConfig) -> Pretrained:
    """`model.pretrained` resolved, or `ConfigError` naming it and the fix (see the module docstring)."""
    name = model.pretrained.strip()
    if not name:
        raise ConfigError(f"{KEY} is empty: give a Hub id (black-forest-labs/FLUX.1-Fill-dev) or {LOCAL_HINT}")
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ConfigError(f"{KEY}: {path} has no model_index.json, so it is no diffusers pipeline folder; give "
                              "a FluxFillPipeline folder (`save_pretrained` output, a downloaded snapshot of "
                              "black-forest-labs/FLUX.1-Fill-dev, or `python -m train.tiny --out DIR` for a smoke run)")
        return Pretrained(str(path), local_folder=True, cache_only=False)
    if path.exists():
        raise ConfigError(f"{KEY}: {path} is a file; give the pipeline's folder (the one holding model_index.json)")
    if not _looks_like_hub_id(name):
        raise ConfigError(f"{KEY}: folder {path} does not exist; give an existing FluxFillPipeline folder "
                          "(`python -m train.tiny --out DIR` writes a tiny one) or a Hub id such as "
                          "black-forest-labs/FLUX.1-Fill-dev")
    from huggingface_hub import constants, try_to_load_from_cache

    from graph200k.hub import hub_unreachable

    cached = isinstance(try_to_load_from_cache(name, "model_index.json", revision=model.revision), str)
    why = hub_unreachable()
    if why is None:
        return Pretrained(name, local_folder=False, cache_only=False)
    if cached:
        return Pretrained(name, local_folder=False, cache_only=True)
    raise ConfigError(f"{KEY}: {name} is not a folder here and not in the Hugging Face cache ({constants.HF_HUB_CACHE}),"
                      f" and cannot be downloaded: {why}. {how_to_get(name)}")


def load_pipeline(pretrained: Pretrained, model: ModelConfig, dtype):
    """`FluxFillPipeline.from_pretrained`, with the Hub's failures as one `ConfigError` line."""
    from diffusers import FluxFillPipeline

    try:
        return FluxFillPipeline.from_pretrained(pretrained.name, revision=model.revision, dtype=dtype,
                                                local_files_only=pretrained.cache_only)
    except OSError as err:  # huggingface_hub's errors (gated, not found, network, incomplete cache) are OSErrors
        first = " ".join(str(err).split())[:300] or type(err).__name__
        if pretrained.local_folder:
            raise ConfigError(f"{KEY}: cannot load {pretrained.name} as a FluxFillPipeline "
                              f"({type(err).__name__}: {first})") from None
        raise ConfigError(f"{KEY}: cannot load {pretrained.name} ({type(err).__name__}: {first}). "
                          f"{how_to_get(pretrained.name)}") from None
