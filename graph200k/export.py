"""`python -m graph200k export`: a packed dataset as a Hugging Face `datasets` dataset.

The export has the Graph200K release's columns (`graph200k.release_schema`):
one nullable `datasets.Image()` column per stored node instance, None where a
sample lacks it, the release's metadata columns, and `__key__` / `json` so that
`python -m annotators run --input <export>` gives back the same samples. It
reads the current pack of `DATASET/shards` (the `train-*.tar` and
`heldout-*.tar` of `python -m graph200k shards`) and writes one split per kind
of tar: `train` and, when the pack has a held-out split, `heldout`.

- `--format arrow`: `DatasetDict.save_to_disk(OUT)`; read it with
  `datasets.load_from_disk(OUT)`, publish it with `.push_to_hub(REPO)`.
- `--format parquet`: `OUT/data/<split>-<i>-of-<n>.parquet` (at most ~500 MB
  each, the Hub's layout) and a README whose `configs` name the splits; read
  it with `load_dataset("parquet", data_files=...)` or `load_dataset(OUT)`,
  or upload the folder as it is (`huggingface-cli upload REPO OUT --repo-type dataset`).

Both carry `README.md`: the pack's dataset card (counts, provenance,
licences). The export is built in a temporary sibling of OUT and renamed into
place when complete, so OUT is whole or absent whenever the run is killed.
Nothing is written into the dataset folder; a pack replaced while it is read
(`graph200k shards` ran meanwhile) fails the export, which can then be rerun.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sys
import tarfile
import uuid
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

from .catalog import DEFAULT_NODES
from .dataset_dir import PACK_CARD, PACK_INDEX, PACK_README, DatasetDir
from .layout import METADATA_FIELD
from .nodes import Graph200kError, NodeRegistry
from .release_schema import MetadataShape, features, image_columns, sample_row
from .shardio import PARTIAL, iter_samples

FORMATS = ("arrow", "parquet")
SPLITS = ("train", "heldout")  # a pack's tars: train-*.tar, heldout-*.tar (`--holdout`)
PARQUET_SHARD_BYTES = 500 * 10**6  # `push_to_hub`'s default max_shard_size
WRITER_BATCH = 64  # rows per Arrow record batch while building (images: a few MB a row)


class PackChanged(Graph200kError):
    """The pack was replaced (or its files removed) while the export read it."""


@dataclass
class ExportResult:
    out: Path
    format: str
    splits: dict[str, int]  # split -> samples
    column_counts: dict[str, int]  # image column -> samples with an image there
    unexported: Counter = field(default_factory=Counter)  # shard field -> samples whose field no column holds

    def load_hint(self) -> str:
        """How to read the export back, in Python."""
        if self.format == "arrow":
            return f"datasets.load_from_disk({str(self.out)!r})"
        files = {s: str(self.out / "data" / f"{s}-*.parquet") for s in self.splits}
        return f"datasets.load_dataset('parquet', data_files={files!r})"


def find_pack(dataset: Path) -> Path:
    """The pack folder of `dataset` (its `shards`, followed to the generation it links to), or `dataset`
    itself when it is a pack folder."""
    for candidate in (DatasetDir(dataset).packed, dataset):
        if (candidate / PACK_CARD).is_file() and (candidate / PACK_INDEX).is_file():
            return Path(os.path.realpath(candidate))
    if not dataset.is_dir():
        raise Graph200kError(f"--dataset {dataset} does not exist: give a dataset folder written by "
                             "`python -m annotators run` and packed by `python -m graph200k shards`")
    raise Graph200kError(f"--dataset {dataset} has no packed shards ({DatasetDir(dataset).packed}/{PACK_CARD} "
                         f"is missing): run `python -m graph200k shards --dataset {dataset}` first")


def _check_out(out: Path, dataset: Path, pack: Path, overwrite: bool) -> None:
    if not out.name or out.name in (".", ".."):
        raise Graph200kError(f"--out {out} names no folder: give one, e.g. {dataset.name}-hf")
    real = os.path.realpath(out)
    for inside in (os.path.realpath(dataset), str(pack)):
        if real == inside or real.startswith(inside.rstrip(os.sep) + os.sep):
            raise Graph200kError(f"--out {out} is inside the dataset {inside}: export writes nothing there; "
                                 "choose a folder outside it")
    if out.exists() or out.is_symlink():
        if not out.is_dir() or out.is_symlink():
            raise Graph200kError(f"--out {out} exists and is not a folder: remove it or choose another --out")
        if not overwrite and any(out.iterdir()):
            raise Graph200kError(f"--out {out} exists and is not empty: pass --overwrite to replace it, "
                                 "or choose another --out")


def _pack_tars(pack: Path) -> list[tuple[str, Path]]:
    """(split, tar) of every tar the pack's card lists, train first."""
    card = json.loads((pack / PACK_CARD).read_text(encoding="utf-8"))
    tars = [(s.get("split", "train"), pack / s["name"]) for s in card.get("shards", [])]
    unknown = sorted({split for split, _ in tars} - set(SPLITS))
    if unknown:
        raise Graph200kError(f"{pack / PACK_CARD} lists shards of split(s) {unknown}; this version exports "
                             f"{', '.join(SPLITS)}: repack with `python -m graph200k shards`")
    return sorted(tars, key=lambda t: (SPLITS.index(t[0]), t[1].name))


