"""The annotator contract: what an annotator declares, and how it maps a batch.

An annotator is one small class:

    class CannyAnnotator(Annotator):
        name = "canny"
        produces = ("canny",)          # node names from graph200k.catalog
        version = "1"
        batch_size = 32
        num_cpus = 1

        def annotate(self, batch):
            return [{"canny": edges(s.target)} for s in batch]

and one line in `annotators.registry`. The runner does the rest: it creates
one instance per Ray actor, calls `load()` once (load weights there, not in
`__init__` of the module), feeds `annotate` batches of `SampleInput`s (target
decoded to RGB, every node in `needs` decoded per its storage mode), encodes
what it returns per each node's `Storage` (field name, format, mode) and writes
the shards. Model-backed annotators set `model_id` and `revision` (recorded in
every shard's stats) and override `is_available()` so a run without the weights
skips them with a reason and the command that enables them
(`hub_weights_available` does this for Hugging Face Hub models).

Two optional extensions. Settings: an annotator with knobs
(`num_inference_steps`, model paths, a style folder) declares them as a frozen
dataclass `Settings` whose defaults are the documented ones; `python -m
annotators run --set NAME.FIELD=VALUE` overrides them, and `self.settings`
holds the result. A renamed setting lists its former name in the class's
`former_names` (former -> current): the former name is still accepted, and
shard ids and records keep it (`output_settings`). An annotator whose weights
location is a setting overrides `availability()`.
Metadata: a result may carry `{NODE_METADATA: {node: JSON value}}` beside the
images (seeds, the edit's name); it is stored as the node shard's `json`
field and merged into the sample's metadata under the node's name.
"""

from __future__ import annotations

import dataclasses
import io
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
from PIL import Image

from graph200k.catalog import DEFAULT_NODES
from graph200k.nodes import NodeRegistry, NodeType, Production, field_name

NODE_METADATA = "json"
"""Key of an `annotate` result that holds per-node metadata: `{node: JSON-serialisable value}`."""


@dataclass(frozen=True)
class Availability:
    """Whether an annotator can run here; if not, why and how to make it run."""

    ok: bool
    reason: str = ""
    how_to_enable: str = ""

    @classmethod
    def yes(cls) -> "Availability":
        return cls(True)


@dataclass(frozen=True)
class NoSettings:
    """The settings of an annotator that has none."""


def _convert(value: Any, kind: Any, where: str) -> Any:
    """A setting given as text (`--set`) converted to its field's declared type (bool, int, float, str)."""
    if not isinstance(value, str):
        return value
    text = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    base = text.replace("| None", "").replace("None |", "").strip()
    if "None" in text and value.strip().lower() in ("", "none"):
        return None
    try:
        if base == "bool":
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if base in ("int", "float"):
            return {"int": int, "float": float}[base](value)
    except ValueError:
        raise ValueError(f"{where}: cannot read {value!r} as {base}") from None
    return value


def former_names(settings_cls: type) -> Mapping[str, str]:
    """A settings class's renamed fields, former name -> current name (its `former_names` class attribute)."""
    return getattr(settings_cls, "former_names", {})


