"""`python -m graph200k show --dataset DS KEY ...`: one labelled contact sheet per sample of a packed dataset.

A sheet shows every node the sample carries as the sampler would use it:
the stored nodes (each instance of a multi-instance node, a style beside the
reference it was made from), the nodes the sampler derives at sampling time
(`foreground`, `background`: `sampler.render.DERIVATIONS` on the stored mask)
and a few of the 32 online degradations of the target, each labelled with its
severity and the parameter value it stands for; above, the key, shard and what
the sample can serve; below, the caption.

Why it lives in the sampler although `python -m graph200k` runs it: derived
nodes and degradations are sampler code, and `graph200k` is the bottom layer.
`graph200k.cli` imports this module inside its `show` command only, the one
place where `graph200k` reaches up (docs/ARCHITECTURE.md, "layers").
"""

from __future__ import annotations

import difflib
import json
import os
import textwrap
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError

from graph200k import DEFAULT_NODES, Graph200kError, NodeRegistry, Production, TaskGraph
from graph200k.dataset_dir import PACK_INDEX, DatasetDir
from graph200k.fonts import label_font
from graph200k.layout import METADATA_FIELD, stored_instances
from graph200k.quality import REFERENCE_RULE
from graph200k.shardio import atomic_file

from .cells import decode_for_cell, fit_array
from .degradations import degrade, lookup
from .degradations.levels import severity_text, strength
from .pool import BadSample, PoolSample, SampleFields, UnreadableSample, parse_sample
from .render import DERIVATIONS, MASK_THRESHOLD
from .shards import ShardError, ShardFiles, TarIndex, resolve_shards

DEFAULT_DEGRADATIONS = ("gaussian_blur", "jpeg", "rain", "inpainting")
COLUMNS = 6
SHOWN_KEYS = 5  # keys listed when a key is not found
IMAGE_EXTS = {"jpg", "jpeg", "png", "webp"}


@dataclass(frozen=True)
class ShowCell:
    """One cell of a sheet: what it shows (`label`), how it came about (`kind`: stored, derived,
    degradation, extra), the shard field it shows or is made from, and a line about it."""

    label: str
    kind: str
    field: str | None
    note: str = ""


# -- finding samples -----------------------------------------------------------------------------

def packed_folder(dataset: str | os.PathLike) -> Path:
    """The packed shards of `dataset`: `DS/shards` (what `graph200k shards --dataset DS` writes), or DS
    itself when it is such a folder."""
    root = Path(dataset)
    if not root.is_dir():
        raise Graph200kError(f"--dataset {root}: no such folder; give a dataset folder packed with "
                             f"`python -m graph200k shards --dataset {root}`")
    packed = DatasetDir(root).packed
    if packed.is_dir():
        return packed
    if any(root.glob("*.tar")):
        return root
    raise Graph200kError(f"--dataset {root}: no packed shards ({packed}/*.tar); pack them with "
                         f"`python -m graph200k shards --dataset {root}`")


def _shard_of_keys(folder: Path, paths: list[str]) -> dict[str, str]:
    """key -> tar path, from the pack's index when there is one (no tar is read), else from the tars' headers."""
    index = folder / PACK_INDEX
    by_name = {os.path.basename(p): p for p in paths}
    if index.is_file():
        found = {}
        with open(index, encoding="utf-8") as f:
            for line in f:
                entry = json.loads(line)
                if entry.get("shard") in by_name:
                    found[entry["key"]] = by_name[entry["shard"]]
        return found
    return {entry.name: path for path in paths for entry in TarIndex(path).samples}


def _unknown_key(key: str, folder: Path, known: Sequence[str]) -> Graph200kError:
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    shown = ", ".join(sorted(known)[:SHOWN_KEYS]) + (", ..." if len(known) > SHOWN_KEYS else "")
    listing = f" (all in {folder / PACK_INDEX})" if (folder / PACK_INDEX).is_file() else ""
    return Graph200kError(f"sample key {key!r} is not in {folder} ({len(known)} samples); {hint}"
                          f"keys there: {shown}{listing}")


def find_samples(dataset: str | os.PathLike, keys: Sequence[str],
                 nodes: NodeRegistry = DEFAULT_NODES) -> tuple[list[tuple[PoolSample, str]], ShardFiles]:
    """(sample, tar path) for each key, in order, and the reader their fields are read through (close it)."""
    folder = packed_folder(dataset)
    try:
        paths = resolve_shards(str(folder))
        where = _shard_of_keys(folder, paths)
        missing = [k for k in keys if k not in where]
        if missing:
            raise _unknown_key(missing[0], folder, list(where))
        indexes = {p: TarIndex(p) for p in sorted({where[k] for k in keys})}
    except ShardError as exc:
        raise Graph200kError(str(exc)) from None
    files = ShardFiles(indexes)
    found = []
    for key in keys:
        path = where[key]
        entry = next((e for e in indexes[path].samples if e.name == key), None)
        if entry is None:
            raise Graph200kError(f"sample {key!r}: {folder / PACK_INDEX} puts it in {path}, which does not hold it; "
                                 f"repack with `python -m graph200k shards`")
        try:
            found.append((parse_sample(key, SampleFields(key, path, entry, files), nodes), path))
        except BadSample as exc:
            raise Graph200kError(f"{path}: {exc}") from None
    return found, files


