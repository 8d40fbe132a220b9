"""`python -m annotators run` end to end on a local Ray: inputs, imports, bad input, resume, availability."""

from __future__ import annotations

import io
import json
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import webdataset as wds
from PIL import Image

from annotators.perception.canny import CannyAnnotator
from annotators.registry import AnnotatorRegistry
from annotators.runner import AnnotatorUnavailable, RunConfig, collect_errors, run
from graph200k.decode import decode_image
from graph200k.shardio import iter_samples, read_stats
from tests import badinputs as bi
from tests.annotator_doubles import FailsOnGrey, HoughLines, LoadFails, MissingWeightsHed

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"


def _cfg(input, out, **kw):
    return RunConfig(input=Path(input), out=Path(out), progress=False, **kw)


def _tar_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.tar"))}


def _samples(tar: Path) -> dict[str, dict]:
    return {s["__key__"]: s for s in iter_samples(tar)}


@pytest.fixture(scope="module")
def demo(ray_local, tmp_path_factory):
    """samples/ annotated once for the module; tests that change it work on a copy."""
    out = tmp_path_factory.mktemp("demo") / "demo"
    summary = run(_cfg(SAMPLES, out, samples_per_shard=3, annotators=["canny"]))
    return out, summary


def _copy(demo, tmp_path) -> Path:
    out = tmp_path / "demo"
    shutil.copytree(demo[0], out)
    return out


def test_samples_folder_imports_nodes_and_computes_canny(demo):
    out, summary = demo
    assert (summary.inputs, summary.succeeded, summary.failed) == (8, 8, 0)
    assert summary.unmatched_files == ["README.md"]
    [row] = summary.annotators
    assert (row.annotator, row.status, row.shards, row.written, row.failed) == ("canny", "ran", 3, 8, 0)

    source = {k: v for tar in sorted((out / "source").glob("*.tar")) for k, v in _samples(tar).items()}
    assert len(source) == 8
    fox = source["78dc6506367d7aa43fe42a898abbfe4a"]
    for field in ("target.jpg", "json", "depth.jpg", "hed.jpg", "normal.jpg", "sam2_mask.jpg", "openpose.jpg",
                  "foreground_mask.jpg", "instant_style.0.jpg", "instant_style_ref.0.jpg"):
        assert field in fox, field
    assert "canny.png" not in fox
    assert json.loads(fox["json"])["caption"].startswith("Ethereal digital illustration")
    assert "grounded_mask.jpg" in source["0fdaecdb7906a1bf0d6e202363f15de3"]
    edit = source["edit-data-00004-of-00022-3633"]
    assert {"fill_edit.0.jpg", "reference.jpg"} <= set(edit)
    # imported bytes are kept as they were
    assert fox["depth.jpg"] == (SAMPLES / "78dc6506367d7aa43fe42a898abbfe4a.depth.jpg").read_bytes()

    canny = {k: v for tar in sorted((out / "nodes" / "canny").glob("*.tar")) for k, v in _samples(tar).items()}
    assert sorted(canny) == sorted(source)
    for key, sample in canny.items():
        assert set(sample) == {"__key__", "canny.png"}
        edges = Image.open(io.BytesIO(sample["canny.png"]))
        target = Image.open(io.BytesIO(source[key]["target.jpg"]))
        assert edges.mode == "L" and edges.size == target.size
    stats = read_stats(out / "nodes" / "canny" / "000000.tar")
    assert stats["annotator"] == "canny" and stats["model_id"] is None and stats["samples"] == 3


def test_rerun_skips_overwrite_redoes_with_identical_bytes(demo, tmp_path):
    out = _copy(demo, tmp_path)
    first = _tar_bytes(out)
    assert len([k for k in first if k.startswith("nodes/canny/")]) == 3
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.tar")}
    again = run(_cfg(SAMPLES, out, samples_per_shard=3, annotators=["canny"]))
    assert again.annotators[0].status == "up to date" and again.annotators[0].written == 8
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.tar")} == stamps
    redone = run(_cfg(SAMPLES, out, samples_per_shard=3, overwrite=True, annotators=["canny"]))
    assert redone.annotators[0].status == "ran"
    assert any(p.stat().st_mtime_ns != stamps[p] for p in stamps)
    assert _tar_bytes(out) == first


