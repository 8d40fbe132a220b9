import json
import os
import subprocess
import sys

import pytest

from PIL import Image

from graph200k import DEFAULT_NODES, TaskGraph
from tests.conftest import REPO


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "graph200k", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_nodes_json_contract():
    out = run("nodes", "--json")
    assert out.returncode == 0, out.stderr
    nodes = json.loads(out.stdout)
    assert [n["name"] for n in nodes] == DEFAULT_NODES.names()
    for node in nodes:
        assert {"name", "graph200k_name", "group", "produced_by"} <= node.keys()
    canny = next(n for n in nodes if n["name"] == "canny")
    assert canny["produced_by"] == "annotator:canny" and canny["group"] == "condition"


def test_tasks_json_contract(reference_tasks):
    out = run("tasks", "--split", "train", "--json")
    assert out.returncode == 0, out.stderr
    tasks = json.loads(out.stdout)
    graph = TaskGraph()
    assert [t["id"] for t in tasks] == [t.id for t in graph.tasks()]
    assert {(t["family"], tuple(t["graph200k_nodes"])) for t in tasks} >= {
        (t["family"], tuple(t["nodes"])) for t in reference_tasks["train_tasks"]}
    assert run("tasks", "--split", "train", "--json").stdout == out.stdout  # stable order
    test = json.loads(run("tasks", "--split", "test", "--json").stdout)
    assert [t["id"] for t in test] == [t.id for t in graph.tasks("test")]
    fam = json.loads(run("tasks", "--json", "--family", "dense prediction").stdout)
    assert [t["id"] for t in fam] == [t.id for t in graph.tasks(family="dense prediction")]
    assert len(fam) > 1 and {t["family"] for t in fam} == {"dense prediction"}


def test_unknown_family_is_an_error_naming_it():
    out = run("tasks", "--family", "nope")
    assert out.returncode == 2 and "'nope'" in out.stderr


def test_graph_picture(tmp_path):
    target = tmp_path / "graph.png"
    out = run("graph", "--out", str(target))
    assert out.returncode == 0, out.stderr
    with Image.open(target) as img:
        assert img.format == "PNG" and img.width > 1000 and img.height > 800
        colours = img.convert("RGB").getcolors(maxcolors=1 << 20)
    assert len(colours) > 50  # a drawing, not a blank canvas


def test_task_listing_prints_ids_the_config_takes():
    """Every id in the `tasks` table, copied as printed, selects exactly that task (and the whole column is there)."""
    import re

    from graph200k import TaskGraph
    from sampler.planner import _resolve_tasks

    out = run("tasks")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("---")) + 1
    rows = [re.split(r"\s{2,}", line) for line in lines[start:] if line.strip()][:-1]  # last line: the total
    graph = TaskGraph()
    ids = [row[1] for row in rows]
    assert ids == [t.id for t in graph.tasks()]
    assert all([t.id for t in _resolve_tasks(graph, i)] == [i] for i in ids)


@pytest.mark.parametrize("command", ["nodes", "tasks"])
def test_a_reader_that_closes_early_gets_no_traceback(command):
    """`graph200k nodes | head`: the reader is gone before the listing is written (closed before the
    child starts writing, so the pipe is broken whatever the pipe buffer's size)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run([sys.executable, "-m", "graph200k", command], cwd=REPO, stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr
    assert proc.returncode == 141
