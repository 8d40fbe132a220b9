"""Quiet by default: what third-party libraries print shows only with `-v/--verbose`.

Every command line of the project (`python -m graph200k`, `annotators`, `sampler`, `train`,
`train.tiny`, `inference`) calls `configure(args.verbose)` before it works. Our own output always
shows: results, tables, our progress bars, the warnings and errors we log. On the default path
the libraries' warnings, INFO lines and model-loading bars do not; `-v` leaves every library at
its own default. Each is turned down at its source, by the switch the library has for it:

- transformers' warnings (e.g. tokenizers' "Token indices sequence length is longer than the
  specified maximum sequence length ... (145 > 77)"): TRANSFORMERS_VERBOSITY=error, and
  `transformers.utils.logging.set_verbosity_error()` where it is imported already;
- diffusers' warnings ("No LoRA keys associated to CLIPTextModel ..."): DIFFUSERS_VERBOSITY=error
  and `diffusers.utils.logging`; huggingface_hub's: HF_HUB_VERBOSITY=error;
- the "Loading pipeline components", "Loading weights", "Writing model shards" bars:
  HF_HUB_DISABLE_PROGRESS_BARS=1 (huggingface_hub, transformers) and diffusers'
  `disable_progress_bar()` (it reads no environment variable: a post-import hook calls it);
- accelerate's INFO lines per checkpoint and anything else logged through the root logger:
  the root logger at ERROR, our packages' loggers (`OUR_LOGGERS`) at INFO;
- Ray's token-authentication warning at `ray.init` and the workers' and raylet's lines
  streamed to the driver: `ray_init_options()` (`logging_level=ERROR`, `log_to_driver=False`);
- a few Python warnings of libraries, each by its exact message (`QUIET_WARNINGS`).

CLIP's truncation warning ("(145 > 77)") is expected and stays hidden: FLUX reads only CLIP's
pooled output, a summary of the first 77 tokens, while the whole prompt reaches the transformer
through T5 (512 tokens at most). A T5 cut does matter: the trainer says so once, in its own words
(`train.prompt_tokens`).

The environment variables are set only where the user has not set them, before the CLIs import
the libraries, so that the processes we start inherit them (Ray's raylet and workers, torch
DataLoader workers). Ray's error line about actor restarts ("has constructor arguments in the
object store and max_restarts > 0") is not silenced: the runner's actors have no restarts
(`annotators.runner`), so Ray has nothing to warn about.
"""

from __future__ import annotations

import argparse
import importlib.abc
import logging
import os
import sys
import warnings
from typing import Callable

OUR_LOGGERS = ("graph200k", "annotators", "sampler", "train", "inference")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
VERBOSE_HELP = ("show the libraries' own warnings, INFO lines and loading progress bars "
                "(transformers, diffusers, accelerate, huggingface_hub, Ray), hidden by default")

QUIET_ENV = {
    "TRANSFORMERS_VERBOSITY": "error",
    "DIFFUSERS_VERBOSITY": "error",
    "HF_HUB_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}

# Python warnings libraries raise on our in-process paths (`annotators sheet`, the evaluation's
# re-annotation, `generate` with several LoRAs; in Ray workers their output is not streamed
# anyway): (message, category, module).
QUIET_WARNINGS = (
    (r"Overwriting tiny_vit_\w+ in registry", UserWarning, r"controlnet_aux\."),  # re-registers timm's models
    (r"overflow encountered in exp", RuntimeWarning, r"controlnet_aux\.hed"),  # its sigmoid saturates to 0: fine
    (r"The given NumPy array is not writable", UserWarning, ""),  # torch.from_numpy of an image never written to
    (r"Already found a `peft_config` attribute", UserWarning, r"peft\."),  # several --lora: several adapters, as asked
)

_verbose = False


def add_verbose_argument(parser: argparse.ArgumentParser) -> None:
    """`-v/--verbose` on a command line: on `parser` and on each of its subcommands (call it once
    they are added), so that both `python -m graph200k -v nodes` and `... nodes -v` work."""
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                sub.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                                 help=VERBOSE_HELP)


def is_verbose() -> bool:
    """What the last `configure` chose (False before any: library code run from Python stays quiet)."""
    return _verbose