def test_adding_an_annotator_later_runs_only_it(demo, tmp_path):
    out = _copy(demo, tmp_path)
    canny_stats = {p: p.read_bytes() for p in (out / "nodes" / "canny").glob("*.stats.json")}
    summary = run(_cfg(SAMPLES, out, samples_per_shard=3), AnnotatorRegistry([CannyAnnotator, HoughLines]))
    status = {r.annotator: r.status for r in summary.annotators}
    assert status == {"canny": "up to date", "hough_lines": "ran"}
    assert {p: p.read_bytes() for p in (out / "nodes" / "canny").glob("*.stats.json")} == canny_stats
    lines = _samples(out / "nodes" / "mlsd" / "000000.tar")
    assert len(lines) == 3 and all("mlsd.png" in s for s in lines.values())
    assert read_stats(out / "nodes" / "mlsd" / "000000.tar")["inputs"]["canny"]


def test_changing_an_output_setting_redoes_shards_but_moving_weights_does_not(demo, tmp_path):
    out = _copy(demo, tmp_path)
    registry = AnnotatorRegistry([CannyAnnotator, HoughLines])
    first = run(_cfg(SAMPLES, out, samples_per_shard=3), registry)
    assert {r.annotator: r.status for r in first.annotators}["hough_lines"] == "ran"
    moved = run(_cfg(SAMPLES, out, samples_per_shard=3, settings={"hough_lines": {"model_dir": "/elsewhere"}}),
                registry)
    assert {r.annotator: r.status for r in moved.annotators}["hough_lines"] == "up to date"
    changed = run(_cfg(SAMPLES, out, samples_per_shard=3, settings={"hough_lines": {"threshold": "80"}}), registry)
    assert {r.annotator: r.status for r in changed.annotators}["hough_lines"] == "ran"
    assert read_stats(out / "nodes" / "mlsd" / "000000.tar")["settings"] == {"threshold": 80}


def test_unavailable_annotator_is_skipped_with_how_to_enable_and_strict_fails(demo, tmp_path):
    out = _copy(demo, tmp_path)
    registry = AnnotatorRegistry([CannyAnnotator, MissingWeightsHed])
    summary = run(_cfg(SAMPLES, out, samples_per_shard=3), registry)
    rows = {r.annotator: r for r in summary.annotators}
    assert rows["canny"].status == "up to date"
    skipped = rows["hed_missing_weights"]
    assert skipped.status == "skipped" and "not in the Hugging Face cache" in skipped.why
    assert "hf download lllyasviel/Annotators" in skipped.how_to_enable
    # Samples that came with a HED map keep it: the table counts them as imported, not 0.
    with_hed = {p.name.split(".")[0] for p in SAMPLES.glob("*.hed.*")}
    assert skipped.already_present == len(with_hed) > 0
    assert not (out / "nodes" / "hed").exists()
    with pytest.raises(AnnotatorUnavailable, match="hed_missing_weights"):
        run(_cfg(SAMPLES, tmp_path / "b", strict=True), registry)
    assert not (tmp_path / "b" / "source").exists()  # strict fails before any work


def test_cli_lists_annotators_and_rejects_bad_requests(tmp_path, capsys):
    from annotators.cli import main

    assert main(["list"]) == 0
    assert "canny" in capsys.readouterr().out
    assert main(["run", "--input", str(SAMPLES), "--out", str(tmp_path / "x"),
                 "--annotators", "no_such_annotator"]) == 2
    assert "unknown annotator 'no_such_annotator'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    (tmp_path / "empty").mkdir()
    assert main(["run", "--input", str(tmp_path / "empty"), "--out", str(tmp_path / "y"), "--annotators", "canny"]) == 2
    assert "holds no samples" in capsys.readouterr().err


