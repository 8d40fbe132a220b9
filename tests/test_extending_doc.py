"""docs/extending.md, followed literally on a copy of the repository.

Every code block of the doc preceded by an `<!-- extending: ... -->` comment is
a step: a new file, or an edit of an existing one (after a line, replacing a
line, or at the end of a list). The steps are applied verbatim to a copy of the
source packages; then, in that copy, the new node and annotator must be listed
by the CLIs, the doc's task table must be what the graph makes, `--split test`
must still be the repository's test split, and the doc's own test file must pass
beside the tests that count nodes and tasks. Any drift between the doc and the
code (an anchor line that moved, an API the example uses that changed) fails here.

In a checkout where the doc has been followed (its new files exist), there is
nothing to replay: these tests skip, and the reader's own test file runs instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from graph200k import TaskGraph
from tests.conftest import REPO

DOC = REPO / "docs" / "extending.md"
EXAMPLE = "example_sketch"
COPIED = ("graph200k", "annotators", "sampler", "train", "inference", "tests", "samples", "pyproject.toml")
EDITS = ("after the line", "replace the line", "at the end of the list")
STEP = re.compile(
    r'^<!-- extending: (?:new file (?P<new>\S+)|(?P<path>\S+), (?P<how>' + "|".join(EDITS) + r') "(?P<anchor>[^"]+)")'
    r" -->\n```python\n(?P<code>.*?)^```\n", re.S | re.M)
TASK_ROW = re.compile(r"^\| ([a-z][a-z ]+) \| `([a-z0-9_+]+->[a-z0-9_]+)` \|$", re.M)


@dataclass(frozen=True)
class Step:
    path: str
    how: str  # "new file" or one of EDITS
    anchor: str
    code: str


def doc_steps(text: str) -> list[Step]:
    steps = [Step(m["new"] or m["path"], "new file" if m["new"] else m["how"], m["anchor"] or "", m["code"])
             for m in STEP.finditer(text)]
    markers = len(re.findall(r"^<!-- extending:", text, re.M))
    assert len(steps) == markers, f"{markers - len(steps)} `<!-- extending:` comment(s) of {DOC} are malformed"
    return steps


def skip_if_followed_here(steps: list[Step]) -> None:
    created = [s.path for s in steps if s.how == "new file"]
    if created and all((REPO / path).exists() for path in created):
        pytest.skip(f"docs/extending.md has been followed in this checkout ({', '.join(created)} exist)")


def _line(lines: list[str], anchor: str, step: Step) -> int:
    hits = [i for i, line in enumerate(lines) if line.rstrip("\n") == anchor]
    assert len(hits) == 1, f"{step.path}: the doc's anchor line {anchor!r} occurs {len(hits)} times (wanted once)"
    return hits[0]


def apply_step(root: Path, step: Step) -> None:
    """Edit the copy at `root` as the step says, verbatim."""
    target = root / step.path
    if step.how == "new file":
        assert not target.exists(), f"the doc creates {step.path}, which already exists"
        target.write_text(step.code)
        return
    lines = target.read_text().splitlines(keepends=True)
    at = _line(lines, step.anchor, step)
    block = step.code.splitlines(keepends=True)
    if step.how == "after the line":
        lines[at + 1:at + 1] = block
    elif step.how == "replace the line":
        lines[at:at + 1] = block
    else:  # at the end of the list: before the first line "]" after the anchor
        end = next((i for i in range(at + 1, len(lines)) if lines[i].rstrip("\n") == "]"), None)
        assert end is not None, f"{step.path}: no closing ']' after {step.anchor!r}"
        lines[end:end] = block
    target.write_text("".join(lines))


def _run(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = str(root)
    return subprocess.run([sys.executable, *args], cwd=root, env=env, capture_output=True, text=True, timeout=300)


def _json(root: Path, *args: str):
    out = _run(root, "-m", *args, "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def followed(tmp_path_factory) -> Path:
    """A copy of the repository's packages with the doc's steps applied."""
    steps = doc_steps(DOC.read_text())
    skip_if_followed_here(steps)
    root = tmp_path_factory.mktemp("extending") / "repo"
    for name in COPIED:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            root.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    for step in steps:
        apply_step(root, step)
    return root


def test_the_doc_marks_its_steps_and_they_fit_todays_code():
    steps = doc_steps(DOC.read_text())
    skip_if_followed_here(steps)
    assert {(s.path, s.how) for s in steps} == {
        ("graph200k/catalog.py", "at the end of the list"),
        (f"annotators/perception/{EXAMPLE}.py", "new file"),
        ("annotators/registry.py", "after the line"),
        ("annotators/registry.py", "replace the line"),
        (f"tests/test_{EXAMPLE}.py", "new file"),
    }
    for step in steps:
        if step.how == "new file":
            assert not (REPO / step.path).exists(), f"{step.path} exists: the doc's example collides with it"
        else:
            _line((REPO / step.path).read_text().splitlines(), step.anchor, step)


def test_the_example_name_is_taken_by_nothing_yet():
    from annotators.registry import DEFAULT_ANNOTATORS
    from graph200k import DEFAULT_NODES

    skip_if_followed_here(doc_steps(DOC.read_text()))
    assert EXAMPLE not in DEFAULT_NODES and EXAMPLE not in DEFAULT_ANNOTATORS.names()
    users = [p for d in COPIED[:6] for p in (REPO / d).rglob("*.py")
             if EXAMPLE in p.read_text(errors="replace") and p != Path(__file__).resolve()]
    assert users == [], f"{EXAMPLE!r} is already used by {users}"


def test_following_the_doc_adds_the_node_and_keeps_the_test_split(followed):
    where = _run(followed, "-c", "import graph200k, annotators; print(graph200k.__file__); print(annotators.__file__)")
    assert where.returncode == 0 and all(Path(p).is_relative_to(followed) for p in where.stdout.split()), where

    nodes = {n["name"]: n for n in _json(followed, "graph200k", "nodes")}
    assert nodes[EXAMPLE]["group"] == "condition" and nodes[EXAMPLE]["produced_by"] == f"annotator:{EXAMPLE}"
    listed = {a["name"]: a for a in _json(followed, "annotators", "list")}
    assert EXAMPLE in listed and listed[EXAMPLE]["produces"] == EXAMPLE

    before = TaskGraph()
    train = _json(followed, "graph200k", "tasks", "--split", "train")
    added = {(t["family"], t["id"]) for t in train if EXAMPLE in t["nodes"]}
    assert added == set(TASK_ROW.findall(DOC.read_text())), "the doc's task table is not what the graph makes"
    assert len(train) == len(before.tasks()) + len(added)
    test = _json(followed, "graph200k", "tasks", "--split", "test")
    assert [t["id"] for t in test] == [t.id for t in before.tasks("test")]

    out = _run(followed, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider",
               f"tests/test_{EXAMPLE}.py", "tests/test_tasks.py", "tests/test_nodes.py")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert re.search(r"^\d+ passed in ", out.stdout.splitlines()[-1]), out.stdout[-1000:]  # none skipped
