"""Per-sample accounting when reading inputs (issue 14): one unreadable file, tar member or Arrow cell fails
only its own sample, with the file named; inputs stay inside their folder; imported maps fit their target."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from annotators.inputs.fields import FieldRole
from annotators.inputs.ingest import RawSample, check_sample, write_source_shard
from annotators.runner import RunSummary, count_source_shards
from annotators.inputs.sources import plan_sources
from graph200k.catalog import DEFAULT_NODES
from graph200k.decode import normalise_image
from graph200k.shardio import iter_samples, read_errors
from tests import badinputs as bi

UNREADABLE = "/proc/self/mem"  # a regular file whose first page is unmapped: reading it raises EIO


def _ingest(input_path, out: Path, **plan_kw) -> tuple[dict, dict[str, dict], list[dict]]:
    """Plan and write every source shard; (summed stats, samples by key, error records)."""
    plan = plan_sources(input_path, **plan_kw)
    totals = {"inputs": 0, "succeeded": 0, "failed": 0, "field_errors": 0}
    samples, errors = {}, []
    for shard in plan.shards:
        stats = write_source_shard(shard, out)
        for k in totals:
            totals[k] += stats[k]
        tar = out / "source" / f"{shard.shard}.tar"
        samples.update({s["__key__"]: s for s in iter_samples(tar)})
        errors += read_errors(tar)
    return totals, samples, errors


def _counts(stats: dict) -> tuple[int, int, int, int]:
    return stats["inputs"], stats["succeeded"], stats["failed"], stats["field_errors"]


def test_an_unreadable_folder_file_fails_only_its_own_sample(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a", "c"):
        (folder / f"{name}.jpg").write_bytes(bi.jpeg(bi.photo()))
    (folder / "b.jpg").symlink_to(UNREADABLE)  # the target cannot be read: the sample fails
    (folder / "a.depth.png").symlink_to(UNREADABLE)  # an annotation cannot be read: only it is dropped
    stats, samples, errors = _ingest(folder, tmp_path / "out", follow_symlinks=True)
    assert _counts(stats) == (3, 2, 1, 1)
    assert sorted(samples) == ["a", "c"] and "depth.png" not in samples["a"]
    by_field = {(e["source"], e["field"]): e for e in errors}
    for source, field, name in (("b.jpg", "jpg", "b.jpg"), ("a.jpg", "depth.png", "a.depth.png")):
        error = by_field[(source, field)]
        assert error["file"] == str(folder / name) and "cannot read" in error["reason"], error


def test_a_failed_target_is_not_counted_as_a_dropped_field_and_every_record_names_its_source(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "broken.jpg").write_bytes(bi.truncated_jpeg())
    (folder / "ok.jpg").write_bytes(bi.jpeg(bi.photo()))
    (folder / "ok.json").write_bytes(b"{not json")
    stats, samples, errors = _ingest(folder, tmp_path / "out")
    assert _counts(stats) == (2, 1, 1, 1)  # one failed sample, one dropped field (the JSON)
    assert sorted(samples) == ["ok"]
    assert {(e["source"], e["field"]) for e in errors} == {("broken.jpg", "jpg"), ("ok.jpg", "json")}


def test_folder_symlinks_leading_out_of_the_input_are_refused_unless_followed(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("TOKEN-do-not-leak")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "z.jpg").write_bytes(bi.jpeg(bi.photo()))
    folder = tmp_path / "in"
    (folder / "pics").mkdir(parents=True)
    (folder / "x.jpg").write_bytes(bi.jpeg(bi.photo()))
    (folder / "x.txt").symlink_to(secret)  # a caption that is really a file outside
    (folder / "pics" / "real.jpg").write_bytes(bi.jpeg(bi.photo()))
    (folder / "y.jpg").symlink_to("pics/real.jpg")  # stays inside the input: fine
    (folder / "linked").symlink_to(elsewhere, target_is_directory=True)

    plan = plan_sources(folder)
    assert any(entry.startswith("linked") for entry in plan.unmatched), plan.unmatched
    stats, samples, errors = _ingest(folder, tmp_path / "out")
    assert _counts(stats) == (3, 3, 0, 1)
    assert sorted(samples) == ["pics_real", "x", "y"]
    assert all(b"TOKEN" not in value for s in samples.values() for value in s.values() if isinstance(value, bytes))
    [error] = errors
    assert (error["source"], error["field"], error["file"]) == ("x.jpg", "txt", str(folder / "x.txt"))
    assert "outside the input folder" in error["reason"] and "--follow-symlinks" in error["reason"]

    stats, samples, errors = _ingest(folder, tmp_path / "followed", follow_symlinks=True)
    assert _counts(stats) == (4, 4, 0, 0) and not errors
    assert json.loads(samples["x"]["json"])["caption"] == "TOKEN-do-not-leak"
    assert "linked_z" in samples


def test_a_tar_with_duplicate_out_of_order_and_link_members_keeps_every_good_sample(tmp_path):
    photo, other = bi.jpeg(bi.photo()), bi.jpeg(bi.photo((64, 96)))
    grey = bi.png(bi.photo().convert("L"))
    tar = bi.write_tar(tmp_path / "in.tar", [
        ("a.jpg", photo), ("a.json", b'{"caption": "a"}'),
        ("b.jpg", other),
        ("a.depth.png", grey),  # a again, later: merged
        ("c.jpg", photo), ("c.jpg", other),  # the same field twice, different bytes: c fails
        ("d.jpg", photo), ("d.canny.png", grey), ("d.canny.png", grey),  # an identical copy: harmless
        ("e.jpg", ("hardlink", "a.jpg")),  # GNU tar's second copy of a file
        ("f.jpg", ("symlink", "../../etc/passwd")),
        ("g.jpg", ("hardlink", "not-in-this-tar.jpg")),
        ("h.jpg", photo), ("h.json", ("symlink", "a.json")),
        ("README", b"no key, no field"),
    ])
    assert plan_sources(tar).unmatched == [f"{tar}#README"]
    stats, samples, errors = _ingest(tar, tmp_path / "out")
    assert _counts(stats) == (8, 5, 3, 1)
    assert sorted(samples) == ["a", "b", "d", "e", "h"]
    assert json.loads(samples["a"]["json"])["caption"] == "a" and samples["a"]["depth.png"] == grey
    assert samples["e"]["target.jpg"] == photo and samples["d"]["canny.png"] == grey
    reasons = {(e["source"], e["field"]): e for e in errors}
    clash = reasons[("c", "jpg")]
    assert "c.jpg" in clash["reason"] and "differ" in clash["reason"]
    assert "symbolic link" in reasons[("f", "jpg")]["reason"]
    assert "not-in-this-tar.jpg" in reasons[("g", "jpg")]["reason"]
    assert "symbolic link" in reasons[("h", "json")]["reason"]
    assert all(e["file"].startswith(f"{tar}#") for e in errors if "file" in e)


def _arrow(path: Path, targets: list[dict], canny: list[dict | None]) -> Path:
    """An Arrow file with Image columns whose cells may hold bytes or only a path."""
    import pyarrow as pa
    from datasets import Dataset, Features, Image as HFImage

    features = Features({"target": HFImage(), "canny": HFImage()})
    ds = Dataset.from_dict({"target": targets, "canny": canny}, features=features)
    table = ds.data.table
    path.parent.mkdir(parents=True, exist_ok=True)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return path


def test_arrow_cells_are_read_only_inside_the_arrow_folder_and_fail_one_by_one(tmp_path):
    photo = bi.jpeg(bi.photo())
    (tmp_path / "outside.jpg").write_bytes(photo)
    release = tmp_path / "release"
    (release / "imgs").mkdir(parents=True)
    (release / "imgs" / "ok.jpg").write_bytes(photo)
    cell = lambda data=None, path=None: {"bytes": data, "path": path}  # noqa: E731
    arrow = _arrow(release / "data.arrow", [
        cell(photo), cell(path="imgs/ok.jpg"), cell(path="missing.jpg"), cell(path=str(tmp_path / "outside.jpg")),
        cell(path="../outside.jpg"), cell(photo),
    ], [None, None, None, None, None, cell(path="gone.png")])
    stats, samples, errors = _ingest(arrow, tmp_path / "out")
    assert _counts(stats) == (6, 3, 3, 1)
    assert sorted(samples) == ["data-0", "data-1", "data-5"] and "canny.png" not in samples["data-5"]
    reasons = {e["source"]: e["reason"] for e in errors}
    assert "missing.jpg" in reasons["data.arrow#2"] and "cannot read" in reasons["data.arrow#2"]
    assert "absolute" in reasons["data.arrow#3"]
    assert "outside" in reasons["data.arrow#4"]
    assert "gone.png" in reasons["data.arrow#5"]


def test_an_input_that_breaks_after_planning_fails_its_planned_samples_not_the_run(tmp_path):
    photo = bi.jpeg(bi.photo())
    arrow = _arrow(tmp_path / "release" / "data.arrow", [{"bytes": photo, "path": None}] * 3, [None] * 3)
    plan = plan_sources(arrow)
    arrow.write_bytes(b"garbage, not Arrow")  # e.g. replaced or corrupted on the shared filesystem
    stats = write_source_shard(plan.shards[0], tmp_path / "out")
    assert _counts(stats) == (3, 0, 3, 0)
    errors = read_errors(tmp_path / "out" / "source" / "000000.tar")
    assert sorted(e["key"] for e in errors) == ["data-0", "data-1", "data-2"]
    assert all("could not be read" in e["reason"] for e in errors)


def test_the_summary_counts_planned_inputs_even_for_a_shard_that_did_not_complete(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(5):
        (folder / f"p{i}.jpg").write_bytes(bi.jpeg(bi.photo()))
    plan = plan_sources(folder, samples_per_shard=2)
    out = tmp_path / "out"
    write_source_shard(plan.shards[0], out)  # shards 1 and 2 died (disk full, killed worker, ...)
    summary = RunSummary(str(out))
    count_source_shards(summary, out, plan)
    assert (summary.inputs, summary.succeeded, summary.failed) == (5, 2, 3)


def test_phone_mpo_jpegs_stay_jpeg():
    plain = bi.mpo_jpeg()
    assert Image.open(io.BytesIO(plain)).format == "MPO"
    kept = normalise_image(plain)
    assert (kept.ext, kept.reencoded) == ("jpg", False)
    rotated = normalise_image(bi.mpo_jpeg(orientation=6))
    assert rotated.ext == "jpg" and rotated.reencoded and (rotated.width, rotated.height) == (64, 96)
    assert Image.open(io.BytesIO(rotated.data)).format == "JPEG"


def test_imported_maps_must_fit_their_target():
    target = bi.jpeg(bi.photo((256, 256)))
    sample = RawSample("k", "k.jpg", [
        (FieldRole("target"), "jpg", target),
        (FieldRole("node", "canny", 0), "canny.png", bi.png(Image.new("L", (100, 50)))),  # wrong shape
        (FieldRole("node", "depth", 0), "depth.png", bi.png(Image.new("L", (128, 128)))),  # same shape, half size
        (FieldRole("node", "reference", 0), "reference.jpg", bi.jpeg(bi.photo((100, 50)))),  # not a map
    ])
    fields, errors, _ = check_sample(sample, DEFAULT_NODES)
    assert sorted(fields) == ["depth.png", "json", "reference.jpg", "target.jpg"]
    [error] = errors
    assert error["field"] == "canny.png" and "100x50" in error["reason"] and "256x256" in error["reason"]


def test_a_run_that_lost_samples_exits_non_zero_and_says_where_the_list_is(ray_local, tmp_path, capsys):
    from annotators.cli import main

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.jpg").write_bytes(bi.jpeg(bi.photo()))
    (folder / "bad.jpg").symlink_to(UNREADABLE)
    out = tmp_path / "out"
    args = ["run", "--input", str(folder), "--out", str(out), "--annotators", "canny", "--no-progress",
            "--follow-symlinks"]
    assert main(args) == 1
    printed = capsys.readouterr().out
    assert "inputs: 2 = 1 succeeded + 1 failed" in printed and "lost: 1 failed sample(s)" in printed
    assert str(out / "source" / "000000.errors.jsonl") in printed
    [error] = read_errors(out / "source" / "000000.tar")
    assert error["source"] == "bad.jpg" and "cannot read" in error["reason"]