def test_bad_inputs_end_annotated_or_in_the_errors_record(ray_local, tmp_path):
    folder = tmp_path / "in"
    bi.write_bad_folder(folder)
    out = tmp_path / "out"
    summary = run(_cfg(folder, out, annotators=["canny"]))
    n_inputs = len(bi.GOOD) + len(bi.BAD)
    assert summary.inputs == n_inputs == summary.succeeded + summary.failed
    assert (summary.succeeded, summary.failed) == (len(bi.GOOD), len(bi.BAD))
    errors = {e["source"]: e["reason"] for e in collect_errors(out)}
    for name, (_, words) in bi.BAD.items():
        assert words in errors[name], (name, errors.get(name))
    collided = {tuple(c["inputs"]): c["assigned"] for c in summary.collisions}
    assert collided[("dup.jpg", "dup.png")][0] == "dup" and collided[("dup.jpg", "dup.png")][1].startswith("dup-")
    assert collided[("a b.jpg", "a_b.jpg")][0] == "a_b"

    source = _samples(out / "source" / "000000.tar")
    canny = _samples(out / "nodes" / "canny" / "000000.tar")
    keys = {json.loads(s["json"])["source"]: k for k, s in source.items()}
    assert set(keys) == set(bi.GOOD)
    assert keys["café ünïcode.jpg"] == "cafe_unicode" and keys["holiday.2024.summer.jpg"] == "holiday_2024_summer"
    assert sorted(canny) == sorted(source)
    for key, sample in source.items():
        target = [f for f in sample if f.startswith("target.")][0]
        rgb = decode_image(sample[target])
        assert rgb.ndim == 3 and rgb.shape[2] == 3
        assert decode_image(canny[key]["canny.png"], "L").shape == rgb.shape[:2]
    rotated = decode_image(source[keys["rotated.jpg"]]["target.jpg"])
    assert rotated.shape[:2] == (96, 64)
    rgba = decode_image(source[keys["rgba.png"]]["target.png"])
    assert (rgba[:, rgba.shape[1] // 2:] == 255).all()
    assert Image.open(io.BytesIO(source[keys["cmyk.jpg"]]["target.jpg"])).mode == "RGB"
    assert decode_image(source[keys["tiny.png"]]["target.png"]).shape == (1, 1, 3)

    # a rerun keeps the accounting and writes nothing new
    again = run(_cfg(folder, out, annotators=["canny"]))
    assert (again.inputs, again.succeeded, again.failed) == (summary.inputs, summary.succeeded, summary.failed)


def test_annotator_failures_are_isolated_per_sample(ray_local, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("colour1", "colour2", "colour3"):
        (folder / f"{name}.jpg").write_bytes(bi.jpeg(bi.photo()))
    (folder / "grey.jpg").write_bytes(bi.grayscale_jpeg())
    summary = run(_cfg(folder, tmp_path / "out"), AnnotatorRegistry([FailsOnGrey]))
    row = summary.annotators[0]
    assert (row.written, row.failed, row.already_present) == (3, 1, 0)
    [error] = [e for e in collect_errors(tmp_path / "out") if e["stage"] == "canny"]
    assert error["key"] == "grey" and "grey image refused" in error["reason"]
    assert sorted(_samples(tmp_path / "out" / "nodes" / "canny" / "000000.tar")) == ["colour1", "colour2", "colour3"]


def test_an_annotator_whose_model_fails_to_load_is_reported_and_the_others_run(demo, tmp_path):
    out = _copy(demo, tmp_path)
    summary = run(_cfg(SAMPLES, out, samples_per_shard=3), AnnotatorRegistry([LoadFails, HoughLines, CannyAnnotator]))
    rows = {r.annotator: r for r in summary.annotators}
    assert rows["load_fails"].status == "failed" and "weights file is corrupt" in rows["load_fails"].why
    assert rows["hough_lines"].status == "ran" and rows["hough_lines"].written == 8
    assert not list((out / "nodes").glob("normal/*.stats.json"))


def test_imported_canny_is_not_recomputed(ray_local, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a", "b"):
        (folder / f"{name}.jpg").write_bytes(bi.jpeg(bi.photo()))
    (folder / "a.canny.png").write_bytes(bi.png(Image.new("L", (96, 64))))
    summary = run(_cfg(folder, tmp_path / "out", annotators=["canny"]))
    row = summary.annotators[0]
    assert (row.written, row.already_present) == (1, 1)
    assert sorted(_samples(tmp_path / "out" / "nodes" / "canny" / "000000.tar")) == ["b"]


def test_webdataset_input_with_the_same_field_names(ray_local, tmp_path):
    shards = tmp_path / "wds"
    shards.mkdir()
    photo = bi.jpeg(bi.photo())
    depth = bi.png(bi.photo().convert("L"))
    with wds.TarWriter(str(shards / "in-000000.tar")) as w:
        w.write({"__key__": "folder/one", "jpg": photo, "json": b'{"caption": "one"}', "depth.png": depth})
        w.write({"__key__": "folder/two", "jpg": photo, "reference.jpg": photo, "mask.png": bi.png(bi.photo())})
    with wds.TarWriter(str(shards / "in-000001.tar")) as w:
        w.write({"__key__": "three", "target.png": bi.png(bi.photo()), "txt": b"three\n",
                 "InstantStyle.0.jpg": photo, "InstantStyle_ref.0.jpg": photo})
    out = tmp_path / "out"
    summary = run(_cfg(shards, out, annotators=["canny"]))
    assert (summary.inputs, summary.succeeded) == (3, 3)
    first = _samples(out / "source" / "000000.tar")
    second = _samples(out / "source" / "000001.tar")
    assert set(first) == {"folder_one", "folder_two"} and set(second) == {"three"}
    assert "depth.png" in first["folder_one"] and json.loads(first["folder_one"]["json"])["caption"] == "one"
    assert {"reference.jpg", "grounded_mask.png"} <= set(first["folder_two"])
    assert {"target.png", "instant_style.0.jpg", "instant_style_ref.0.jpg"} <= set(second["three"])
    assert json.loads(second["three"]["json"])["caption"] == "three"
    assert set(_samples(out / "nodes" / "canny" / "000001.tar")) == {"three"}


def _release_like_arrow(path: Path) -> None:
    """A tiny dataset with the Graph200K release's columns and feature types, saved with `datasets`."""
    from datasets import Dataset, Features, Image as HFImage, Value

    photo = bi.jpeg(bi.photo())
    grey = bi.png(bi.photo().convert("L"))
    features = Features({
        "ref": HFImage(), "target": HFImage(), "canny": HFImage(), "depth": HFImage(),
        "qwen_2_5_mask": HFImage(), "qwen_2_5_bounding_box": HFImage(), "qwen_2_5_meta": Value("string"),
        "InstantStyle_image_0": HFImage(), "InstantStyle_ref_0": HFImage(),
        "FillEdit_image_0": HFImage(), "FillEdit_meta": Value("string"), "uniformer": HFImage(),
        "description": {"item": Value("string"), "description_0": Value("string")},
        "quality_assessment": {"objectConsistency": Value("int32"), "imageQuality": Value("int32")},
        "collection": Value("string"),
    })
    img = lambda data: {"bytes": data, "path": None}  # noqa: E731
    rows = {
        "ref": [img(photo), img(photo)], "target": [img(photo), img(photo)],
        "canny": [img(grey), None], "depth": [img(grey), img(grey)],
        "qwen_2_5_mask": [img(photo), None], "qwen_2_5_bounding_box": [img(photo), None],
        "qwen_2_5_meta": ['{"objects": ["cup"]}', None],
        "InstantStyle_image_0": [img(photo), None], "InstantStyle_ref_0": [img(photo), None],
        "FillEdit_image_0": [img(photo), None], "FillEdit_meta": ['{"name": "mug"}', None],
        "uniformer": [None, img(photo)],
        "description": [{"item": "cup", "description_0": "A cup on a table."}, {"item": "lamp", "description_0": "A lamp."}],
        "quality_assessment": [{"objectConsistency": 5, "imageQuality": 5}, {"objectConsistency": 2, "imageQuality": 4}],
        "collection": ["subjects200k", "subjects200k"],
    }
    Dataset.from_dict(rows, features=features).save_to_disk(str(path))


def test_graph200k_release_arrow_input(ray_local, tmp_path):
    release = tmp_path / "release" / "train"
    _release_like_arrow(release)
    out = tmp_path / "out"
    summary = run(_cfg(tmp_path / "release", out, annotators=["canny"]))
    assert (summary.inputs, summary.succeeded, summary.failed) == (2, 2, 0)
    source = _samples(out / "source" / "000000.tar")
    assert sorted(source) == ["data-00000-of-00001-0", "data-00000-of-00001-1"]
    first, second = source["data-00000-of-00001-0"], source["data-00000-of-00001-1"]
    assert {"target.jpg", "reference.jpg", "canny.png", "depth.png", "grounded_mask.jpg", "grounded_bbox.jpg",
            "instant_style.0.jpg", "instant_style_ref.0.jpg", "fill_edit.0.jpg"} <= set(first)
    assert "semantic_map.jpg" in second
    meta = json.loads(first["json"])
    assert meta["caption"] == "A cup on a table." and meta["item"] == "cup"
    assert meta["quality"]["objectConsistency"] == 5
    assert meta["fill_edit"] == {"name": "mug"} and meta["grounding"] == {"objects": ["cup"]}
    row = summary.annotators[0]
    assert (row.written, row.already_present) == (1, 1)  # the release's own canny is kept


def test_killed_run_resumes_to_the_same_bytes(ray_local, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    base = Image.open(SAMPLES / "78dc6506367d7aa43fe42a898abbfe4a.jpg").convert("RGB")
    for i in range(8):
        crop = base.crop((i * 16, i * 8, i * 16 + 512, i * 8 + 384))
        (folder / f"img{i:02d}.jpg").write_bytes(bi.jpeg(crop))
    reference = tmp_path / "uninterrupted"
    run(_cfg(folder, reference, samples_per_shard=2, annotators=["canny"]))
    expected = _tar_bytes(reference)
    assert len([k for k in expected if k.startswith("nodes/canny/")]) == 4

    address = ray_local.get_runtime_context().gcs_address
    out = tmp_path / "killed"
    for _ in range(3):  # the kill must land while canny shards are being written
        shutil.rmtree(out, ignore_errors=True)
        proc = subprocess.Popen(
            [sys.executable, "-m", "annotators", "run", "--input", str(folder), "--out", str(out),
             "--samples-per-shard", "2", "--workers", "1", "--annotators", "canny", "--address", address, "--no-progress"],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        done = []
        while proc.poll() is None:
            done = list((out / "nodes" / "canny").glob("*.stats.json"))
            if done:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
        proc.wait()
        if 0 < len(done) < 4:
            break
    else:
        pytest.fail("could not interrupt the run part-way in three tries")
    time.sleep(0.5)  # let Ray reap the killed job's actors
    for tar in out.rglob("*.tar"):  # whatever has a final name is a complete tar
        with tarfile.open(tar) as t:
            assert all(t.extractfile(m).read() is not None for m in t.getmembers())
    run(_cfg(folder, out, samples_per_shard=2, annotators=["canny"]))
    assert not list(out.rglob("*.partial-*"))
    assert _tar_bytes(out) == expected