def _metadata(tar: Path) -> list[dict]:
    """Each sample's metadata (`json` field) in tar order, reading no image."""
    metas = []
    with tarfile.open(tar, mode="r") as archive:
        for member in archive.getmembers():
            key, _, name = member.name.rpartition("/")[2].partition(".")
            if member.isfile() and name.lower() == METADATA_FIELD:
                metas.append(json.loads(archive.extractfile(member).read()))
    return metas


@contextmanager
def _pack_still_there(pack: Path) -> Iterator[None]:
    try:
        yield
    except (FileNotFoundError, tarfile.ReadError) as err:
        raise PackChanged(f"the pack {pack} changed while it was exported ({type(err).__name__}: {err}); "
                          "a `graph200k shards` ran meanwhile? run the export again") from None


def _remove_dead_partials(out: Path) -> None:
    """Temporary siblings left by killed exports to `out` (their process is gone)."""
    mine = re.compile(re.escape(out.name) + re.escape(PARTIAL) + r"(\d+)-[0-9a-f]{8}")
    if not out.parent.is_dir():
        return
    for path in out.parent.iterdir():
        match = mine.fullmatch(path.name)
        if match and path.is_dir() and not path.is_symlink() and not _alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def _datasets_quiet() -> Iterator[None]:
    """`datasets`' own progress bars off while it copies what this module already counts."""
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            enable_progress_bars()


