"""Hugging Face datasets both ways (issue 15): `graph200k export` writes the pack with the release's columns,
`annotators run` reads an export (Arrow or Parquet) back to the same samples, and a generic `image`/`text`
dataset annotates with `--image-col`/`--caption-col` or fails with one line listing its columns."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from annotators.cli import main as annotators_main
from annotators.inputs.columns import ColumnMap
from annotators.inputs.fields import FieldRole, release_column_role
from annotators.inputs.sources import InputError, plan_sources
from annotators.inputs.tables import table_files
from graph200k.catalog import DEFAULT_NODES
from graph200k.cli import main as graph200k_main
from graph200k.nodes import NodeRegistry, split_field
from graph200k.release_schema import KEY_COLUMN, MetadataShape, image_columns, sample_row
from graph200k.shardio import iter_samples
from tests import badinputs as bi

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
KEYS = ("78dc6506367d7aa43fe42a898abbfe4a", "0fdaecdb7906a1bf0d6e202363f15de3", "edit-data-00004-of-00022-3633")
EDIT_META = {"item": "mug", "caption": "A mug on a desk.", "collection": "collection_1",
             "quality": {"objectConsistency": 4, "imageQuality": 5}, "fill_edit": {"name": "a teapot"}}
COLUMN = {(c.stem, c.index): c.name for c in image_columns()}


def _column(field: str) -> str | None:
    split = split_field(field)
    return COLUMN.get(split[:2]) if split else None


def _annotate(input_path: Path, out: Path, *flags: str) -> int:
    return annotators_main(["run", "--input", str(input_path), "--out", str(out), "--annotators", "canny",
                            "--no-progress", *flags])


def _pack(dataset: Path) -> list[dict]:
    assert graph200k_main(["shards", "--dataset", str(dataset), "--holdout", "1", "--no-progress"]) == 0
    return [json.loads(line) for line in (dataset / "shards" / "index.jsonl").read_text().splitlines()]


def _samples(pack: Path) -> dict[str, dict]:
    return {s["__key__"]: s for tar in sorted(pack.glob("*.tar")) for s in iter_samples(tar)}


def _tree(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def demo(ray_local, tmp_path_factory):
    """Three demo samples (one given release-style metadata) annotated with canny, packed with one key held
    out, and exported as Arrow: (dataset folder, its index, the export folder)."""
    root = tmp_path_factory.mktemp("hf")
    inputs = root / "inputs"
    inputs.mkdir()
    for path in SAMPLES.iterdir():
        if path.name.split(".")[0] in KEYS:
            shutil.copy(path, inputs / path.name)
    (inputs / f"{KEYS[2]}.json").write_text(json.dumps(EDIT_META))
    dataset = root / "dataset"
    assert _annotate(inputs, dataset) == 0
    index = _pack(dataset)
    before = _tree(dataset)
    assert graph200k_main(["export", "--dataset", str(dataset), "--out", str(root / "hf"), "--no-progress"]) == 0
    assert _tree(dataset) == before  # nothing written into the dataset
    return dataset, index, root / "hf"


def test_export_loads_with_every_node_column_and_the_metadata(demo):
    from datasets import Image as HFImage, load_from_disk

    dataset, index, hf = demo
    splits = load_from_disk(str(hf))
    assert set(splits) == {"train", "heldout"}
    assert (splits["train"].num_rows, splits["heldout"].num_rows) == (2, 1)
    for column in image_columns():
        assert isinstance(splits["train"].features[column.name], HFImage), column.name
    packed = _samples(dataset / "shards")
    cells = {r[KEY_COLUMN]: (split, r) for split in splits for r in splits[split].with_format("arrow")[:].to_pylist()}
    assert sorted(cells) == sorted(e["key"] for e in index)
    for entry in index:
        split, cell = cells[entry["key"]]
        assert split == entry["split"]
        images = {f: _column(f) for f in entry["fields"] if f != "json"}
        assert None not in images.values()  # every packed image has its column
        assert {c for c in COLUMN.values() if cell[c] is not None} == set(images.values())
        for field, column in images.items():
            assert cell[column]["bytes"] == packed[entry["key"]][field]  # the shard's bytes, as they are
    rows = {r[KEY_COLUMN]: (split, r) for split in splits for r in splits[split]}
    assert isinstance(rows[KEYS[0]][1]["canny"], Image.Image) and rows[KEYS[0]][1]["canny"].mode == "L"
    fox = rows[KEYS[0]][1]
    assert {"target", "canny", "depth", "hed", "normal", "openpose", "sam2_mask", "foreground",
            "InstantStyle_image_0", "InstantStyle_ref_0"} <= {c for c in COLUMN.values() if fox[c] is not None}
    assert fox["description"]["description_0"].startswith("Ethereal digital illustration")
    edit = rows[KEYS[2]][1]
    assert edit["ref"] is not None and edit["FillEdit_image_0"] is not None
    assert edit["description"] == {"item": "mug", "description_0": "A mug on a desk."}
    assert edit["quality_assessment"]["objectConsistency"] == 4 and edit["collection"] == "collection_1"
    assert json.loads(edit["FillEdit_meta"]) == {"name": "a teapot"}
    assert "README.md" in {p.name for p in hf.iterdir()}
    assert "Provenance and licences" in (hf / "README.md").read_text()


def _same_samples(original: list[dict], again: list[dict]) -> None:
    by_key = {e["key"]: e for e in again}
    assert sorted(by_key) == sorted(e["key"] for e in original)
    for entry in original:
        assert by_key[entry["key"]]["nodes"] == entry["nodes"], entry["key"]
        assert by_key[entry["key"]]["fields"] == entry["fields"], entry["key"]
        assert by_key[entry["key"]]["split"] == entry["split"]


def test_importing_the_arrow_export_gives_back_the_same_samples(demo, tmp_path):
    dataset, index, hf = demo
    assert _annotate(hf, tmp_path / "again") == 0
    again = _pack(tmp_path / "again")
    _same_samples(index, again)
    first, second = _samples(dataset / "shards"), _samples(tmp_path / "again" / "shards")
    for key, sample in first.items():
        assert {f: v for f, v in sample.items() if f != "json"} == {f: v for f, v in second[key].items() if f != "json"}
        meta, back = json.loads(sample["json"]), json.loads(second[key]["json"])
        assert {k: back.get(k) for k in ("caption", "item", "quality", "fill_edit")} == \
               {k: meta.get(k) for k in ("caption", "item", "quality", "fill_edit")}


def test_parquet_export_loads_with_load_dataset_and_imports_back(demo, tmp_path):
    from datasets import load_dataset

    dataset, index, _ = demo
    out = tmp_path / "parquet"
    assert graph200k_main(["export", "--dataset", str(dataset), "--out", str(out), "--format", "parquet",
                           "--no-progress"]) == 0
    files = {s: str(out / "data" / f"{s}-*.parquet") for s in ("train", "heldout")}
    loaded = load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "cache"))
    assert {s: loaded[s].num_rows for s in loaded} == {"train": 2, "heldout": 1}
    assert loaded["train"].features["canny"].__class__.__name__ == "Image"
    assert "configs:" in (out / "README.md").read_text()
    assert _annotate(out, tmp_path / "again") == 0
    _same_samples(index, _pack(tmp_path / "again"))


def _image_text_dataset(path: Path, images: list[bytes]) -> None:
    from datasets import Dataset, Features, Image as HFImage, Value

    rows = {"image": [{"bytes": b, "path": None} for b in images], "text": [f"photo {i}" for i in range(len(images))]}
    Dataset.from_dict(rows, features=Features({"image": HFImage(), "text": Value("string")})).save_to_disk(str(path))


def test_generic_image_text_dataset_needs_the_column_flags(ray_local, tmp_path, capsys):
    generic = tmp_path / "generic"
    _image_text_dataset(generic, [bi.jpeg(bi.photo()), bi.png(bi.photo((64, 48)))])
    capsys.readouterr()
    assert _annotate(generic, tmp_path / "unmapped") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(generic) in err
    assert "columns seen: image, text" in err and "--image-col image --caption-col text" in err
    assert _annotate(generic, tmp_path / "wrong", "--image-col", "text") == 2
    assert "holds string, not images" in capsys.readouterr().err
    assert _annotate(generic, tmp_path / "missing", "--image-col", "picture") == 2
    assert "no column 'picture'" in capsys.readouterr().err

    out = tmp_path / "mapped"
    assert _annotate(generic, out, "--image-col", "image", "--caption-col", "text") == 0
    source = _samples(out / "source")
    assert sorted(source) == ["data-00000-of-00001-0", "data-00000-of-00001-1"]
    for i, key in enumerate(sorted(source)):
        assert {"target.jpg", "json"} <= set(source[key]) or {"target.png", "json"} <= set(source[key])
        assert json.loads(source[key]["json"])["caption"] == f"photo {i}"
    assert set(_samples(out / "nodes" / "canny")) == set(source)


def test_a_run_that_imports_nothing_and_its_pack_exit_non_zero(ray_local, tmp_path, capsys):
    broken = tmp_path / "broken"
    _image_text_dataset(broken, [b"not an image", b"nor this"])
    capsys.readouterr()
    out = tmp_path / "out"
    assert _annotate(broken, out, "--image-col", "image") == 1
    err = capsys.readouterr().err
    assert "no sample of" in err and "(0 of 2 succeeded)" in err
    assert graph200k_main(["shards", "--dataset", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nothing to pack" in err and "0 succeeded, 2 failed" in err
    assert not (out / "shards").exists()


# ------------------------------------------------------------------ without Ray


def test_export_refuses_bad_arguments_with_one_line(demo, tmp_path, capsys):
    dataset, _, hf = demo
    cases = [
        (["--dataset", str(tmp_path / "nope"), "--out", str(tmp_path / "x")], "does not exist"),
        (["--dataset", str(tmp_path), "--out", str(tmp_path / "x")], "graph200k shards --dataset"),
        (["--dataset", str(dataset), "--out", str(dataset / "hf")], "inside the dataset"),
        (["--dataset", str(dataset), "--out", str(hf)], "--overwrite"),
    ]
    for args, expected in cases:
        assert graph200k_main(["export", *args, "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err, err
    assert not (dataset / "hf").exists()


def test_overwrite_replaces_the_export_whole(demo, tmp_path):
    dataset, _, _ = demo
    out = tmp_path / "hf"
    out.mkdir()
    (out / "old.txt").write_text("from before")
    assert graph200k_main(["export", "--dataset", str(dataset / "shards"), "--out", str(out), "--overwrite",
                           "--no-progress"]) == 0  # the pack folder itself is accepted too
    assert not (out / "old.txt").exists() and (out / "dataset_dict.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["hf"]  # no temporary sibling left


def test_an_out_written_by_another_process_meanwhile_is_not_replaced(demo, tmp_path, monkeypatch, capsys):
    """Two exports to one --out: the one that finishes second without --overwrite refuses in one line and
    leaves the first one's export whole (the check at the start cannot see a run still building)."""
    from graph200k import export as export_module

    dataset, _, _ = demo
    out = tmp_path / "hf"
    real_publish = export_module._publish

    def other_export_finishes_first(tmp, target, overwrite):
        target.mkdir()
        (target / "theirs.txt").write_text("the other export")
        real_publish(tmp, target, overwrite)

    monkeypatch.setattr(export_module, "_publish", other_export_finishes_first)
    assert graph200k_main(["export", "--dataset", str(dataset), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "another process" in err and "--overwrite" in err, err
    assert [p.name for p in out.iterdir()] == ["theirs.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["hf"]  # no temporary sibling left


def test_sample_row_puts_each_field_in_its_release_column():
    sample = {"__key__": "k", "target.jpg": b"T", "reference.jpg": b"R", "foreground_mask.png": b"F",
              "instant_style.1.jpg": b"S", "instant_style_ref.1.jpg": b"SR", "grounded_bbox.png": b"B",
              "unknown.png": b"?",
              "json": json.dumps({"key": "k", "caption": "c", "grounding": {"boxes": []}, "seed": 3}).encode()}
    row, left = sample_row(sample, MetadataShape.of([json.loads(sample["json"])]))
    filled = {c: v["bytes"] for c, v in row.items() if isinstance(v, dict) and "bytes" in v}
    assert filled == {"target": b"T", "ref": b"R", "foreground": b"F", "InstantStyle_image_1": b"S",
                      "InstantStyle_ref_1": b"SR", "qwen_2_5_bounding_box": b"B"}
    assert left == ["unknown.png"]
    assert row["description"] == {"item": None, "description_0": "c"} and row["quality_assessment"] is None
    assert json.loads(row["qwen_2_5_meta"]) == {"boxes": []} and json.loads(row["json"]) == {"seed": 3}


def test_a_node_without_a_release_name_exports_and_imports_under_its_field_name():
    nodes = NodeRegistry([dataclasses.replace(n, details={}) if n.name == "fill_edit" else n for n in DEFAULT_NODES])
    names = [c.name for c in image_columns(nodes) if c.node == "fill_edit"]
    assert names == [f"fill_edit_{i}" for i in range(5)]
    assert release_column_role("fill_edit_3", nodes) == FieldRole("node", "fill_edit", 3)


def test_save_to_disk_cache_files_are_not_read(tmp_path):
    generic = tmp_path / "generic"
    _image_text_dataset(generic, [bi.jpeg(bi.photo())])
    shutil.copy(generic / "data-00000-of-00001.arrow", generic / "cache-0123456789abcdef.arrow")  # as .map() leaves
    assert [p.name for p in table_files(generic)] == ["data-00000-of-00001.arrow"]
    plan = plan_sources(generic, columns=ColumnMap("image", "text"))
    assert plan.num_inputs == 1 and plan.shards[0].columns == {"image": "image", "caption": "text"}
    with pytest.raises(InputError, match="folder input"):
        plan_sources(SAMPLES, columns=ColumnMap("image"))
