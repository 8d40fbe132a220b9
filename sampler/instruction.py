"""The instruction text of a grid: layout, task and content, in our own wording.

- layout: how many rows and columns, and how many images (one of the templates);
- task: `[IMAGE1] phrase, [IMAGE2] phrase -> [IMAGEk] phrase`, one phrase per
  column after shuffling, drawn from the node declarations (`phrases`, and
  `pair_phrases` for a style node's reference column), inside a lead-in;
- content: the query sample's caption, only when the task's last node is the
  target (the caption describes the photo, not a stylised or predicted image).

Training keeps the task part with `p_task`, the content part with `p_content`
and drops the whole prompt with `p_drop`; inference keeps everything.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graph200k import DEFAULT_NODES, NodeRegistry

PAIR_SUFFIX = "_ref"  # column name of a style node's reference image: `<style>_ref`

# {row_count} is "1 row" / "3 rows", {col_count} "1 column" / "2 columns".
LAYOUT_TEMPLATES = (
    "A grid of {row_count} and {col_count}, {count} images in all.",
    "{count} images laid out in {row_count} of {cols}.",
    "The picture is a {rows}x{cols} grid holding {count} images.",
    "{row_count}, {cols} images per row, {count} panels in total.",
    "An image grid: {row_count} by {col_count} ({count} cells).",
    "A collage of {count} images arranged as {row_count} and {col_count}.",
    "Here are {count} pictures in a {rows}-row, {cols}-column layout.",
    "A {rows} by {cols} panel layout with {count} images side by side.",
    "{count} tiles form a grid with {row_count} and {col_count}.",
    "A layout of {row_count}; each row has {cols} images, {count} altogether.",
)

TASK_TEMPLATES = (
    "Every row performs the same task: {chain}.",
    "In each row, {chain}.",
    "Each row goes {chain}.",
    "The rows share one transformation: {chain}.",
    "Row by row, the same mapping holds: {chain}.",
    "All rows follow this pattern: {chain}.",
    "The task, repeated in every row: {chain}.",
    "Across the rows the images relate the same way: {chain}.",
    "Each row is one example of {chain}.",
    "One rule links the columns of every row: {chain}.",
)

CONTENT_TEMPLATES = (
    "The last image of the last row shows: {caption}",
    "Content of the final image in the bottom row: {caption}",
    "The bottom-right image depicts: {caption}",
    "What the last picture of the query row contains: {caption}",
    "The final image of the last row is described as: {caption}",
    "Bottom row, last image: {caption}",
    "The image to complete at the end of the last row shows: {caption}",
    "Description of the last row's final image: {caption}",
    "The last cell of the bottom row contains: {caption}",
    "In the last image of the final row: {caption}",
)


@dataclass(frozen=True)
class InstructionConfig:
    """Probabilities of the prompt parts during training."""

    p_task: float = 0.8
    p_content: float = 0.8
    p_drop: float = 0.1

    def __post_init__(self):
        for name in ("p_task", "p_content", "p_drop"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"instruction {name} must be within [0, 1], got {value!r}")


def layout_text(rows: int, cols: int, rng: np.random.Generator | None = None) -> str:
    """The layout part; the first template when no `rng` is given."""
    template = LAYOUT_TEMPLATES[0 if rng is None else int(rng.integers(len(LAYOUT_TEMPLATES)))]
    return template.format(rows=rows, cols=cols, count=rows * cols, row_count=_counted(rows, "row"),
                           col_count=_counted(cols, "column"))


def _counted(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def column_phrase(column: str, rng: np.random.Generator, nodes: NodeRegistry = DEFAULT_NODES) -> str:
    """A phrase for one grid column (`<style>_ref` columns use the style's pair phrases)."""
    if column.endswith(PAIR_SUFFIX) and column not in nodes:
        phrases = nodes.get(column[: -len(PAIR_SUFFIX)]).pair_phrases
    else:
        phrases = nodes.get(column).phrases
    return phrases[int(rng.integers(len(phrases)))]


def task_chain(columns: list[str], rng: np.random.Generator, nodes: NodeRegistry = DEFAULT_NODES) -> str:
    """`[IMAGE1] phrase, [IMAGE2] phrase -> [IMAGEk] phrase` for the columns in grid order."""
    tagged = [f"[IMAGE{i}] {column_phrase(c, rng, nodes)}" for i, c in enumerate(columns, start=1)]
    return ", ".join(tagged[:-1]) + " -> " + tagged[-1]


def task_text(columns: list[str], rng: np.random.Generator, nodes: NodeRegistry = DEFAULT_NODES) -> str:
    template = TASK_TEMPLATES[int(rng.integers(len(TASK_TEMPLATES)))]
    return template.format(chain=task_chain(columns, rng, nodes))


def content_text(caption: str, rng: np.random.Generator) -> str:
    template = CONTENT_TEMPLATES[int(rng.integers(len(CONTENT_TEMPLATES)))]
    return template.format(caption=caption.strip()) if caption.strip() else ""


def build_instruction(*, rows: int, columns: list[str], target_node: str, caption: str,
                      rng: np.random.Generator, config: InstructionConfig | None,
                      nodes: NodeRegistry = DEFAULT_NODES) -> str:
    """The grid's prompt. `config=None` is inference: every part kept, nothing dropped.

    All random draws happen whatever is kept, so the choice of one part never
    shifts the randomness of another."""
    layout = layout_text(rows, len(columns), rng)
    task = task_text(columns, rng, nodes)
    content = content_text(caption, rng)
    if target_node != "target":
        content = ""
    keep_task, keep_content, drop = rng.random(3)
    if config is None:
        return " ".join(p for p in (layout, task, content) if p)
    if drop < config.p_drop:
        return ""
    parts = [layout]
    if keep_task < config.p_task:
        parts.append(task)
    if content and keep_content < config.p_content:
        parts.append(content)
    return " ".join(parts)
