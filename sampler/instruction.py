"""The instruction text of a grid, and the one prompt builder training, validation, docs and inference share.

A prompt has three parts:

- layout: how many rows and columns, and how many images;
- task: `<lead-in> [IMAGE1] phrase, [IMAGE2] phrase -> [IMAGEk] phrase.`, one phrase per
  column after shuffling, drawn from the node declarations (`phrases`, and
  `pair_phrases` for a style node's reference column). This is what a diffusers user
  passes as `task_prompt` (`task_prompt(columns)` gives one fixed text per task);
- content: the query's subject name and caption (`content_prompt(caption, item)`, what a
  user passes as `content_prompt`), only when the task's last node is the target (the
  caption describes the photo, not a stylised or predicted image).

Training writes the prompt in two forms. Ours: one of ten layout and ten content
templates. Diffusers' (with probability `p_diffusers`): exactly the string diffusers
0.42's `VisualClozePipeline` / `VisualClozeGenerationPipeline` encode for
(`task_prompt`, `content_prompt`): its layout sentence, formatted as diffusers formats
it today (a 1-tuple's repr) or as a plain sentence (half each, in case diffusers fixes
that), and "The last image of the last row depicts: " before the content. So every
prompt a diffusers user sends is one the LoRA was trained on (tests/test_instruction.py
captures the string the real pipeline encodes). Training keeps the task part with
`p_task`, the content part with `p_content` and drops the whole prompt with `p_drop`;
inference (`config=None`) keeps everything, in diffusers' form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

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

# diffusers 0.42.1, VisualClozeProcessor.get_layout_prompt ("1 rows" included) and
# VisualClozeGenerationPipeline.encode_prompt; tests/test_instruction.py checks both against diffusers.
DIFFUSERS_LAYOUT = "A grid layout with {rows} rows and {cols} columns, displaying {count} images arranged side by side."
DIFFUSERS_CONTENT_PREFIX = "The last image of the last row depicts: "
DIFFUSERS_LAYOUT_FORMS = ("tuple", "sentence")
DIFFUSERS_LAYOUT_FORM = "tuple"  # how diffusers 0.42.1 puts the layout into the prompt: a 1-tuple's repr
P_TUPLE_LAYOUT = 0.5  # share of the diffusers-form prompts whose layout is the tuple repr (else the sentence)

_DIGEST = re.compile(r"[0-9a-fA-F]{16,}")


@dataclass(frozen=True)
class InstructionConfig:
    """Probabilities of the prompt parts and forms during training."""

    p_task: float = 0.8
    p_content: float = 0.8
    p_drop: float = 0.1
    p_diffusers: float = 0.3  # prompts in diffusers' form (layout + "The last image ... depicts: ")

    def __post_init__(self):
        for name in ("p_task", "p_content", "p_drop", "p_diffusers"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"instruction {name} must be within [0, 1], got {value!r}")


# ---------------------------------------------------------------- the parts a user passes


def task_columns(node_path: Sequence[str], nodes: NodeRegistry = DEFAULT_NODES) -> list[str]:
    """The grid columns of a task's node path, unshuffled: a style node gives `<style>_ref`, `<style>`."""
    columns = []
    for name in node_path:
        node = nodes.get(name)
        columns += [node.name + PAIR_SUFFIX, node.name] if node.columns == 2 else [node.name]
    return columns


def column_phrase(column: str, rng: np.random.Generator | None = None, nodes: NodeRegistry = DEFAULT_NODES) -> str:
    """A phrase for one grid column (`<style>_ref` columns use the style's pair phrases); the first without `rng`."""
    if column.endswith(PAIR_SUFFIX) and column not in nodes:
        phrases = nodes.get(column[: -len(PAIR_SUFFIX)]).pair_phrases
    else:
        phrases = nodes.get(column).phrases
    return phrases[0 if rng is None else int(rng.integers(len(phrases)))]


def task_chain(columns: Sequence[str], rng: np.random.Generator | None = None,
               nodes: NodeRegistry = DEFAULT_NODES) -> str:
    """`[IMAGE1] phrase, [IMAGE2] phrase -> [IMAGEk] phrase` for the columns in grid order."""
    tagged = [f"[IMAGE{i}] {column_phrase(c, rng, nodes)}" for i, c in enumerate(columns, start=1)]
    return ", ".join(tagged[:-1]) + " -> " + tagged[-1]


