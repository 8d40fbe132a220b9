"""The task and the prompt of an inference grid, from the same builder training uses.

`prompt_for(task, rows, caption, item)` returns the parts a diffusers user passes
(`task_prompt`, `content_prompt`) and the full text the pipeline encodes for them, which is
`sampler.instruction.build_instruction(config=None)` character for character: diffusers'
layout sentence in its 0.42 tuple form, `task_prompt(task_columns(task.nodes))`, and the
content only when the task's target is the photo. `load_pipeline` lays the grid out so that
the pipeline assembles exactly this text (inference/pipeline.py).
"""

from __future__ import annotations

import difflib
import re
from typing import NamedTuple

from graph200k import Graph200kError, Task, TaskGraph, default_task_graph

from .errors import InferenceError

_ARROW = re.compile(r"\s*->\s*")
_PLUS = re.compile(r"\s*\+\s*")
CLOSE_MATCHES = 5


class GridPrompt(NamedTuple):
    """What the pipeline is given (`task_prompt`, `content_prompt`) and the text it encodes (`full`)."""

    task_prompt: str
    content_prompt: str | None
    full: str


def task_path(task_id: str) -> list[str]:
    """`reference+canny->target` (or `reference -> canny -> target`, as `python -m graph200k tasks` prints it)
    -> the node names in path order."""
    parts = _ARROW.split(task_id.strip())
    if len(parts) < 2:
        return [task_id.strip()]
    return [n for part in parts[:-1] for n in _PLUS.split(part)] + [parts[-1]]


def resolve_task(task_id: str, graph: TaskGraph | None = None) -> Task:
    """The task `task_id` names (either spelling of the nodes), or an InferenceError listing close ids."""
    graph = graph or default_task_graph()
    try:
        return graph.find(task_path(task_id))
    except Graph200kError:
        ids = [t.id for t in graph.tasks()]
        close = difflib.get_close_matches(task_id.replace(" ", ""), ids, n=CLOSE_MATCHES, cutoff=0.5)
        hint = f"close matches: {', '.join(close)}" if close else "no close match"
        raise InferenceError(f"--task {task_id!r}: no such task ({hint}); `python -m graph200k tasks` lists "
                             "them, e.g. canny->target or reference+depth->target") from None


def columns_of(task: Task) -> list[str]:
    """The grid columns of `task` in order (a style node brings its reference column)."""
    from sampler.instruction import task_columns

    return task_columns(task.nodes)


def prompt_for(task: Task, rows: int, caption: str = "", item: str = "") -> GridPrompt:
    """The prompt of a `rows`-row grid of `task` at inference: `build_instruction(config=None)`.

    The builder draws its training variants from an rng whatever it returns; at `config=None`
    the text does not depend on it, so any seed gives the same prompt."""
    import numpy as np
    from sampler.instruction import build_instruction, content_prompt, task_prompt

    columns = columns_of(task)
    content = content_prompt(caption, item) if task.target == "target" else ""
    full = build_instruction(rows=rows, columns=columns, target_node=task.target, caption=caption, item=item,
                             rng=np.random.default_rng(0), config=None)
    return GridPrompt(task_prompt(columns), content or None, full)


def prompt_from_text(text: str, rows: int, cols: int, caption: str = "", item: str = "") -> GridPrompt:
    """The prompt for a task given as text (`--prompt`): the text is the task part, the caption the content."""
    from sampler.instruction import content_prompt, diffusers_prompt

    if not text.strip():
        raise InferenceError("--prompt is empty: give the task's text, or --task ID to build it")
    content = content_prompt(caption, item) or None
    return GridPrompt(text.strip(), content, diffusers_prompt(rows, cols, text.strip(), content))
