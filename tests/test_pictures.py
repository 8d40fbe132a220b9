"""Pictures that explain themselves: `graph200k show`, the task graph's panels, the degradation sheet's
severities, `sampler preview --tasks`, and `annotators sheet` writing only where it is told."""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from graph200k import Group, TaskGraph
from graph200k.cli import main as graph200k_main
from graph200k.draw import FOLDED, family_panels
from graph200k.packing import pack
from sampler.cli import main as sampler_main
from sampler.cli import preview_tasks
from sampler.degradations import DEGRADATION_NAMES, degrade_variant, variants
from sampler.degradations.levels import severity_text, strength
from sampler.degradations.registry import REGISTRY
from sampler.degradations.sheet import degradation_tiles, legend
from sampler.pool import parse_sample
from sampler.show import find_samples, render_sheet, sheet_cells
from tests.conftest import REPO
from tests.test_packing import SAMPLES, build

PORTRAIT = "012cd3921e1f97d761eeff580f918ff9"  # target + canny, depth, hed, normal, sam2_mask, foreground mask
ROBOT = "0fdaecdb7906a1bf0d6e202363f15de3"  # target + canny, grounded mask, one instant_style with its reference


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> Path:
    """The bundled samples annotated with canny and packed, as `make demo` does (without Ray)."""
    dataset = tmp_path_factory.mktemp("pictures") / "demo"
    build(SAMPLES, dataset)
    pack(dataset, progress=False)
    return dataset


