"""Scoring the generated items by family: the paper's protocol (Tables 1-3) as one recipe table.

Each task family maps to a `Recipe`: the report.md table its rows go to, the family's own
measurements (`CHECKS`) and whether the generic quality block applies. The measurements:

- control (conditional generation, with reference or style): the OUTPUT re-annotated with
  the condition's annotator; canny -> `canny_f1`, depth -> `depth_rmse`, any other node with an
  annotator -> `control_ssim` (SSIM of the re-extracted map vs the condition);
- restore (restoration, with reference): `rmse`, `psnr` (and `ssim`) vs the clean target;
- map (dense prediction): `rmse`, `ssim` vs the stored map;
- subject (generation and editing with a reference): `dino`, `clip_i` vs the reference, `clip_t`;
- style (style transfer, with condition): `clip_t`, `clip_i` vs the style reference;
- edit (image editing, with reference): `clip_t`; `psnr` outside the edited region (its mask
  from the sample's edit metadata, `inference.edit_region`);
- extraction (subject extraction): `dino`, `clip_i` vs the ground-truth reference;
- quality (every generative family): `ssim` vs the ground truth, `maniqa`, `musiq`, `clip_t`;
  `fid` and `kid` per (variant, task, context) over its items, real = their ground truths.

`clip_t` scores the generated image against the text that describes it: the query's
content prompt (subject and caption) when the output is the photo or a stylised photo; a map
or a subject reference has no such text. Per-item scores are computed from the files on disk
(`inference.item_store`) and written beside them (`scores.json`); `aggregate` averages them per
(variant, task, context) and adds the distribution metrics. A metric that cannot run is
recorded with its reason (`skipped`), never left out silently.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from graph200k import DEFAULT_NODES, Group

from .errors import InferenceError
from .item_store import EDIT_MASK, GENERATED, GROUND_TRUTH, SCORES, load_image, load_record

TABLE1 = "Table 1: conditional generation and restoration"
TABLE2 = "Table 2: subject-driven generation"
TABLE3 = "Table 3: style transfer"
EDITING = "Image editing"
DENSE = "Dense prediction"
EXTRACTION = "Subject extraction"
TABLES = (TABLE1, TABLE2, TABLE3, EDITING, DENSE, EXTRACTION)


@dataclass(frozen=True)
class Recipe:
    table: str
    checks: tuple[str, ...]
    quality: bool = True


RECIPES: dict[str, Recipe] = {
    "conditional generation": Recipe(TABLE1, ("control",)),
    "conditional generation with reference": Recipe(TABLE2, ("control", "subject")),
    "conditional generation with style": Recipe(TABLE3, ("style", "control")),
    "image generation with reference": Recipe(TABLE2, ("subject",)),
    "subject extraction": Recipe(EXTRACTION, ("extraction",)),
    "style transfer": Recipe(TABLE3, ("style",)),
    "style transfer with condition": Recipe(TABLE3, ("style", "control")),
    "image editing": Recipe(EDITING, ("edit",)),
    "image editing with reference": Recipe(EDITING, ("edit", "subject")),
    "dense prediction": Recipe(DENSE, ("map",), quality=False),
    "restoration": Recipe(TABLE1, ("restore",)),
    "restoration with reference": Recipe(TABLE1, ("restore",)),
}

METRIC_ORDER = ("canny_f1", "depth_rmse", "control_ssim", "rmse", "psnr", "ssim", "dino", "clip_i", "clip_t",
                "fid", "kid", "maniqa", "musiq")
"""Column order in report.md. `control_ssim` is the one name beyond the paper's; all are declared in inference.metrics.names."""

DISTRIBUTION = ("fid", "kid")


def recipe_for(family: str) -> Recipe:
    if family not in RECIPES:
        raise InferenceError(f"family {family!r} has no scoring recipe; add it to inference.scoring.RECIPES")
    return RECIPES[family]


# ---------------------------------------------------------------- one item