# -- what a sheet shows --------------------------------------------------------------------------

def sheet_cells(sample: PoolSample, nodes: NodeRegistry = DEFAULT_NODES,
                degradations: Sequence[str] = DEFAULT_DEGRADATIONS) -> list[ShowCell]:
    """The cells of `sample`'s sheet, in catalog order: every stored instance, every derived node the
    sampler can make of it, any other image field, then `degradations` of the target."""
    cells: list[ShowCell] = []
    used: set[str] = set()
    for node in nodes.topological_order():
        if node.produced_by is Production.ONLINE:
            continue
        instances = stored_instances(node, sample.fields)
        for inst in instances:
            tag = f"[{inst.index}]" if node.max_instances > 1 else ""
            if node.produced_by is Production.DERIVED:
                made = [n.name for n in nodes if n.produced_by is Production.DERIVED
                        and (n.name == node.name or node.name in n.requires)]
                label, note = node.storage.field, f"{inst.field}: stored; {' and '.join(made)} are made of it"
            elif node.name == "reference" and node.name not in sample.nodes:
                label, note = node.name, f"{inst.field}: stored, NOT used ({REFERENCE_RULE})"
            else:
                label, note = f"{node.name}{tag}", f"{inst.field}: stored"
            if inst.pair:
                cells.append(ShowCell(f"{node.storage.pair_field}{tag}", "stored", inst.pair,
                                      f"{inst.pair}: the style reference of {node.name}{tag}"))
                used.add(inst.pair)
            cells.append(ShowCell(label, "stored", inst.field, note))
            used.add(inst.field)
        if node.produced_by is Production.DERIVED and node.name in sample.nodes:
            source = node if node.storage is not None else _stored_ancestor(node, nodes)
            mask = stored_instances(source, sample.fields)[0].field
            how = "target x mask" if node.name == "foreground" else "target x (1 - mask)"
            cells.append(ShowCell(node.name, "derived", mask, f"derived when sampling: {how} ({mask})"))
    for field in sorted(sample.fields):
        if field not in used and field != METADATA_FIELD and field.rsplit(".", 1)[-1].lower() in IMAGE_EXTS:
            owner = next((n.name for n in nodes if field in n.details.get("extra_fields", ())), None)
            note = f"{field}: stored beside {owner}" if owner else f"{field}: a field no node declares"
            cells.append(ShowCell(field.split(".")[0], "extra", field, note))
    for name in degradations:
        cells.append(ShowCell(lookup(name).name, "degradation", sample.target, "online, of the target"))
    return cells


def _stored_ancestor(node, nodes: NodeRegistry):
    for req in node.requires:
        parent = nodes.get(req)
        if parent.storage is not None and parent.group is node.group:
            return parent
    raise Graph200kError(f"derived node {node.name!r} requires no stored node of its group to derive from")


# -- pixels --------------------------------------------------------------------------------------

