"""Training shards packed from the bundled real Graph200K samples (`samples/`), for the sampler tests.

Follows docs/ARCHITECTURE.md "Contract: training shards": one webdataset sample
per source image, node fields named by `graph200k` storage (the bundled files use
Graph200K's spellings; their bytes are kept as imported, JPEG, as `make shards`
keeps imported annotations), and a `json` record with key, caption, item and
quality. Written with `webdataset.TarWriter`, as `make shards` does.
No Canny maps: the bundled samples carry none (the annotators compute them),
so Canny tasks are ones this data cannot serve.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import webdataset as wds

from graph200k import DEFAULT_NODES

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
IMAGE_EXTS = {"jpg", "jpeg", "png", "webp"}


def _field_stem(name: str) -> str:
    """Graph200K or canonical spelling of a bundled annotation -> its shard field."""
    pair = name.lower().endswith("_ref")
    storage = DEFAULT_NODES.get(name[:-4] if pair else name).storage
    return storage.pair_field if pair else storage.field


def sample_records() -> list[dict]:
    """The webdataset records of the bundled samples, in key order."""
    files: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(SAMPLES.iterdir()):
        if path.is_file() and "." in path.name and path.suffix != ".md":
            files[path.name.split(".", 1)[0]].append(path)
    if not files:
        raise FileNotFoundError(f"no bundled samples found under {SAMPLES}")
    records = []
    for key, paths in sorted(files.items()):
        record: dict = {"__key__": key}
        meta = {"item": "", "caption": "", "quality": {}}
        for path in paths:
            parts = path.name.split(".")[1:]
            ext = parts[-1].lower()
            if parts == ["json"]:
                meta.update(json.loads(path.read_text()))
            elif len(parts) == 1 and ext in IMAGE_EXTS:
                record[f"target.{ext}"] = path.read_bytes()
            elif ext in IMAGE_EXTS:
                record[".".join([_field_stem(parts[0]), *parts[1:]])] = path.read_bytes()
        meta["key"] = key
        record["json"] = json.dumps(meta).encode()
        records.append(record)
    return records


def write_shards(out_dir: Path, records: list[dict], n_shards: int) -> list[Path]:
    """Deal `records` round-robin into `n_shards` tars under `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"train-{i:05d}.tar" for i in range(n_shards)]
    writers = [wds.TarWriter(str(p)) for p in paths]
    try:
        for i, rec in enumerate(records):
            writers[i % n_shards].write(rec)
    finally:
        for w in writers:
            w.close()
    return paths


def with_key(record: dict, key: str, **meta) -> dict:
    """A copy of `record` under another key (and json fields updated)."""
    out = dict(record)
    out["__key__"] = key
    info = json.loads(record["json"])
    info.update(meta, key=key)
    out["json"] = json.dumps(info).encode()
    return out


def pack(out_dir: Path, n_shards: int = 3, copies: int = 1) -> list[Path]:
    """The bundled samples, `copies` times each (keys suffixed `-c<i>`), in `n_shards` tars."""
    base = sample_records()
    records = base if copies == 1 else [with_key(r, f"{r['__key__']}-c{c}") for c in range(copies) for r in base]
    return write_shards(out_dir, records, n_shards)
