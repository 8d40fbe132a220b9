import json
import subprocess
import sys

from PIL import Image

from tests.conftest import REPO


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "graph200k", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_nodes_json_contract():
    out = run("nodes", "--json")
    assert out.returncode == 0, out.stderr
    nodes = json.loads(out.stdout)
    assert len(nodes) == 49
    for node in nodes:
        assert {"name", "graph200k_name", "group", "produced_by"} <= node.keys()
    canny = next(n for n in nodes if n["name"] == "canny")
    assert canny["produced_by"] == "annotator:canny" and canny["group"] == "condition"


def test_tasks_json_contract(reference_tasks):
    out = run("tasks", "--split", "train", "--json")
    assert out.returncode == 0, out.stderr
    tasks = json.loads(out.stdout)
    assert len(tasks) == 129
    assert {(t["family"], tuple(t["graph200k_nodes"])) for t in tasks} == {
        (t["family"], tuple(t["nodes"])) for t in reference_tasks["train_tasks"]}
    assert run("tasks", "--split", "train", "--json").stdout == out.stdout  # stable order
    test = json.loads(run("tasks", "--split", "test", "--json").stdout)
    assert len(test) == 36
    fam = json.loads(run("tasks", "--json", "--family", "dense prediction").stdout)
    assert len(fam) == 8 and {t["family"] for t in fam} == {"dense prediction"}


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
