"""Controllability's instruments: re-annotate a generated image with the annotator that made the condition.

`reannotate("depth", generated)` runs `annotators/perception/depth.py` (the data's depth model)
on the generated image and returns the map to compare with the input depth map
(`map_rmse`); `"canny"` gives `canny_edges`; any other node with an annotator that
reads only the image (hed, mlsd, openpose, normal, semantic_map, sam2_mask,
foreground, grounded_mask with a caption) works the same, for "SSIM of the
re-extracted map". Nodes that cannot be re-extracted from one image give a
`Skipped` with the reason: no annotator (sources, online degradations), a
generated node (style and edit nodes are not measurements), an annotator that
needs other nodes, several instances per node, or weights that are not here
(with the command that fetches them). A `Reannotator` loads each annotator once.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np

from annotators.base import Annotator, SampleInput
from annotators.generative.catalog import GENERATIVE_ANNOTATORS
from annotators.registry import DEFAULT_ANNOTATORS, AnnotatorRegistry
from graph200k.nodes import Graph200kError, NodeType

from ..errors import InferenceError
from .pixels import ImageLike, as_array, as_rgb
from .skipped import Skipped


class Reannotator:
    """Annotators by node, each checked and loaded once, with the weights under `model_dir`."""

    def __init__(self, model_dir: str | None = None, registry: AnnotatorRegistry = DEFAULT_ANNOTATORS):
        self.model_dir = model_dir
        self.registry = registry
        self._loaded: dict[str, Annotator] = {}

    def _settings(self, cls: type[Annotator]) -> dict:
        fields = {f.name for f in dataclasses.fields(cls.Settings)}
        return {"model_dir": self.model_dir} if self.model_dir and "model_dir" in fields else {}

    def availability(self, node: str) -> Skipped | None:
        """None when `node` can be re-extracted from a single image here, else why not."""
        declared = self._node(node)
        cls = self.registry.for_node(node)
        what = f"reannotate {declared.name}"
        if cls is None:
            return Skipped(what, f"no annotator produces {declared.name!r} ({declared.produced_by_label()})",
                           "only annotator-made nodes can be re-extracted from a generated image")
        if cls in GENERATIVE_ANNOTATORS:
            return Skipped(what, f"{declared.name!r} is generated ({cls.name}), not measured from an image",
                           "compare such outputs with clip_i/dino instead")
        if cls.needs(self.registry.nodes):
            return Skipped(what, f"annotator {cls.name!r} also reads {', '.join(cls.needs(self.registry.nodes))}",
                           "re-extraction needs an annotator that reads the image alone")
        if declared.max_instances != 1:
            return Skipped(what, f"{declared.name!r} holds up to {declared.max_instances} instances per sample",
                           "compare instances one by one")
        found = cls(self.registry.nodes, self._settings(cls)).availability()
        if not found.ok:
            return Skipped(what, f"annotator {cls.name!r}: {found.reason}", found.how_to_enable)
        return None

    def _node(self, node: str) -> NodeType:
        try:
            return self.registry.nodes.get(node)
        except Graph200kError:
            raise InferenceError(f"reannotate: unknown node {node!r}; see `python -m graph200k nodes`") from None

    def annotator(self, node: str) -> Annotator | Skipped:
        """The loaded annotator of `node` (loaded on first use), or why it cannot run."""
        cls = self.registry.for_node(self._node(node).name)
        key = cls.name if cls is not None else node
        if key not in self._loaded:  # a Skipped is not kept: weights put in place later are found
            skipped = self.availability(node)
            if skipped is not None:
                return skipped
            annotator = cls(self.registry.nodes, self._settings(cls))
            annotator.load()
            self._loaded[key] = annotator
        return self._loaded[key]

    def map(self, node: str, image: ImageLike, caption: str | None = None) -> np.ndarray | Skipped:
        """`node` re-extracted from `image`: (H, W) or (H, W, 3) uint8 at the image's size, as the data stores it."""
        annotator = self.annotator(node)
        if isinstance(annotator, Skipped):
            return annotator
        canonical = self.registry.nodes.canonical(node)
        sample = SampleInput("generated", as_rgb(image, f"reannotate {canonical} image"),
                             meta={"caption": caption} if caption else {})
        [result] = annotator.annotate([sample])
        if isinstance(result, Exception):
            raise InferenceError(f"reannotate {canonical}: annotator {annotator.name!r} failed on the image: {result}")
        return as_array(result[canonical], f"reannotate {canonical} output")


@lru_cache(maxsize=4)
def _shared(model_dir: str | None) -> Reannotator:
    return Reannotator(model_dir)


def reannotate(node: str, image: ImageLike, model_dir: str | None = None,
               caption: str | None = None) -> np.ndarray | Skipped:
    """`Reannotator(model_dir).map(node, image)`, with the annotators kept loaded between calls."""
    return _shared(model_dir).map(node, image, caption)
