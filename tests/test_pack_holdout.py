"""`graph200k shards --holdout`: a held-out split by key hash, the trainer's rule, stable as the dataset grows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from graph200k.cli import main
from graph200k.holdout import holdout_score, is_held_out
from graph200k.nodes import Graph200kError
from graph200k.pack_holdout import parse_holdout
from graph200k.packing import pack
from sampler.shards import TarIndex, resolve_shards
from tests import badinputs as bi
from tests.test_packing import build


def _photos(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"s{i:02d}.jpg").write_bytes(bi.jpeg(bi.photo((64 + 4 * i, 48))))
        (folder / f"s{i:02d}.json").write_text(json.dumps({"caption": f"photo {i}"}))
    return folder


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> tuple[Path, Path]:
    """The same 12 photos, and a superset of 20 (the 12 plus 8 added), each annotated with canny."""
    root = tmp_path_factory.mktemp("holdout")
    build(_photos(root / "small", 12), root / "ds12", per_shard=4)
    build(_photos(root / "large", 20), root / "ds20", per_shard=4)
    return root / "ds12", root / "ds20"


def _shards(dataset: Path, *args: str) -> dict:
    assert main(["shards", "--dataset", str(dataset), "--no-progress", "--max-shard-size", "20000", *args]) == 0
    return json.loads((dataset / "shards" / "dataset.json").read_text())


def _index(dataset: Path) -> dict[str, dict]:
    lines = (dataset / "shards" / "index.jsonl").read_text().splitlines()
    return {e["key"]: e for e in map(json.loads, lines)}


def _keys_read(spec: str) -> set[str]:
    """The keys the sampler reads from a shard pattern (with the pack's index check)."""
    return {entry.name for path in resolve_shards(spec) for entry in TarIndex(path).samples}


def test_fraction_split_is_the_trainers_rule_and_survives_added_images(datasets):
    small, large = datasets
    card = _shards(small, "--holdout", "0.35")
    index = _index(small)
    split = {k: e["split"] for k, e in index.items()}
    assert split == {k: "heldout" if is_held_out(k, 0.35) else "train" for k in index}  # = validation.holdout
    held = {k for k, s in split.items() if s == "heldout"}
    assert held and len(held) < len(index)  # both sides present with these keys
    out = small / "shards"
    assert _keys_read(str(out / "train-*.tar")) == set(index) - held
    assert _keys_read(str(out / "heldout-*.tar")) == held
    assert all(e["shard"].startswith(e["split"] + "-") for e in index.values())
    assert card["splits"] == {"train": {"samples": len(index) - len(held),
                                        "shards": len(list(out.glob("train-*.tar")))},
                              "heldout": {"samples": len(held), "shards": len(list(out.glob("heldout-*.tar")))}}
    assert sum(s["samples"] for s in card["shards"] if s["split"] == "heldout") == len(held)
    canny = next(t for t in card["tasks"] if t["id"] == "canny->target")
    assert (canny["samples"], canny["heldout_samples"]) == (len(index), len(held))
    assert "## Splits" in (out / "README.md").read_text()

    _shards(large, "--holdout", "0.35")
    grown = _index(large)
    assert set(index) < set(grown)
    assert all(grown[k]["split"] == split[k] for k in index)  # no old key changed sides
    assert _shards(small, "--holdout", "0.35")["splits"] == card["splits"]  # deterministic
    assert {k: e["split"] for k, e in _index(small).items()} == split


def test_count_takes_the_lowest_scores_and_named_keys_join_them(datasets, tmp_path):
    small, _ = datasets
    card = _shards(small, "--holdout", "3")
    index = _index(small)
    lowest = set(sorted(index, key=holdout_score)[:3])
    assert {k for k, e in index.items() if e["split"] == "heldout"} == lowest
    assert card["holdout"]["count"] == 3 and card["splits"]["heldout"]["samples"] == 3

    extra = next(k for k in sorted(index) if k not in lowest)
    named = tmp_path / "keys.txt"
    named.write_text(f"# validation keys\n{extra}\nnot-a-key\n")
    _shards(small, "--holdout", "3", "--holdout-keys", str(named))
    assert {k for k, e in _index(small).items() if e["split"] == "heldout"} == lowest | {extra}
    _shards(small, "--holdout-keys", str(named))
    assert {k for k, e in _index(small).items() if e["split"] == "heldout"} == {extra}


def test_no_holdout_writes_no_heldout_tars(datasets, tmp_path):
    small, _ = datasets
    copy = tmp_path / "copy"
    shutil.copytree(small, copy, symlinks=True)
    for args in ([], ["--holdout", "0"]):
        card = _shards(copy, *args)
        out = copy / "shards"
        assert not list(out.glob("heldout-*.tar")) and list(out.glob("train-*.tar"))
        assert card["splits"]["heldout"] == {"samples": 0, "shards": 0}
        assert card["splits"]["train"]["samples"] == card["samples"]
    assert pack(copy, progress=False).card["splits"]["heldout"]["samples"] == 0  # the Python API's default too


@pytest.mark.parametrize("text, words", [
    ("1.5", "whole number"), ("-0.1", "within [0, 1)"), ("ten", "a key count"), ("1e3", "whole number"),
])
def test_bad_holdout_values_are_named(text, words, capsys):
    with pytest.raises(Graph200kError, match=words.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        parse_holdout(text)
    assert main(["shards", "--dataset", "/nonexistent", "--holdout", text]) == 2
    assert f"--holdout {text!r}" in capsys.readouterr().err


def test_a_missing_or_empty_keys_file_is_named(tmp_path):
    with pytest.raises(Graph200kError, match="cannot read"):
        parse_holdout(None, tmp_path / "absent.txt")
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    with pytest.raises(Graph200kError, match="names no key"):
        parse_holdout(None, tmp_path / "empty.txt")
    assert parse_holdout("0").empty and parse_holdout(None).empty
    assert parse_holdout("0.25").fraction == 0.25 and parse_holdout("40").count == 40