@dataclass
class ItemFiles:
    """A generated item read back from its folder: the record and its images, loaded once each."""

    folder: Path
    record: dict
    _images: dict = field(default_factory=dict)

    @classmethod
    def read(cls, folder: Path) -> "ItemFiles":
        return cls(Path(folder), load_record(folder))

    def image(self, name: str) -> Image.Image:
        if name not in self._images:
            self._images[name] = load_image(self.folder, name)
        return self._images[name]

    @property
    def generated(self) -> Image.Image:
        return self.image(GENERATED)

    @property
    def ground_truth(self) -> Image.Image:
        return self.image(GROUND_TRUTH)

    def query_cell(self, column: str) -> Image.Image:
        """The query row's cell of `column` (a condition, the reference, a style reference)."""
        columns = self.record["columns"]
        if column not in columns[:-1]:
            raise InferenceError(f"item {self.folder}: no {column!r} column among {columns}")
        return self.image(self.record["files"]["rows"][-1][columns.index(column)])

    def edit_mask(self) -> np.ndarray | None:
        if not self.record["files"].get("edit_mask"):
            return None
        with Image.open(self.folder / EDIT_MASK) as mask:
            return np.asarray(mask.convert("L")) > 127

    def text(self) -> tuple[str | None, str]:
        """(the text describing the output, "") or (None, why there is none); see the module docstring."""
        from sampler.instruction import content_prompt

        target = DEFAULT_NODES.get(self.record["nodes"][-1])
        if target.name != "target" and target.group is not Group.STYLE:
            return None, f"no text describes a {target.name} output"
        text = content_prompt(self.record.get("caption") or "", self.record.get("item") or "")
        return (text, "") if text else (None, "the query sample has no caption")


class Scores:
    """One item's metric values and the reasons of those it could not compute."""

    def __init__(self):
        self.metrics: dict[str, float] = {}
        self.skipped: dict[str, str] = {}

    def skip(self, names: Iterable[str], reason: str) -> None:
        for name in names:
            self.skipped.setdefault(name, reason)

    def to_json(self) -> dict:
        return {"metrics": self.metrics, "skipped": self.skipped}


def _rgb(image) -> np.ndarray:
    from .metrics.pixels import as_rgb

    return as_rgb(image if isinstance(image, np.ndarray) else np.asarray(image.convert("RGB")))


def check_control(item: ItemFiles, suite, out: Scores) -> None:
    """Re-annotate the GENERATED image with each condition's annotator and compare with the condition."""
    from .metrics.edges import canny_f1
    from .metrics.pixel_metrics import map_rmse, ssim
    from .metrics.skipped import Skipped

    conditions = [n for n in item.record["nodes"][:-1] if DEFAULT_NODES.get(n).group is Group.CONDITION]
    for node in conditions:
        condition = item.query_cell(node)
        if node == "canny":
            out.metrics["canny_f1"] = canny_f1(condition, item.generated)
            continue
        name = "depth_rmse" if node == "depth" else "control_ssim"
        if name == "depth_rmse" and "depth_rmse" in suite.skipped:
            out.skip([name], suite.skipped["depth_rmse"])
            continue
        extracted = suite.reannotator.map(node, item.generated, item.record.get("caption") or None)
        if isinstance(extracted, Skipped):
            out.skip([name], extracted.message)
        elif name == "depth_rmse":
            out.metrics[name] = map_rmse(extracted, condition)
        else:
            out.metrics[name] = ssim(_rgb(extracted), _rgb(condition))


def check_restore(item: ItemFiles, suite, out: Scores) -> None:
    from .metrics.pixel_metrics import psnr, rmse

    out.metrics["rmse"] = rmse(_rgb(item.generated), _rgb(item.ground_truth))
    out.metrics["psnr"] = psnr(_rgb(item.generated), _rgb(item.ground_truth))


def check_map(item: ItemFiles, suite, out: Scores) -> None:
    from .metrics.pixel_metrics import rmse, ssim

    out.metrics["rmse"] = rmse(_rgb(item.generated), _rgb(item.ground_truth))
    out.metrics["ssim"] = ssim(_rgb(item.generated), _rgb(item.ground_truth))


def _similarity(item: ItemFiles, suite, out: Scores, other: Image.Image, names: Sequence[str]) -> None:
    """`dino` / `clip_i` of the generated image against `other`."""
    for name in names:
        scorer = suite.dino if name == "dino" else suite.clip
        if scorer is None:
            out.skip([name], suite.skipped.get(name, f"{name}: no model loaded"))
        else:
            out.metrics[name] = scorer.image([item.generated], [other])[0]


def check_clip_t(item: ItemFiles, suite, out: Scores) -> None:
    text, why = item.text()
    if text is None:
        out.skip(["clip_t"], why)
    elif suite.clip is None:
        out.skip(["clip_t"], suite.skipped.get("clip_t", "clip_t: no CLIP loaded"))
    else:
        out.metrics["clip_t"] = suite.clip.text([item.generated], [text])[0]


def check_subject(item: ItemFiles, suite, out: Scores) -> None:
    _similarity(item, suite, out, item.query_cell("reference"), ("dino", "clip_i"))
    check_clip_t(item, suite, out)


def check_style(item: ItemFiles, suite, out: Scores) -> None:
    from sampler.instruction import PAIR_SUFFIX

    _similarity(item, suite, out, item.query_cell(item.record["nodes"][-1] + PAIR_SUFFIX), ("clip_i",))
    check_clip_t(item, suite, out)