def _contain(array: np.ndarray, width: int, height: int) -> Image.Image:
    """The whole image scaled into a width x height box (letterboxed), so no cell crops a picture."""
    image = Image.fromarray(array).convert("RGB")
    scale = min(width / image.width, height / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    box = Image.new("RGB", (width, height), (40, 40, 40))
    box.paste(image.resize(size, Image.LANCZOS), ((width - size[0]) // 2, (height - size[1]) // 2))
    return box


def _decode(sample: PoolSample, field: str, width: int, height: int, mode: str = "RGB") -> np.ndarray:
    return decode_for_cell(sample.fields[field], width, height, mode)


def _cell_pixels(sample: PoolSample, cell: ShowCell, width: int, height: int,
                 rng: np.random.Generator) -> tuple[Image.Image, ShowCell]:
    """The cell's picture, and the cell with its note completed (a degradation's severity and parameter)."""
    if cell.kind in ("stored", "extra"):
        return _contain(_decode(sample, cell.field, width, height), width, height), cell
    target = fit_array(_decode(sample, sample.target, width, height), width, height)
    if cell.kind == "derived":
        mask = fit_array(_decode(sample, cell.field, width, height, "L"), width, height)
        derived = DERIVATIONS[cell.label](target, (mask >= MASK_THRESHOLD).astype(np.uint8))
        return _contain(derived, width, height), cell
    out, params = degrade(target, cell.label, rng)
    return _contain(out, width, height), replace(cell, note=f"{severity_text(params)}: {strength(params)}")


def render_sheet(sample: PoolSample, cells: Sequence[ShowCell], *, shard: str = "", cell: int = 256,
                 seed: int = 0, nodes: NodeRegistry = DEFAULT_NODES) -> Image.Image:
    """The sheet of `sample`: a header (key, shard, what it serves), the cells with two label lines, the caption."""
    tw, th = sample.target_size
    height = cell
    width = max(cell // 2, min(2 * cell, round(cell * tw / max(1, th))))
    rng = np.random.default_rng([seed, zlib.crc32(sample.key.encode())])
    title_font, note_font, text_font = label_font(15), label_font(12), label_font(14)
    note_chars = max(16, int(width / (note_font.getlength("x") or 6)))
    pictures = []
    for c in cells:
        try:
            picture, c = _cell_pixels(sample, c, width, height, rng)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, UnreadableSample) as exc:
            picture = Image.new("RGB", (width, height), (200, 200, 200))
            c = replace(c, note=f"{c.field}: does not decode ({type(exc).__name__})")
        pictures.append((picture, c, textwrap.wrap(c.note, note_chars)[:3]))
    columns = min(COLUMNS, len(pictures))
    pad, label_h = 6, 20 + 3 * 15
    sheet_w = max(columns * (width + pad) + pad, 640)
    graph = TaskGraph(nodes=nodes)
    served = [t for t in graph.tasks() if set(t.nodes) <= sample.nodes]
    by_production = {p: sum(nodes.get(n).produced_by is p for n in sample.nodes) for p in Production}
    header = [f"sample {sample.key}" + (f"   shard {shard}" if shard else "") + (f"   item: {sample.item}"
                                                                                 if sample.item else ""),
              f"carries {len(sample.nodes)} node types: "
              f"{by_production[Production.SOURCE] + by_production[Production.ANNOTATOR]} stored, "
              f"{by_production[Production.DERIVED]} derived when sampling, {by_production[Production.ONLINE]} "
              f"degradations made online ({sum(c.kind == 'degradation' for c in cells)} shown, seed {seed}; all of "
              f"them: python -m sampler degradations); serves {len(served)} of {len(graph.tasks())} training tasks.",
              "label colours: black = stored in the shard, blue = derived by the sampler, orange = degradation of "
              "the target, grey = other field"]
    text_chars = max(40, int((sheet_w - 2 * pad) / (text_font.getlength("x") or 7)))
    header = [part for line in header for part in textwrap.wrap(line, text_chars)]
    caption = textwrap.wrap("caption: " + (sample.caption or "(none)"), text_chars)
    line_h = 18
    rows = -(-len(pictures) // columns)
    top = pad + len(header) * line_h + pad
    grid_h = rows * (height + label_h + pad)
    sheet = Image.new("RGB", (sheet_w, top + grid_h + len(caption) * line_h + 2 * pad), "white")
    draw = ImageDraw.Draw(sheet)
    for j, line in enumerate(header):
        draw.text((pad, pad + j * line_h), line, fill="black", font=text_font)
    colours = {"stored": (0, 0, 0), "derived": (0, 90, 160), "extra": (90, 90, 90), "degradation": (150, 60, 0)}
    for i, (picture, c, note) in enumerate(pictures):
        x = pad + (i % columns) * (width + pad)
        y = top + (i // columns) * (height + label_h + pad)
        sheet.paste(picture, (x, y))
        draw.text((x + 2, y + height + 3), c.label, fill=colours[c.kind], font=title_font)
        for j, line in enumerate(note):
            draw.text((x + 2, y + height + 21 + j * 15), line, fill=(80, 80, 80), font=note_font)
    y = top + grid_h + pad
    for j, line in enumerate(caption):
        draw.text((pad, y + j * line_h), line, fill="black", font=text_font)
    return sheet


# -- files ---------------------------------------------------------------------------------------

def output_paths(keys: Sequence[str], out: str | os.PathLike | None) -> list[Path]:
    """Where each key's sheet goes: `show-<key>.png` in the current folder by default; `--out FILE.png` for
    one key; `--out DIR` (any other name) holds `<key>.png` per key."""
    if out is None:
        return [Path.cwd() / f"show-{key}.png" for key in keys]
    out = Path(out)
    if out.suffix.lower() == ".png" and not out.is_dir():
        if len(keys) > 1:
            raise Graph200kError(f"--out {out} names one file but {len(keys)} keys were given; give a folder "
                                 f"(one <key>.png each) or one key")
        return [out]
    return [out / f"{key}.png" for key in keys]


def write_show(dataset: str | os.PathLike, keys: Sequence[str], out: str | os.PathLike | None = None, *,
               seed: int = 0, cell: int = 256,
               degradations: Sequence[str] = DEFAULT_DEGRADATIONS) -> list[tuple[Path, list[ShowCell]]]:
    """Write one sheet per key (see `output_paths`); returns each path with the cells it shows."""
    if not keys:
        raise Graph200kError("give at least one sample key")
    if cell < 64:
        raise Graph200kError(f"--cell {cell}: use at least 64 px")
    for name in degradations:
        try:
            lookup(name)
        except ValueError as exc:
            raise Graph200kError(f"--degradations: {exc}") from None
    keys = list(dict.fromkeys(keys))
    paths = output_paths(keys, out)
    found, files = find_samples(dataset, keys)
    written = []
    try:
        for (sample, shard), path in zip(found, paths):
            cells = sheet_cells(sample, degradations=degradations)
            with atomic_file(path) as f:
                render_sheet(sample, cells, shard=os.path.basename(shard), cell=cell, seed=seed).save(f, format="PNG")
            written.append((path, cells))
    finally:
        files.close()
    return written