def task_prompt(columns: Sequence[str], nodes: NodeRegistry = DEFAULT_NODES,
                rng: np.random.Generator | None = None) -> str:
    """The task part, what a diffusers user passes as `task_prompt`.

    Without `rng` it is one fixed text per column order (the first lead-in and each
    column's first phrase): the text the README, the inference CLI and validation use.
    `task_prompt(task_columns(["canny", "target"]))` for the task canny->target."""
    if not columns:
        raise ValueError("task_prompt needs the grid's columns, e.g. task_columns(['canny', 'target'])")
    template = TASK_TEMPLATES[0 if rng is None else int(rng.integers(len(TASK_TEMPLATES)))]
    return template.format(chain=task_chain(columns, rng, nodes))


def content_prompt(caption: str, item: str = "") -> str:
    """The content part, what a diffusers user passes as `content_prompt`: subject name and caption.

    As the paper: `item + " " + caption`. An `item` that is a hex digest is a file id, not a
    subject name (the bundled samples carry their key there) and is left out."""
    item = "" if _DIGEST.fullmatch(item.strip()) else item.strip()
    return " ".join(p for p in (item, caption.strip()) if p)


def diffusers_layout(rows: int, cols: int, form: str = DIFFUSERS_LAYOUT_FORM) -> str:
    """Diffusers' layout part as it lands in the prompt: the 1-tuple's repr (diffusers 0.42) or the sentence."""
    sentence = DIFFUSERS_LAYOUT.format(rows=rows, cols=cols, count=rows * cols)
    if form == "tuple":
        return str((sentence,))
    if form == "sentence":
        return sentence
    raise ValueError(f"layout form {form!r}: expected one of {', '.join(DIFFUSERS_LAYOUT_FORMS)}")


def diffusers_prompt(rows: int, cols: int, task_prompt: str | None, content_prompt: str | None, *,
                     layout_form: str = DIFFUSERS_LAYOUT_FORM) -> str:
    """The full prompt diffusers' VisualCloze pipelines encode for a grid of `rows` x `cols`.

    `content_prompt=None` leaves the content part out; "" still adds its lead-in, as diffusers does."""
    content = None if content_prompt is None else DIFFUSERS_CONTENT_PREFIX + content_prompt
    return f"{diffusers_layout(rows, cols, layout_form)} {task_prompt or ''} {content or ''}".strip()


# ---------------------------------------------------------------- training variants


def layout_text(rows: int, cols: int, rng: np.random.Generator | None = None) -> str:
    """The layout part in our wording; the first template when no `rng` is given."""
    template = LAYOUT_TEMPLATES[0 if rng is None else int(rng.integers(len(LAYOUT_TEMPLATES)))]
    return template.format(rows=rows, cols=cols, count=rows * cols, row_count=_counted(rows, "row"),
                           col_count=_counted(cols, "column"))


def _counted(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def build_instruction(*, rows: int, columns: Sequence[str], target_node: str, caption: str, item: str = "",
                      rng: np.random.Generator, config: InstructionConfig | None,
                      nodes: NodeRegistry = DEFAULT_NODES) -> str:
    """The grid's prompt. `config=None` is inference: what a diffusers 0.42 user's call encodes
    with `task_prompt(columns)` and `content_prompt(caption, item)`, nothing dropped.

    All random draws happen whatever is kept (and at inference), so the choice of one
    part never shifts the randomness of another."""
    cols = len(columns)
    layout = layout_text(rows, cols, rng)
    task = task_prompt(columns, nodes, rng)
    template = CONTENT_TEMPLATES[int(rng.integers(len(CONTENT_TEMPLATES)))]
    content = content_prompt(caption, item) if target_node == "target" else ""
    keep_task, keep_content, drop, diffusers_form, tuple_layout = rng.random(5)
    if config is None:
        return diffusers_prompt(rows, cols, task_prompt(columns, nodes), content or None)
    if drop < config.p_drop:
        return ""
    task = task if keep_task < config.p_task else ""
    content = content if keep_content < config.p_content else ""
    if diffusers_form < config.p_diffusers:
        form = "tuple" if tuple_layout < P_TUPLE_LAYOUT else "sentence"
        return diffusers_prompt(rows, cols, task, content or None, layout_form=form)
    return " ".join(p for p in (layout, task, template.format(caption=content) if content else "") if p)
