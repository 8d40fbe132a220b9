"""What to generate, as written by the user: from the command line or a YAML/JSON spec file.

A grid is in-context example rows plus one query row; each row lists image files in the
task's column order and the query marks the cells to generate as blank (`-` on the command
line; `null`, `-` or `""` in a file). A spec file holds one grid or a list of them:

    task: canny->target          # or  prompt: "<task text>"
    caption: A red bicycle against a brick wall.
    item: bicycle                # optional subject name, put before the caption
    examples:
      - [examples/1.canny.png, examples/1.jpg]
    query: [query.canny.png, null]

Relative paths in a file are read from the file's folder. Checking the rows against the task
and decoding the images happens in inference/inputs.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import InferenceError

BLANKS = (None, "", "-")
SPEC_KEYS = ("task", "prompt", "caption", "item", "examples", "query")


@dataclass(frozen=True)
class GridSpec:
    """One grid to generate: rows of file paths (None = a cell to generate) and what names the task."""

    examples: list[list[Path]]
    query: list[Path | None]
    task: str | None = None
    prompt: str | None = None
    caption: str = ""
    item: str = ""
    source: str = "command line"  # where it was written, for error messages

    def __post_init__(self):
        if (self.task is None) == (self.prompt is None):
            raise InferenceError(f"{self.source}: give a task id (--task / task:) or a task text "
                                 "(--prompt / prompt:), exactly one of them")


def parse_row(text: str, where: str) -> list[Path | None]:
    """`a.png,b.png,-` -> [Path('a.png'), Path('b.png'), None]."""
    cells = [c.strip() for c in text.split(",")]
    if not any(cells):
        raise InferenceError(f"{where} {text!r}: list the row's image files, comma-separated (a.png,b.png)")
    return [None if c in BLANKS else Path(c) for c in cells]


def spec_from_args(*, examples: list[str], query: str | None, task: str | None, prompt: str | None,
                   caption: str = "", item: str = "") -> GridSpec:
    """The grid `--example ... --query ... --task/--prompt` describes."""
    if query is None:
        raise InferenceError("--query is missing: give the query row, '-' for each cell to generate "
                             "(e.g. --query query.canny.png,-), or --spec FILE")
    rows = [parse_row(text, f"--example #{i}") for i, text in enumerate(examples, start=1)]
    for i, row in enumerate(rows, start=1):
        if any(c is None for c in row):
            raise InferenceError(f"--example #{i} {examples[i - 1]!r} has a blank cell: only the query row "
                                 "may have blanks ('-')")
    return GridSpec(examples=rows, query=parse_row(query, "--query"), task=task, prompt=prompt,
                    caption=caption or "", item=item or "")


def _file_row(value, where: str, base: Path, blanks_allowed: bool) -> list[Path | None]:
    if isinstance(value, str):
        value = [c.strip() for c in value.split(",")]
    if not isinstance(value, list) or not value:
        raise InferenceError(f"{where}: expected a list of image paths, got {value!r}")
    row = []
    for j, cell in enumerate(value, start=1):
        if cell in BLANKS:
            if not blanks_allowed:
                raise InferenceError(f"{where} cell {j} is blank: only the query row may have blanks")
            row.append(None)
        elif isinstance(cell, str):
            row.append(base / cell)
        else:
            raise InferenceError(f"{where} cell {j}: expected an image path or null, got {cell!r}")
    return row


def _grid_from_mapping(entry, where: str, base: Path) -> GridSpec:
    if not isinstance(entry, dict):
        raise InferenceError(f"{where}: expected a mapping with task|prompt, caption, examples, query; got "
                             f"{type(entry).__name__}")
    unknown = sorted(set(entry) - set(SPEC_KEYS))
    if unknown:
        raise InferenceError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}; known: {', '.join(SPEC_KEYS)}")
    if "query" not in entry:
        raise InferenceError(f"{where}: 'query' is missing (the row to complete, null for each cell to generate)")
    examples = entry.get("examples") or []
    if not isinstance(examples, list):
        raise InferenceError(f"{where}: 'examples' must be a list of rows, got {examples!r}")
    rows = [_file_row(r, f"{where} examples[{i}]", base, blanks_allowed=False) for i, r in enumerate(examples)]
    text = {k: entry.get(k) for k in ("task", "prompt", "caption", "item")}
    for key, value in text.items():
        if value is not None and not isinstance(value, str):
            raise InferenceError(f"{where}: '{key}' must be text, got {value!r}")
    return GridSpec(examples=rows, query=_file_row(entry["query"], f"{where} query", base, blanks_allowed=True),
                    task=text["task"], prompt=text["prompt"], caption=text["caption"] or "",
                    item=text["item"] or "", source=where)


def specs_from_file(path: str | Path) -> list[GridSpec]:
    """The grids a YAML/JSON spec file describes (one mapping, or a list of them)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InferenceError(f"--spec {str(path)!r}: no such file")
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        reason = " ".join(str(err).split())
        raise InferenceError(f"--spec {str(path)!r}: not valid {'JSON' if path.suffix == '.json' else 'YAML'} "
                             f"({reason})") from None
    entries = data if isinstance(data, list) else [data]
    if not entries:
        raise InferenceError(f"--spec {str(path)!r} lists no grid")
    base = path.resolve().parent
    return [_grid_from_mapping(e, f"{path}" + (f" grid #{i}" if isinstance(data, list) else ""), base)
            for i, e in enumerate(entries, start=1)]