def _png(value: int = 0, size: tuple[int, int] = (48, 32), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, value if mode == "L" else (value, 255 - value, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


# -- graph200k show ------------------------------------------------------------------------------

def test_show_writes_one_sheet_per_key_with_a_cell_per_node(packed, tmp_path, capsys):
    out = tmp_path / "sheets"
    assert graph200k_main(["show", "--dataset", str(packed), PORTRAIT, ROBOT, "--out", str(out),
                           "--cell", "64"]) == 0
    printed = capsys.readouterr().out
    for key in (PORTRAIT, ROBOT):
        path = out / f"{key}.png"
        assert f"wrote {path}" in printed
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width >= 6 * 64

    found, files = find_samples(packed, [PORTRAIT, ROBOT])
    files.close()
    (portrait, _), (robot, _) = found
    labels = [(c.label, c.kind) for c in sheet_cells(portrait)]
    assert labels == [("target", "stored"), ("canny", "stored"), ("depth", "stored"), ("hed", "stored"),
                      ("normal", "stored"), ("sam2_mask", "stored"), ("foreground_mask", "stored"),
                      ("foreground", "derived"), ("background", "derived"), ("gaussian_blur", "degradation"),
                      ("jpeg", "degradation"), ("rain", "degradation"), ("inpainting", "degradation")]
    assert [c.label for c in sheet_cells(robot, degradations=["rotate90"])] == [
        "target", "canny", "grounded_mask", "instant_style_ref[0]", "instant_style[0]", "rotate90"]


def test_show_labels_every_instance_the_unused_reference_and_extra_fields():
    fields = {"target.jpg": _png(10), "reference.jpg": _png(20), "grounded_mask.png": _png(30),
              "grounded_bbox.png": _png(40), "fill_edit.0.jpg": _png(50), "fill_edit.3.jpg": _png(60),
              "instant_style.0.jpg": _png(70), "instant_style_ref.0.jpg": _png(80, (20, 40)),
              "instant_style.2.jpg": _png(90), "instant_style_ref.2.jpg": _png(100),
              "json": json.dumps({"caption": "a red boat", "quality": {"objectConsistency": 2}}).encode()}
    sample = parse_sample("boat", fields)
    cells = sheet_cells(sample, degradations=["blur"])
    assert [c.label for c in cells] == [
        "target", "reference", "grounded_mask", "instant_style_ref[0]", "instant_style[0]",
        "instant_style_ref[2]", "instant_style[2]", "fill_edit[0]", "fill_edit[3]", "grounded_bbox", "blur"]
    by_label = {c.label: c for c in cells}
    assert "NOT used" in by_label["reference"].note and "objectConsistency" in by_label["reference"].note
    assert "grounded_mask" in by_label["grounded_bbox"].note
    sheet = render_sheet(sample, cells, cell=64)
    assert sheet.width >= 6 * 64 and sheet.height > 2 * 64


def test_show_unknown_key_lists_keys_that_exist(packed, tmp_path, capsys):
    assert graph200k_main(["show", "--dataset", str(packed), PORTRAIT[:-1], "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and repr(PORTRAIT[:-1]) in err
    assert f"did you mean {PORTRAIT}" in err and ROBOT in err and "index.jsonl" in err
    assert not list(tmp_path.iterdir())
    assert graph200k_main(["show", "--dataset", str(tmp_path), PORTRAIT]) == 2
    assert "graph200k shards --dataset" in capsys.readouterr().err


def test_show_default_out_is_the_current_folder(packed, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert graph200k_main(["show", "--dataset", str(packed), ROBOT, "--cell", "64"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"show-{ROBOT}.png"]
    assert str(tmp_path / f"show-{ROBOT}.png") in capsys.readouterr().out
    assert graph200k_main(["show", "--dataset", str(packed), ROBOT, PORTRAIT, "--out", "one.png"]) == 2
    assert "names one file" in capsys.readouterr().err


# -- the task graph ------------------------------------------------------------------------------

@pytest.mark.parametrize("fold", [True, False])
def test_task_graph_has_one_panel_per_family_holding_its_tasks(fold):
    graph = TaskGraph()
    panels = family_panels(graph, fold_degradations=fold)
    assert [p.family for p in panels] == graph.family_names()
    degradations = {n.name for n in graph.nodes.in_group(Group.DEGRADATION)}
    for panel in panels:
        tasks = graph.tasks(family=panel.family)
        assert panel.tasks == len(tasks)
        assert panel.test_tasks == len(graph.tasks(split="test", family=panel.family))
        for task in tasks:  # every task is a path through the panel, column by column
            path = [FOLDED if fold and n in degradations else n for n in task.nodes]
            assert all(name in panel.columns[j] for j, name in enumerate(path))
            assert all(edge in panel.edges for edge in zip(path, path[1:]))
    restoration = panels[graph.family_names().index("restoration")]
    assert restoration.columns == (((FOLDED,),) if fold else (tuple(DEGRADATION_NAMES),)) + (("target",),)


# -- the degradation sheet -----------------------------------------------------------------------

def test_degradation_sheet_labels_carry_severity_and_parameter():
    source = np.asarray(Image.open(SAMPLES / f"{PORTRAIT}.jpg").convert("RGB").resize((64, 64)))
    tiles = degradation_tiles(source, seed=5)
    assert [t.title for t in tiles] == ["source", *DEGRADATION_NAMES]
    for tile in tiles[1:]:
        levels = len(REGISTRY[tile.title].severities)
        if levels:
            assert re.match(rf"s[1-{levels}] of 1-{levels}: \S", tile.detail), tile.detail
            assert re.search(r"\d", tile.detail.split(": ", 1)[1]), tile.detail  # the value, not just a name
        else:
            assert tile.detail.startswith("fixed recipe: "), tile.detail
    text = " ".join(legend(5, 64))
    assert "1-5" in text and "1-3" in text and "--seed 5" in text and "drawn uniformly" in text


def test_every_variant_of_every_degradation_says_its_strength():
    image = np.zeros((16, 16, 3), np.uint8)
    rng = np.random.default_rng(0)
    for name in DEGRADATION_NAMES:
        for severity, method in variants(name):
            _, params = degrade_variant(image, name, rng, severity=severity, method=method)
            assert strength(params) and severity_text(params)
    _, lens = degrade_variant(image, "blur", rng, severity=5, method="lens")
    assert strength(lens) == "lens disk radius=8 px at 512"
    _, jpeg = degrade_variant(image, "compression", rng, severity=3, method="jpeg")
    assert (severity_text(jpeg), strength(jpeg)) == ("s3 of 1-3", "JPEG quality=12")


def test_degradation_sheet_cli_draws_the_legend(tmp_path):
    out = tmp_path / "sheet.png"
    assert sampler_main(["degradations", "--image", str(SAMPLES / f"{ROBOT}.jpg"), "--out", str(out),
                         "--cell", "64"]) == 0
    with Image.open(out) as sheet:
        rows = -(-33 // 6)
        assert sheet.height > rows * 64 + 3 * 12  # the cells plus their labels and the legend lines


# -- sampler preview --tasks ---------------------------------------------------------------------

def test_preview_tasks_syntax():
    assert preview_tasks(None) == "train"
    assert preview_tasks(["dense prediction, reference+depth->target", "test"]) == [
        "dense prediction", "reference+depth->target", "test"]
    with pytest.raises(ValueError, match="--tasks"):
        preview_tasks([" , "])


def test_preview_tasks_only_yields_those_tasks(sampler_shards, tmp_path, capsys):
    out = tmp_path / "grids"
    assert sampler_main(["preview", "--shards", str(sampler_shards), "--n", "4", "--out", str(out),
                         "--resolution", "64", "--tasks", "dense prediction", "--tasks", "depth->target"]) == 0
    page = (out / "index.html").read_text()
    shown = re.findall(r"<b>([^<]+)</b> (\S+)", page)
    assert len(shown) == 4
    allowed = {t.id for t in TaskGraph().tasks(family="dense prediction")} | {"depth->target"}
    assert all(task.replace("&gt;", ">") in allowed for _, task in shown), shown
    capsys.readouterr()
    assert sampler_main(["preview", "--shards", str(sampler_shards), "--n", "1", "--out", str(tmp_path / "x"),
                         "--tasks", "depth->nowhere"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'depth->nowhere'" in err


# -- annotators sheet ----------------------------------------------------------------------------

def test_annotators_sheet_writes_only_where_told(tmp_path, monkeypatch, capsys):
    from annotators.cli import main as annotators_main

    docs_picture = REPO / "docs" / "img" / "annotators.png"
    before = hashlib.sha256(docs_picture.read_bytes()).hexdigest()
    sample = tmp_path / "sample"  # a sample folder as the sheet reads it: target.jpg and its maps
    sample.mkdir()
    (sample / "target.jpg").write_bytes((SAMPLES / f"{ROBOT}.jpg").read_bytes())
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    with pytest.raises(SystemExit) as exit_:
        annotators_main(["sheet", "--sample", str(sample)])
    assert exit_.value.code == 2 and "--out" in capsys.readouterr().err
    assert not list(work.iterdir())
    assert hashlib.sha256(docs_picture.read_bytes()).hexdigest() == before
    assert annotators_main(["sheet", "--sample", str(sample), "--out", "mine.png"]) == 0
    assert [p.name for p in work.iterdir()] == ["mine.png"]
    assert hashlib.sha256(docs_picture.read_bytes()).hexdigest() == before