def check_edit(item: ItemFiles, suite, out: Scores) -> None:
    from .metrics.pixel_metrics import psnr

    check_clip_t(item, suite, out)
    mask = item.edit_mask()
    if mask is None:
        out.skip(["psnr"], item.record.get("edit_mask_missing") or "the item has no edit mask")
    elif mask.all():
        out.skip(["psnr"], "the edited region covers the whole image")
    else:
        keep = ~mask
        out.metrics["psnr"] = psnr(_rgb(item.generated)[keep][None], _rgb(item.ground_truth)[keep][None])


def check_extraction(item: ItemFiles, suite, out: Scores) -> None:
    _similarity(item, suite, out, item.ground_truth, ("dino", "clip_i"))


def check_quality(item: ItemFiles, suite, out: Scores) -> None:
    from .metrics.pixel_metrics import ssim

    out.metrics["ssim"] = ssim(_rgb(item.generated), _rgb(item.ground_truth))
    for name in ("maniqa", "musiq"):
        scorer = suite.iqa.get(name)
        if scorer is None:
            out.skip([name], suite.skipped.get(name, f"{name}: not loaded"))
        else:
            out.metrics[name] = scorer.score([item.generated])[0]
    if "clip_t" not in out.metrics:
        check_clip_t(item, suite, out)


CHECKS = {"control": check_control, "restore": check_restore, "map": check_map, "subject": check_subject,
          "style": check_style, "edit": check_edit, "extraction": check_extraction}


def score_item(item: ItemFiles, suite) -> Scores:
    """The family's measurements and, for generative families, the per-item quality metrics."""
    recipe = recipe_for(item.record["family"])
    out = Scores()
    for check in recipe.checks:
        CHECKS[check](item, suite, out)
    if recipe.quality:
        check_quality(item, suite, out)
    for name in list(out.skipped):
        if name in out.metrics:
            del out.skipped[name]
    return out


def score_folders(folders: Sequence[Path], suite, *, progress=None) -> int:
    """Score each item folder and write its `scores.json`; returns how many were scored."""
    from graph200k.shardio import write_json

    for folder in (progress(folders) if progress else folders):
        write_json(Path(folder) / SCORES, score_item(ItemFiles.read(folder), suite).to_json())
    return len(folders)


# ---------------------------------------------------------------- a row of the report


def mean_of(values: list[float]) -> tuple[float | None, int]:
    """The mean of the finite values, and how many were not finite (PSNR of identical images is inf)."""
    finite = [v for v in values if math.isfinite(v)]
    return (float(np.mean(finite)) if finite else None), len(values) - len(finite)


def aggregate(folders: Sequence[Path], suite) -> tuple[dict, dict, dict, dict]:
    """(metrics, skipped, extra, notes) of one (variant, task, context) from its scored items: per-item
    metrics averaged, fid/kid computed over the items (generated vs ground truths)."""
    per_item = [json.loads((Path(f) / SCORES).read_text()) for f in folders]
    metrics, skipped, extra, notes = {}, {}, {}, {}
    names = list(dict.fromkeys(n for s in per_item for n in s["metrics"]))
    for name in names:
        value, infinite = mean_of([s["metrics"][name] for s in per_item if name in s["metrics"]])
        missing = sum(name not in s["metrics"] for s in per_item)
        if value is not None:
            metrics[name] = value
        if infinite:
            notes[name] = f"{infinite} of {len(per_item)} items are identical to the reference (inf), left out"
        if missing:
            notes[name] = f"computed on {len(per_item) - missing} of {len(per_item)} items"
    for s in per_item:
        for name, reason in s["skipped"].items():
            if name not in metrics:
                skipped.setdefault(name, reason)
    family = load_record(folders[0])["family"]
    if recipe_for(family).quality:
        _distribution(folders, suite, metrics, skipped, extra)
    return metrics, skipped, extra, notes


def _distribution(folders: Sequence[Path], suite, metrics: dict, skipped: dict, extra: dict) -> None:
    if suite.fid_features is None:
        for name in DISTRIBUTION:
            skipped[name] = suite.skipped.get(name, "no feature extractor loaded")
        return
    if len(folders) < 2:
        for name in DISTRIBUTION:
            skipped[name] = f"needs at least 2 items, this row has {len(folders)}; raise --per-task"
        return
    score = suite.distribution()
    for folder in folders:
        score.update(load_image(folder, GROUND_TRUTH), load_image(folder, GENERATED))
    values = score.compute()
    metrics["fid"], metrics["kid"] = values["fid"], values["kid"]
    extra["kid_std"] = values["kid_std"]
    extra["fid_features"] = score.describe()["features"]
