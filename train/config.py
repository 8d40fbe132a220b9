"""Typed trainer configuration: YAML file + `dotted.key=value` overrides -> `TrainConfig`.

Every key has a type and a default here (the single source `--help` prints); a YAML file or
an override naming an unknown key, or giving a value of the wrong type, raises `ConfigError`
naming that key.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from inference.settings import DEFAULT_MODEL, SamplingSettings
from sampler.instruction import InstructionConfig
from sampler.settings import GridSettings
from sampler.sharing import RowSharing

SAMPLING = SamplingSettings()  # inference's sampling defaults: validation samples as `python -m inference` does


class ConfigError(ValueError):
    """A config file or override is wrong; the message names the key."""


@dataclass
class ModelConfig:
    pretrained: str = DEFAULT_MODEL  # hub id or local folder (FluxFillPipeline layout)
    revision: str | None = None
    weight_dtype: str = "bf16"  # frozen weights: bf16 | fp16 | fp32
    text_encoders_on: str = "device"  # device | cpu (encode prompts on CPU, send embeddings over)
    max_sequence_length: int = SAMPLING.max_sequence_length  # T5 tokens (512 as the reference)
    gradient_checkpointing: bool = True


@dataclass
class LoraSection:
    rank: int = 256
    alpha: float | None = None  # None = rank, i.e. scale 1.0 as the reference
    dropout: float = 0.0
    target_modules: list[str] | None = None  # None = every nn.Linear of the transformer


# `data` is the sampler's own `GridSettings` (its keys and defaults, written once in sampler/settings.py) plus
# the trainer's keys; `data.instruction` and `data.row_sharing` are the sampler's own classes
# (sampler.InstructionConfig: p_task, p_content, p_drop, p_diffusers; sampler.RowSharing: degradation, style),
# frozen and checking their values.
@dataclass
class DataConfig(GridSettings):
    shards: list[str] = field(default_factory=list)  # webdataset shard paths/globs (GridDataset)
    num_workers: int = 0  # DataLoader worker processes drawing grids (torchdata's StatefulDataLoader keeps resume exact)
    instruction: InstructionConfig = field(default_factory=InstructionConfig)  # prompt parts kept or dropped
    row_sharing: RowSharing = field(default_factory=RowSharing)  # what in-context rows share with the query


@dataclass
class OptimConfig:
    lr: float = 1e-4
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    grad_clip: float = 2.0  # max grad norm; 0 disables
    lr_scheduler: str = "constant"  # any diffusers.optimization.get_scheduler name
    warmup_steps: int = 0


@dataclass
class FlowSettings:
    """The rectified-flow objective (train/flow.py), as `train.*` keys: `TrainSection` is a FlowSettings,
    so the trainer hands its `train` section to `flow_loss` as it is."""

    guidance: float = 1.0  # guidance embedding at training (reference 1.0; sampling uses 30); unused without one
    loss_region: str = "all"  # all (every image token, reference) | masked (masked cells only)
    timestep_sampling: str = "logit_normal"  # logit_normal | mode | uniform
    logit_mean: float = 0.0
    logit_std: float = 1.0
    mode_scale: float = 1.29
    resolution_shift: bool = False  # shift s by the grid's token count as at sampling (reference: off)
    loss_weighting: str = "none"  # none | sigma_sqrt | cosmap


@dataclass
class TrainSection(FlowSettings):
    """`train.*`: the flow objective's keys (`FlowSettings`, listed first), then the run's."""

    output_dir: str = "out/train"
    max_steps: int = 10000  # optimizer steps
    global_batch_size: int = 64  # grids per optimizer step, all ranks together
    micro_batch_size: int = 1  # grids per forward pass and rank (same-shape grids are stacked)
    mixed_precision: str = "bf16"  # no | bf16 | fp16 (accelerate autocast; LoRA and optimizer stay fp32)
    seed: int = 20240826
    max_nonfinite_in_row: int = 10  # abort after this many consecutive NaN/inf losses


@dataclass
class CheckpointConfig:
    every: int = 1000  # optimizer steps; 0 disables periodic checkpoints
    keep: int = 3  # newest checkpoints kept
    resume: str | None = None  # latest | path to a checkpoint folder


@dataclass
class ValidationConfig:
    every: int = 1000  # optimizer steps; 0 disables
    shards: list[str] = field(default_factory=list)  # held-out shards; empty = the held-out keys of data.shards
    holdout: float = 0.01  # with no validation.shards: fraction of data.shards keys kept out of training; 0 = none
    tasks: str = "test"
    num_grids: int = 4
    seed: int = 0
    num_inference_steps: int = SAMPLING.num_inference_steps
    guidance: float = SAMPLING.guidance_scale  # the pipeline's guidance_scale (the reference samples at 30)
    metrics: list[str] = field(default_factory=lambda: ["canny_f1", "clip_t"])  # any of VALIDATION_METRICS; [] = none
    clip_model: str = "openai/clip-vit-large-patch14"  # clip_t's CLIP: hub id (offline, HF cache) or local folder
    metrics_on: str = "device"  # device | cpu: where the metric models run (main process only, fp32)


VALIDATION_METRICS = ("canny_f1", "clip_t", "ssim", "psnr")
"""The cheap metrics validation can log (train/validation_metrics.py); the names of inference.metrics."""


@dataclass
class LogConfig:
    every: int = 10  # optimizer steps between scalar logs
    report_to: str = "tensorboard"  # tensorboard | wandb | none


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraSection = field(default_factory=LoraSection)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainSection = field(default_factory=TrainSection)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def validate(self) -> "TrainConfig":
        """Cross-field checks that a type alone cannot express."""
        choices = {
            "model.weight_dtype": ("bf16", "fp16", "fp32"),
            "model.text_encoders_on": ("device", "cpu"),
            "train.mixed_precision": ("no", "bf16", "fp16"),
            "train.loss_region": ("all", "masked"),
            "train.timestep_sampling": ("logit_normal", "mode", "uniform"),
            "train.loss_weighting": ("none", "sigma_sqrt", "cosmap"),
            "log.report_to": ("tensorboard", "wandb", "none"),
            "validation.metrics_on": ("device", "cpu"),
        }
        for key, allowed in choices.items():
            value = get_key(self, key)
            if value not in allowed:
                raise ConfigError(f"config key '{key}': {value!r} is not one of {', '.join(allowed)}")
        positive = ("lora.rank", "train.max_steps", "train.global_batch_size", "train.micro_batch_size",
                    "data.resolution", "model.max_sequence_length", "train.max_nonfinite_in_row", "data.pool_size",
                    "checkpoint.keep", "log.every")
        for key in positive:
            if get_key(self, key) <= 0:
                raise ConfigError(f"config key '{key}': must be > 0, got {get_key(self, key)}")
        for key in ("checkpoint.every", "validation.every", "data.num_workers"):
            if get_key(self, key) < 0:
                raise ConfigError(f"config key '{key}': must be >= 0, got {get_key(self, key)}")
        self._check_optim_numbers()
        if self.data.resolution % 16:
            raise ConfigError(f"config key 'data.resolution': must be a multiple of 16, got {self.data.resolution}")
        if self.model.max_sequence_length > 512:
            raise ConfigError("config key 'model.max_sequence_length': FLUX's T5 takes at most 512 tokens")
        if not 0.0 <= self.data.mask_any_prob <= 1.0:
            raise ConfigError(f"config key 'data.mask_any_prob': must be within [0, 1], got {self.data.mask_any_prob}")
        if not 0.0 <= self.validation.holdout < 1.0:
            raise ConfigError(f"config key 'validation.holdout': must be within [0, 1) (0 holds nothing out), "
                              f"got {self.validation.holdout}")
        unknown = [m for m in self.validation.metrics if m not in VALIDATION_METRICS]
        if unknown:
            raise ConfigError(f"config key 'validation.metrics': unknown {', '.join(map(repr, unknown))}; "
                              f"choose from {', '.join(VALIDATION_METRICS)} ([] logs none)")
        self._check_tasks()
        return self

    def _check_optim_numbers(self) -> None:
        """AdamW and the schedule take these as given: a NaN or negative value would surface as a raw torch
        error after the model loads, or as a run of NaN losses."""
        o = self.optim
        rules = {
            "optim.lr": (o.lr, o.lr > 0, "> 0"),
            "optim.eps": (o.eps, o.eps > 0, "> 0"),
            "optim.beta1": (o.beta1, 0 <= o.beta1 < 1, "within [0, 1)"),
            "optim.beta2": (o.beta2, 0 <= o.beta2 < 1, "within [0, 1)"),
            "optim.weight_decay": (o.weight_decay, o.weight_decay >= 0, ">= 0"),
            "optim.grad_clip": (o.grad_clip, o.grad_clip >= 0, ">= 0 (0 disables clipping)"),
            "optim.warmup_steps": (o.warmup_steps, o.warmup_steps >= 0, ">= 0"),
        }
        for key, (value, ok, allowed) in rules.items():
            if not (math.isfinite(value) and ok):
                raise ConfigError(f"config key '{key}': must be a finite number {allowed}, got {value}")

    def _check_tasks(self) -> None:
        """`data.tasks`, `data.family_weights` and `validation.tasks` read as the sampler will, so a typo fails
        before the model loads."""
        from graph200k import Graph200kError, TaskGraph
        from sampler.planner import _resolve_tasks

        try:
            graph = TaskGraph(weights=self.data.family_weights)
        except Graph200kError as err:
            raise ConfigError(f"config key 'data.family_weights': {err}") from None
        try:
            selected = _resolve_tasks(graph, self.data.tasks)
        except Graph200kError as err:
            raise ConfigError(f"config key 'data.tasks': {err}") from None
        if not any(graph.weights[t.family] > 0 for t in selected):
            raise ConfigError("config key 'data.family_weights': every family of data.tasks has weight 0; "
                              "give one of them a weight > 0")
        try:
            _resolve_tasks(graph, self.validation.tasks)
        except Graph200kError as err:
            raise ConfigError(f"config key 'validation.tasks': {err}") from None

    def gradient_accumulation(self, world_size: int) -> int:
        """Micro-batches per optimizer step on each rank, so that global_batch_size grids make one step."""
        per_step = self.train.micro_batch_size * world_size
        if self.train.global_batch_size % per_step:
            raise ConfigError(
                f"config key 'train.global_batch_size': {self.train.global_batch_size} is not a multiple of "
                f"train.micro_batch_size ({self.train.micro_batch_size}) x {world_size} processes"
            )
        return self.train.global_batch_size // per_step


# ---------------------------------------------------------------- loading


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is not None:
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", str(tp))


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check `value` against annotation `tp` (int -> float allowed), or raise naming `key`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(key, value, arg)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"config key '{key}': expected {_type_name(tp)}, got {value!r}")
    if origin is dict:
        key_tp, value_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping, got {value!r}")
        return {_coerce(f"{key}.{k}", k, key_tp): _coerce(f"{key}.{k}", v, value_tp) for k, v in value.items()}
    if origin is list:
        (item,) = typing.get_args(tp)
        if isinstance(value, str):  # a single shard path/glob is a list of one
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
        return [_coerce(f"{key}[{i}]", v, item) for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"config key '{key}': expected {_type_name(tp)}, got {value!r}")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _apply(obj: Any, data: dict[str, Any], prefix: str) -> Any:
    """`obj` with `data` applied: set in place, or, for a frozen section (the sampler's own classes, which
    check each value as they are built), a new object with each value replaced in turn."""
    if not isinstance(data, dict):
        raise ConfigError(f"config key '{prefix.rstrip('.') or '<root>'}': expected a mapping, got {data!r}")
    hints = _hints(type(obj))
    frozen = type(obj).__dataclass_params__.frozen
    for name, value in data.items():
        key = f"{prefix}{name}"
        if name not in hints or name not in {f.name for f in dataclasses.fields(obj)}:
            known = ", ".join(f.name for f in dataclasses.fields(obj))
            raise ConfigError(f"unknown config key '{key}' (known here: {known})")
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            value = _apply(getattr(obj, name), value, f"{key}.")
        else:
            value = _coerce(key, value, tp)
        if not frozen:
            setattr(obj, name, value)
            continue
        try:
            obj = dataclasses.replace(obj, **{name: value})
        except ValueError as err:
            raise ConfigError(f"config key '{key}': {err}") from None
    return obj


def set_key(cfg: TrainConfig, dotted: str, value: Any) -> None:
    """Set one dotted key, e.g. set_key(cfg, "optim.lr", 3e-4)."""
    head, *rest = dotted.split(".")
    nested: Any = value
    for part in reversed(rest):
        nested = {part: nested}
    _apply(cfg, {head: nested}, "")


def get_key(cfg: Any, dotted: str) -> Any:
    obj = cfg
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


class _Yaml12Loader(yaml.SafeLoader):
    """YAML 1.2 scalars: only true/false are booleans ("no" stays a string) and 1e-4 is a float."""


_Yaml12Loader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:float")]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
               r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."))


def read_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Yaml12Loader)


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` with the value read as YAML 1.2 (so 1e-4, true, null, no, [a, b] all work)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not key=value")
    key, raw = text.split("=", 1)
    try:
        value = read_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"config key '{key}': cannot read value {raw!r}: {err}") from None
    return key.strip(), value


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Defaults, then the YAML file, then each override in order; validated."""
    cfg = TrainConfig()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            data = read_yaml(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
        _apply(cfg, data, "")
    for text in overrides:
        key, value = parse_override(text)
        set_key(cfg, key, value)
    return cfg.validate()


def flat_defaults(cfg: Any = None, prefix: str = "") -> list[tuple[str, str, Any]]:
    """(dotted key, type, default) for every leaf key, in declaration order, for --help."""
    cfg = TrainConfig() if cfg is None else cfg
    rows = []
    hints = _hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            rows.extend(flat_defaults(value, f"{prefix}{f.name}."))
        else:
            rows.append((f"{prefix}{f.name}", _type_name(hints[f.name]), value))
    return rows


def to_dict(cfg: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
