"""A `GridSpec` checked against its task and read: the images, the column names and the prompt.

Every check fails with one line naming the row, the cell and what to do: the rows must have
as many cells as the task has columns (in `task_columns` order, a style node bringing its
reference column), only the query row may have blanks and it needs at least one, and every
file must exist and decode.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from graph200k import TaskGraph

from .errors import InferenceError
from .prompts import GridPrompt, columns_of, prompt_for, prompt_from_text, resolve_task
from .spec import GridSpec


@dataclass
class GridInputs:
    """One grid ready to generate: rows of RGB images (None = generate), in column order."""

    images: list[list[Image.Image | None]]  # the example rows, then the query row
    files: list[list[str | None]]
    columns: list[str]  # node names for a task; IMAGE1.. for a task given as text
    task_id: str | None
    prompt: GridPrompt
    output_size: tuple[int, int]  # (w, h) the generated cells are written at: the query's first image

    @property
    def blank_columns(self) -> list[int]:
        return [j for j, image in enumerate(self.images[-1]) if image is None]


def _row_name(spec: GridSpec, r: int) -> str:
    where = "" if spec.source == "command line" else f"{spec.source}: "
    return f"{where}query row" if r == len(spec.examples) else f"{where}example row {r + 1}"


def read_image(path: Path, where: str) -> Image.Image:
    """The file as RGB, upright (EXIF orientation applied), or an InferenceError naming it."""
    if not path.is_file():
        raise InferenceError(f"{where}: file {str(path)!r} does not exist")
    try:
        with Image.open(path) as image:
            return ImageOps.exif_transpose(image).convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise InferenceError(f"{where}: {str(path)!r} is not an image PIL can read ({err})") from None


def load_grid(spec: GridSpec, graph: TaskGraph | None = None) -> GridInputs:
    """Check `spec`'s rows against its task and read its images (see the module docstring)."""
    rows = [*spec.examples, spec.query]
    task = resolve_task(spec.task, graph) if spec.task is not None else None
    if task is not None:
        columns = columns_of(task)
        expected = f"task {task.id} has {len(columns)} columns ({', '.join(columns)})"
    else:
        columns = [f"IMAGE{j}" for j in range(1, len(spec.query) + 1)]
        expected = f"the query row has {len(columns)}"
    for r, row in enumerate(rows):
        if len(row) != len(columns):
            raise InferenceError(f"{_row_name(spec, r)} has {len(row)} cell(s) but {expected}: list one image per "
                                 "column, in that order ('-' in the query for each cell to generate)")
    if all(cell is not None for cell in spec.query):
        raise InferenceError(f"{_row_name(spec, len(spec.examples))} has no blank cell: mark the cell(s) to generate "
                             "with '-' (null in a spec file)")
    if not spec.examples and all(cell is None for cell in spec.query):
        raise InferenceError(f"{_row_name(spec, 0)} is all blanks and there is no example row: give the query's "
                             "condition image(s) or at least one --example row")
    images = [[None if path is None else read_image(path, f"{_row_name(spec, r)} cell {j + 1}")
               for j, path in enumerate(row)] for r, row in enumerate(rows)]
    if task is not None:
        prompt = prompt_for(task, len(rows), spec.caption, spec.item)
    else:
        prompt = prompt_from_text(spec.prompt, len(rows), len(columns), spec.caption, spec.item)
    return GridInputs(images=images, files=[[None if p is None else str(p) for p in row] for row in rows],
                      columns=columns, task_id=task.id if task else None, prompt=prompt,
                      output_size=output_size(images))


def output_size(images: list[list[Image.Image | None]]) -> tuple[int, int]:
    """The size of the query row's first image; for a query without images, the nearest row above's
    (the row whose cell size the blanks borrow, as `sampler.inference.GridProcessor` does)."""
    for row in reversed(images):
        first = next((image for image in row if image is not None), None)
        if first is not None:
            return first.size
    raise InferenceError("the grid holds no image at all: give at least one condition image")