def configure(verbose: bool = False, *, hub_progress: bool = False) -> None:
    """Quiet the libraries in this process and in the processes it starts; `verbose`: leave them
    at their own defaults (undoing what an earlier quiet `configure`, or a parent process's, set
    in the environment and in the libraries; not `QUIET_WARNINGS`' filters).

    `hub_progress` keeps huggingface_hub's download bars (`annotators download`, whose work is
    the download). Our loggers (`OUR_LOGGERS`) log INFO and up either way, to stderr."""
    global _verbose
    _verbose = verbose
    root = logging.getLogger()
    if not root.handlers:
        handler = _BarSafeHandler()
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.ERROR)
    for name in OUR_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)
    for name, value in QUIET_ENV.items():
        keep = verbose or (hub_progress and name == "HF_HUB_DISABLE_PROGRESS_BARS")
        if not keep:
            os.environ.setdefault(name, value)
        elif os.environ.get(name) == value:
            del os.environ[name]
    for module, (quiet, loud) in _LIBRARY_SWITCHES.items():
        _when_imported(module, loud if verbose else quiet)
    if not verbose:  # process-wide filters: a later verbose `configure` leaves them
        for message, category, module in QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category, module=module)


class _BarSafeHandler(logging.StreamHandler):
    """Writes each record to stderr through `tqdm.write`, which lifts the progress bars shown and
    redraws them below: a log line never lands in the middle of a bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream)
        except Exception:
            self.handleError(record)


def ray_init_options() -> dict:
    """Keyword arguments of `ray.init` for the chosen verbosity.

    Quiet: the driver's Ray loggers at ERROR (this drops the token-authentication warning
    that every new local cluster prints), and the workers' and raylet's output stays in
    their log files (/tmp/ray/session_latest/logs) instead of being streamed to the terminal.
    Workers report through their results, never by printing."""
    if _verbose:
        return {"logging_level": logging.INFO, "log_to_driver": True}
    return {"logging_level": logging.ERROR, "log_to_driver": False}


def _bars_off() -> bool:
    return os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS") == "1"


def _quiet_transformers(module) -> None:
    if os.environ.get("TRANSFORMERS_VERBOSITY") == "error":  # else the user's own setting
        module.set_verbosity_error()
    if _bars_off():
        module.disable_progress_bar()


def _loud_transformers(module) -> None:
    module.set_verbosity_warning()
    module.enable_progress_bar()


def _quiet_diffusers(module) -> None:
    if os.environ.get("DIFFUSERS_VERBOSITY") == "error":
        module.set_verbosity_error()
    module.disable_progress_bar()  # diffusers reads no environment variable for its bars


def _loud_diffusers(module) -> None:
    module.set_verbosity_warning()
    module.enable_progress_bar()


def _quiet_hub(module) -> None:
    if os.environ.get("HF_HUB_VERBOSITY") == "error":
        module.set_verbosity_error()


def _loud_hub(module) -> None:
    module.set_verbosity_warning()


# Applied to a library already imported, else right after its import (see `_AfterImport`): a
# library reads its environment variable once, when it is first imported or first logs.
_LIBRARY_SWITCHES: dict[str, tuple[Callable, Callable]] = {
    "transformers.utils.logging": (_quiet_transformers, _loud_transformers),
    "diffusers.utils.logging": (_quiet_diffusers, _loud_diffusers),
    "huggingface_hub.utils.logging": (_quiet_hub, _loud_hub),
}


def _when_imported(name: str, then: Callable) -> None:
    """Call `then(module)` now if `name` is imported, else right after it is first imported
    (replacing a hook an earlier `configure` left for `name`)."""
    for finder in [f for f in sys.meta_path if isinstance(f, _AfterImport) and f.name == name]:
        sys.meta_path.remove(finder)
    if name in sys.modules:
        then(sys.modules[name])
    else:
        sys.meta_path.insert(0, _AfterImport(name, then))


class _AfterImport(importlib.abc.MetaPathFinder):
    """A post-import hook (what wrapt's `register_post_import_hook` does): finds `name` through
    the other finders and runs `then(module)` once the module has executed, then steps aside.

    Needed for diffusers, whose progress bars have no environment switch, and for callers that
    import a library before `configure` runs."""

    def __init__(self, name: str, then: Callable):
        self.name, self.then = name, then

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find else None
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module, then = spec.loader.exec_module, self.then

        def exec_then(module):
            exec_module(module)
            then(module)

        spec.loader.exec_module = exec_then  # this module's own loader instance
        return spec