def export(dataset: str | os.PathLike, out: str | os.PathLike, fmt: str = "arrow", overwrite: bool = False,
           progress: bool = True, nodes: NodeRegistry = DEFAULT_NODES) -> ExportResult:
    """Write the current pack of `dataset` as a `datasets` dataset in `out` (`fmt`: arrow or parquet)."""
    if fmt not in FORMATS:
        raise Graph200kError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    dataset, out = Path(dataset), Path(out)
    pack = find_pack(dataset)
    _check_out(out, dataset, pack, overwrite)
    tars = _pack_tars(pack)
    with _pack_still_there(pack):
        metas = {tar: _metadata(tar) for _, tar in tars}
    total = sum(len(m) for m in metas.values())
    if total == 0:
        raise Graph200kError(f"the pack {pack} holds no sample: nothing to export (see its {PACK_README})")
    shape = MetadataShape.of(m for ms in metas.values() for m in ms)
    feats = features(shape, nodes)
    _remove_dead_partials(out)
    tmp = out.with_name(f"{out.name}{PARTIAL}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        result = ExportResult(out, fmt, {}, {c.name: 0 for c in image_columns(nodes)})
        build = tmp / ".build"
        with _datasets_quiet():
            built = _build(tars, metas, shape, feats, build, nodes, result, progress, pack)
            _write(built, tmp, fmt)
        shutil.rmtree(build)
        (tmp / "README.md").write_text(_readme(pack, result), encoding="utf-8")
        _publish(tmp, out, overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def _build(tars: list[tuple[str, Path]], metas: dict[Path, list[dict]], shape: MetadataShape, feats, build: Path,
           nodes: NodeRegistry, result: ExportResult, progress: bool, pack: Path) -> dict[str, Path]:
    """One Arrow file per split under `build`, rows in pack order."""
    from datasets.arrow_writer import ArrowWriter

    build.mkdir()
    files: dict[str, Path] = {}
    writers: dict[str, ArrowWriter] = {}
    bar = tqdm(total=sum(len(m) for m in metas.values()), desc="exporting", unit="sample", disable=not progress,
               file=sys.stderr)
    try:
        with _pack_still_there(pack):
            for split, tar in tars:
                if split not in writers:
                    files[split] = build / f"{split}.arrow"
                    writers[split] = ArrowWriter(features=feats, path=str(files[split]),
                                                 writer_batch_size=WRITER_BATCH)
                count = 0
                for sample in iter_samples(tar):
                    row, left = sample_row(sample, shape, nodes)
                    writers[split].write(row)
                    result.unexported.update(left)
                    for column, cell in row.items():
                        if isinstance(cell, dict) and column in result.column_counts:
                            result.column_counts[column] += 1
                    count += 1
                    bar.update()
                if count != len(metas[tar]):
                    raise PackChanged(f"{tar} held {len(metas[tar])} samples, then {count}: the pack changed while "
                                      "it was exported; run the export again")
                result.splits[split] = result.splits.get(split, 0) + count
        for writer in writers.values():
            writer.finalize()
    finally:
        for writer in writers.values():
            writer.close()
        bar.close()
    return files


def _write(built: dict[str, Path], tmp: Path, fmt: str) -> None:
    from datasets import Dataset, DatasetDict

    splits = DatasetDict({split: Dataset.from_file(str(path)) for split, path in built.items()})
    if fmt == "arrow":
        splits.save_to_disk(str(tmp))
        return
    for split, ds in splits.items():
        n = max(1, math.ceil(ds.data.nbytes / PARQUET_SHARD_BYTES))
        for i in range(n):
            ds.shard(num_shards=n, index=i, contiguous=True).to_parquet(
                str(tmp / "data" / f"{split}-{i:05d}-of-{n:05d}.parquet"))


def _readme(pack: Path, result: ExportResult) -> str:
    """The pack's dataset card, under a Hub header (`configs` tell `load_dataset` the parquet splits)."""
    header = ["---", "pretty_name: Graph200K-format dataset (graph200k-toolkit export)"]
    if result.format == "parquet":
        header += ["configs:", "- config_name: default", "  data_files:"]
        for split in result.splits:
            header += [f"  - split: {split}", f"    path: data/{split}-*.parquet"]
    header += ["---", ""]
    columns = [f"`{c}` {n}" for c, n in result.column_counts.items() if n]
    generation = json.loads((pack / PACK_CARD).read_text(encoding="utf-8")).get("generation", "-")
    load = ('`datasets.load_from_disk("THIS_FOLDER")`' if result.format == "arrow" else
            '`datasets.load_dataset("THIS_FOLDER")` (or the Hub repo it is uploaded to)')
    intro = [f"Exported by `python -m graph200k export --format {result.format}` from pack generation "
             f"{generation}: " + ", ".join(f"{s} {n} samples" for s, n in result.splits.items()) + ".",
             f"Read it with {load}.", "",
             "Columns: the Graph200K release's (one image per node instance, None where a sample lacks it; "
             "`description`, `quality_assessment`, `collection`, per-node metadata as JSON strings), "
             "`__key__` (the sample key) and `json` (the sample's other metadata). Images with samples: "
             + ", ".join(columns) + ".", ""]
    card = (pack / PACK_README).read_text(encoding="utf-8") if (pack / PACK_README).is_file() else ""
    return "\n".join(header + intro) + "\n" + card


def _publish(tmp: Path, out: Path, overwrite: bool) -> None:
    """Rename the complete `tmp` to `out`; an existing `out` (`--overwrite`) is moved aside first and removed
    after, so a kill in between leaves both beside `out`, never a mix."""
    for path in tmp.rglob("*"):
        if path.is_file():
            with open(path, "rb+") as f:
                os.fsync(f.fileno())
    aside = None
    if out.exists() or out.is_symlink():
        if not overwrite and (not out.is_dir() or any(out.iterdir())):  # written since `_check_out`
            raise Graph200kError(f"--out {out} was written by another process while this export ran (another "
                                 f"export?); nothing was replaced: rerun with --overwrite to replace it")
        aside = out.with_name(f"{out.name}{PARTIAL}{os.getpid()}-{uuid.uuid4().hex[:8]}")
        os.replace(out, aside)
    try:
        os.replace(tmp, out)
    except OSError as err:  # another export put its own in place at the same moment
        raise Graph200kError(f"--out {out}: the export could not be put in place ({err.strerror}); another "
                             f"process wrote it at the same time: rerun") from None
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