def current_names(cls: type["Annotator"], values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` with each former setting name (`steps`) read as its current one (`num_inference_steps`)."""
    renamed = former_names(cls.Settings)
    for former, current in renamed.items():
        if former in values and current in values:
            raise ValueError(f"setting {cls.name}.{current} is given twice ({former!r} is its former name): "
                             f"give {current!r} only")
    return {renamed.get(name, name): value for name, value in values.items()}


def make_settings(cls: type["Annotator"], values: Mapping[str, Any]) -> Any:
    """`cls.Settings` with `values` applied (strings converted to the field's type); unknown names are an error.
    A former setting name is still accepted for its current one (`former_names`)."""
    values = current_names(cls, values)
    known = {f.name: f for f in dataclasses.fields(cls.Settings)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"annotator {getattr(cls, 'name', cls.__name__)!r} has no setting "
                         f"{', '.join(map(repr, unknown))}; "
                         f"its settings: {', '.join(known) or 'none'}")
    return cls.Settings(**{k: _convert(v, known[k].type, f"setting {cls.name}.{k}") for k, v in values.items()})


@dataclass
class SampleInput:
    """What an annotator sees of one sample: its key, target, needed nodes and metadata.

    `nodes[name]` is an (H, W, 3) or (H, W) uint8 array for a single-instance
    node, a list of them (or of (image, pair) tuples) for a multi-instance node."""

    key: str
    target: np.ndarray
    nodes: dict[str, Any] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)


class Annotator(ABC):
    """Base class; subclasses set the class attributes and implement `annotate`."""

    name: ClassVar[str]
    """Unique annotator name (usually the nodes' `producer`)."""
    produces: ClassVar[tuple[str, ...]]
    """Node names written by this annotator; each must be an annotator-produced node."""
    extra_needs: ClassVar[tuple[str, ...]] = ()
    """Nodes read besides the produced nodes' declared `requires` (rarely needed)."""
    optional_needs: ClassVar[tuple[str, ...]] = ()
    """Needed nodes a sample may lack: decoded into `SampleInput.nodes` when present, absent otherwise
    (e.g. fill_edit's subject mask comes from grounded_mask or, failing that, foreground)."""
    model_id: ClassVar[str | None] = None
    revision: ClassVar[str | None] = None
    version: ClassVar[str] = "1"
    """Bump when the output changes for the same input: completed shards are then redone."""
    batch_size: ClassVar[int] = 16
    num_cpus: ClassVar[float] = 1.0
    num_gpus: ClassVar[float] = 0.0
    license: ClassVar[str] = ""
    """Licence of the weights (shown by `python -m annotators list`); empty when there is no model."""
    Settings: ClassVar[type] = NoSettings
    """A frozen dataclass of this annotator's settings; its defaults are the documented ones."""
    placement_settings: ClassVar[frozenset[str]] = frozenset({"model_dir", "device", "trust_remote_code", "offload"})
    """Settings that say where weights are or how they are placed in memory, not what is drawn:
    changing them keeps completed shards; changing any other setting redoes them."""

    def __init__(self, nodes: NodeRegistry = DEFAULT_NODES, settings: Mapping[str, Any] | None = None):
        self.nodes = nodes
        self.settings = make_settings(type(self), settings or {})

    def output_settings(self) -> dict[str, Any]:
        """The settings that shape the output (part of every shard's id, recorded in its stats and metadata),
        each under the name it was first recorded with: a renamed setting keeps its former name here
        (`num_inference_steps` is recorded as `steps`), so shards made before the rename keep their ids."""
        recorded = {current: former for former, current in former_names(self.Settings).items()}
        return {recorded.get(k, k): v for k, v in dataclasses.asdict(self.settings).items()
                if k not in self.placement_settings}

    # --- declaration helpers -------------------------------------------------------------
    @classmethod
    def reads(cls, nodes: NodeRegistry = DEFAULT_NODES) -> tuple[str, ...]:
        """Every node this annotator reads besides the target: the produced nodes' `requires` and `extra_needs`."""
        needed: list[str] = []
        for name in (*[r for p in cls.produces for r in nodes.get(p).requires], *cls.extra_needs, *cls.optional_needs):
            canonical = nodes.canonical(name)
            if canonical != "target" and canonical not in needed and canonical not in cls.produces:
                needed.append(canonical)
        return tuple(needed)

    @classmethod
    def needs(cls, nodes: NodeRegistry = DEFAULT_NODES) -> tuple[str, ...]:
        """The nodes a sample must carry to be annotated: `reads()` minus `optional_needs`."""
        optional = {nodes.canonical(n) for n in cls.optional_needs}
        return tuple(n for n in cls.reads(nodes) if n not in optional)

    @classmethod
    def produced_nodes(cls, nodes: NodeRegistry = DEFAULT_NODES) -> list[NodeType]:
        return [nodes.get(n) for n in cls.produces]

    @classmethod
    def describe(cls) -> dict:
        """The versions recorded in every shard's stats."""
        return {
            "annotator": cls.name,
            "version": cls.version,
            "model_id": cls.model_id,
            "revision": cls.revision,
            "produces": list(cls.produces),
        }

    @classmethod
    def check_declaration(cls, nodes: NodeRegistry = DEFAULT_NODES) -> None:
        """Raise ValueError naming the mistake if the class attributes are inconsistent."""
        if not getattr(cls, "name", None) or not getattr(cls, "produces", None):
            raise ValueError(f"{cls.__name__}: set `name` and `produces`")
        for node_name in cls.produces:
            node = nodes.get(node_name)
            if node.name != node_name:
                raise ValueError(f"{cls.__name__}: produces {node_name!r}; use the canonical name {node.name!r}")
            if node.storage is None or node.produced_by not in (Production.ANNOTATOR, Production.DERIVED):
                raise ValueError(
                    f"{cls.__name__}: node {node_name!r} is {node.produced_by_label()} and has no stored field to write"
                )
        if cls.batch_size < 1 or cls.num_cpus < 0 or not 0 <= cls.num_gpus:
            raise ValueError(f"{cls.__name__}: batch_size >= 1, num_cpus >= 0 and num_gpus >= 0 are required")

    # --- lifecycle ---------------------------------------------------------------------------
    @classmethod
    def is_available(cls) -> Availability:
        """Whether this annotator can run here (weights present, packages installed)."""
        return Availability.yes()

    def availability(self) -> Availability:
        """`is_available()` for this instance's settings (override when a setting holds the weights' location)."""
        return type(self).is_available()

    def load(self) -> None:
        """Load models; called once per worker before the first batch."""

    @abstractmethod
    def annotate(self, batch: Sequence[SampleInput]) -> list[Mapping[str, Any]]:
        """Per sample, node name -> image (array or PIL), list of images, or list of (image, pair).

        Raise to fail the batch: the runner then retries its samples one by one
        and records each one that still fails in the errors record. An
        exception instance in place of a sample's result fails that sample
        alone (recorded with its message), without redoing the batch."""


def encode_image(image: Any, ext: str, mode: str) -> bytes:
    """Encode an array or PIL image in the node's storage format (PNG or JPEG, mode L/RGB)."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ValueError(f"annotator output must be uint8, got {image.dtype}")
        image = Image.fromarray(image)
    if not isinstance(image, Image.Image):
        raise ValueError(f"annotator output must be a numpy array or PIL image, got {type(image).__name__}")
    if image.mode != mode:
        image = image.convert(mode)
    buf = io.BytesIO()
    if ext in ("jpg", "jpeg"):
        image.save(buf, format="JPEG", quality=95)
    elif ext == "png":
        image.save(buf, format="PNG", compress_level=1)
    elif ext == "webp":
        image.save(buf, format="WEBP", lossless=True)
    else:
        raise ValueError(f"unsupported storage extension {ext!r}")
    return buf.getvalue()


@dataclass
class WithExtras:
    """A node's image plus the auxiliary images its declaration lists in `details["extra_fields"]`
    (grounded_mask's `grounded_bbox.png`): each is written beside the node's field, as `<name>.<ext>`."""

    image: Any
    extras: dict[str, Any] = field(default_factory=dict)


def output_fields(node: NodeType, value: Any) -> dict[str, bytes]:
    """Shard fields (named by `NodeType.field_name`; extras as `<name>.<ext>`) for one node's output."""
    storage = node.storage
    assert storage is not None
    if isinstance(value, WithExtras):
        declared = {e.split(".")[0]: e.split(".", 1)[1] for e in node.details.get("extra_fields", ())
                    if not e.startswith("json:")}
        fields = output_fields(node, value.image)
        for name, image in value.extras.items():
            if name not in declared:
                raise ValueError(f"node {node.name!r} declares no extra field {name!r} "
                                 f"(declared: {', '.join(declared) or 'none'})")
            fields[field_name(name, None, declared[name])] = encode_image(image, declared[name], "RGB")
        return fields
    if node.max_instances == 1:
        return {node.field_name(): encode_image(value, storage.ext, storage.mode)}
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"node {node.name!r} has instances: return a list of images")
    if len(value) > node.max_instances:
        raise ValueError(f"node {node.name!r}: {len(value)} instances, at most {node.max_instances}")
    fields: dict[str, bytes] = {}
    for i, item in enumerate(value):
        if storage.pair_field:
            image, pair = item
            fields[node.field_name(i, pair=True)] = encode_image(pair, storage.ext, "RGB")
        else:
            image = item
        fields[node.field_name(i)] = encode_image(image, storage.ext, storage.mode)
    return fields


def hub_weights_available(model_id: str, revision: str | None = None, filenames: Sequence[str] = ()) -> Availability:
    """Availability of a Hugging Face Hub model: a local directory, or files in the local cache.

    Never touches the network. `filenames` lists the files that must be
    present (all of the snapshot if empty)."""
    if Path(model_id).is_dir():
        missing = [f for f in filenames if not (Path(model_id) / f).exists()]
        if missing:
            return Availability(False, f"{model_id} lacks {', '.join(missing)}", f"put {', '.join(missing)} in {model_id}")
        return Availability.yes()
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    enable = (
        f"hf download {model_id}" + (f" --revision {revision}" if revision else "")
        + (" " + " ".join(filenames) if filenames else "")
        + " (on a machine with network; or pass a local directory)"
    )
    try:
        path = snapshot_download(model_id, revision=revision, local_files_only=True,
                                 allow_patterns=list(filenames) or None)
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError) as err:
        return Availability(False, f"weights of {model_id} are not in the Hugging Face cache "
                                   f"({os.environ.get('HF_HOME', '~/.cache/huggingface')}): {type(err).__name__}", enable)
    missing = [f for f in filenames if not (Path(path) / f).exists()]
    if missing:
        return Availability(False, f"{model_id} cache lacks {', '.join(missing)}", enable)
    return Availability.yes()
