"""One generated item on disk: written whole or not at all, read back by any process.

`<out>/items/<variant>/<task slug>/<context>/<index>/` holds

    item.json          what the item is (see `ITEM_FIELDS` / docs/ARCHITECTURE.md)
    generated.png      the model's fill of the query's target cell
    ground_truth.png   the query's own target cell
    row<R>-<C>.png     every other cell the model was shown (R: example rows, then the query row)
    edit_mask.png      for editing tasks, the edited region when the sample records it

The folder is written under a hidden temporary name and renamed into place, so a folder that
exists is complete: that is what makes a rerun skip it (resume). Scores are not stored here;
each run recomputes them from these files (scores.json is written by the scorer).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

ITEM_JSON = "item.json"
GENERATED = "generated.png"
GROUND_TRUTH = "ground_truth.png"
EDIT_MASK = "edit_mask.png"
SCORES = "scores.json"
TMP_PREFIX = ".tmp-"


def is_done(folder: Path) -> bool:
    return (folder / ITEM_JSON).is_file()


def cell_name(row: int, column: int) -> str:
    return f"row{row}-{column}.png"


def save_item(folder: Path, record: dict, rows: list[list[Image.Image]], generated: Image.Image,
              edit_mask: np.ndarray | None = None) -> Path:
    """Write an item atomically: every file into a temporary sibling folder, then one rename.

    `rows` are the cells shown (the query row last, its last cell the ground truth)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f"{TMP_PREFIX}{folder.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        files = []
        for r, row in enumerate(rows):
            names = []
            for c, cell in enumerate(row):
                last = r == len(rows) - 1 and c == len(row) - 1
                name = GROUND_TRUTH if last else cell_name(r, c)
                cell.save(tmp / name)
                names.append(name)
            files.append(names)
        generated.save(tmp / GENERATED)
        if edit_mask is not None:
            Image.fromarray(edit_mask.astype(np.uint8) * 255).save(tmp / EDIT_MASK)
        record = {**record, "files": {"rows": files, "generated": GENERATED, "ground_truth": GROUND_TRUTH,
                                      "edit_mask": EDIT_MASK if edit_mask is not None else None}}
        (tmp / ITEM_JSON).write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
        try:
            os.rename(tmp, folder)
        except OSError:
            if not is_done(folder):  # not a finished twin written meanwhile: a real failure
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def load_record(folder: Path) -> dict:
    return json.loads((Path(folder) / ITEM_JSON).read_text())


def load_image(folder: Path, name: str) -> Image.Image:
    with Image.open(Path(folder) / name) as image:
        return image.convert("RGB")


def remove_partials(root: Path) -> int:
    """Delete temporary folders a stopped run left under `root`; returns how many. Run it while no
    process writes items (rank 0, before the others start)."""
    root = Path(root)
    if not root.is_dir():
        return 0
    stale = [p for p in root.rglob(f"{TMP_PREFIX}*") if p.is_dir()]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return len(stale)
