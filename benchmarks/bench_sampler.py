"""Sampler throughput and memory: training grids per second and peak RSS for one worker, single thread.

Three measurements, each after a warm-up:

1. the default task mix (all 129 tasks, family weights 1, rows 1/2/3 at
   0.3/0.4/0.3) at 384 and 512, with the share of time spent decoding,
   degrading, resizing and composing (the rest: reading shards, planning,
   the prompt), and the process's peak RSS;
2. the reference's own table mix (bench_reference.md, "Item processor"): 9
   tasks x 1, 2, 3 rows, each cell timed separately, averaged over the 27
   cells as the reference averages them;
3. pool memory with Graph200K-sized samples (~5 MB encoded each, as a release
   import stores them): the bundled samples re-encoded at 1024 px with sensor-like
   noise, in shards built in a temp dir, at pool 200 and 1000 (`--pool-sizes`).
   The RSS growth is the peak RSS while the pool fills and grids are drawn minus
   the RSS before iterating; a pool that kept every sample's bytes would grow by
   pool size x sample size.

Cases 1 and 3 each run in a fresh interpreter (`--case`), so every peak RSS is
that case's own.

The baseline column is the reference implementation's published item-processor
figures on this machine class (3.9 grids/s at 384 over its task mix, about 3.8
at 512); the reference code is not available here, so it cannot be re-run in
this process. Acceptance: >= 3x the reference at 384.

Shards: data/demo/shards (`make shards`) when present, else the bundled
samples/ packed as tests/sampler_shards.py packs them (no Canny maps there, so
the Canny row of the reference mix is then left out and said so).

    python benchmarks/bench_sampler.py [--shards DIR] [--grids 150] [--cell-grids 8] [--pool-sizes 200 1000]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import io  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sampler import GridDataset  # noqa: E402
from sampler.shards import ShardError  # noqa: E402

REFERENCE = REPO.parent / "shared/reference/bench_reference.md"
DEMO_SHARDS = REPO / "data/demo/shards"
# The reference's published item-processor table (ms per grid), used when the file is not at hand.
PUBLISHED = {
    "canny+target": ((42, 94, 101), (42, 95, 101)),
    "depth+target": ((40, 85, 92), (44, 90, 96)),
    "reference+depth+target": ((23, 46, 71), (10, 18, 27)),
    "target+depth": ((39, 81, 121), (44, 105, 109)),
    "GaussianBlur+target": ((28, 95, 169), (12, 94, 148)),
    "Elastic+target": ((147, 721, 1200), (161, 725, 1129)),
    "SPNoise+target": ((334, 1057, 1631), (227, 1077, 2109)),
    "foreground+target": ((75, 152, 209), (76, 161, 227)),
    "reference+Inpainting+target": ((37, 64, 112), (19, 34, 47)),
}
STAGES = ("decode", "degrade", "resize", "compose")
MB = 1e6
# Graph200K-sized samples: images at 1024 px (long side), JPEG q97 with noise (sigma 12): ~5 MB a sample.
LARGE_SIDE, LARGE_QUALITY, LARGE_NOISE = 1024, 97, 12.0


def reference_table() -> dict[str, tuple[tuple[float, ...], tuple[float, ...]]]:
    """{task: ((ms@384 for rows 1..3), (ms@512 for rows 1..3))} from bench_reference.md."""
    if not REFERENCE.is_file():
        return PUBLISHED
    table: dict[str, tuple[list, list]] = {}
    for line in REFERENCE.read_text().splitlines():
        m = re.match(r"\|\s*([A-Za-z+_]+)\s*\|\s*(\d)\s*\|\s*([\d.]+)\s*\|\s*[\d.]+\s*\|\s*([\d.]+)\s*\|", line)
        if m:
            a, b = table.setdefault(m.group(1), ([], []))
            a.append(float(m.group(3)))
            b.append(float(m.group(4)))
    return {k: (tuple(a), tuple(b)) for k, (a, b) in table.items()} or PUBLISHED


def shards_dir(arg: str | None) -> tuple[str, str]:
    if arg:
        return arg, arg
    if DEMO_SHARDS.is_dir() and any(DEMO_SHARDS.glob("*.tar")):
        return str(DEMO_SHARDS), "data/demo/shards (make shards)"
    from tests.sampler_shards import pack

    out = Path(tempfile.mkdtemp(prefix="bench-sampler-"))
    pack(out, n_shards=2)
    return str(out), "samples/ packed by tests/sampler_shards.py"


def run(dataset: GridDataset, warmup: int, n: int) -> tuple[float, float, dict[str, float]]:
    """CPU and wall seconds per grid after `warmup` grids, and the seconds per grid of each stage.

    The process runs one thread, so its CPU time is what the wall time would be on an idle
    machine; it is the figure compared with the baseline (the wall time is printed beside it,
    as it inflates whenever other work shares the cores)."""
    it = iter(dataset)
    for _ in itertools.islice(it, warmup):
        pass
    before = Counter(dataset.renderer.timings)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in itertools.islice(it, n):
        pass
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    spent = {s: (dataset.renderer.timings[s] - before[s]) / n for s in STAGES}
    return cpu / n, wall / n, spent


def rss_now() -> int:
    """Resident set size of this process, in bytes (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss() -> int:
    """Peak resident set size of this process so far, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_case(case: dict) -> dict:
    """One measurement in this (fresh) process: grids/s, stage shares and RSS around the iteration."""
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    ds = GridDataset(case["shards"], resolution=case["resolution"], seed=case.get("seed", 0),
                     pool_size=case.get("pool_size", 1000))
    start = rss_now()
    per_grid, wall, spent = run(ds, case["warmup"], case["grids"])
    peak = peak_rss()
    return {"cpu_s_per_grid": per_grid, "wall_s_per_grid": wall, "spent": spent, "rss_start": start,
            "peak_rss": peak, "rss_growth": peak - start, "rss_end": rss_now()}


def in_fresh_process(case: dict) -> dict:
    """`run_case(case)` in a new interpreter, so its peak RSS is its own."""
    out = subprocess.run([sys.executable, __file__, "--case", json.dumps(case)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"benchmark case {case} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def large_records() -> list[dict]:
    """The bundled samples with every image re-encoded Graph200K-sized (1024 px, noisy JPEG q97)."""
    from tests.sampler_shards import sample_records

    rng = np.random.default_rng(0)
    out = []
    for record in sample_records():
        big = {}
        for name, value in record.items():
            if name in ("__key__", "json"):
                big[name] = value
                continue
            with Image.open(io.BytesIO(value)) as im:
                im = im.convert("L" if im.mode == "L" else "RGB")
                scale = LARGE_SIDE / max(im.size)
                im = im.resize((round(im.width * scale), round(im.height * scale)), Image.BICUBIC)
            pixels = np.asarray(im).astype(np.float32)
            pixels += rng.normal(0, LARGE_NOISE, pixels.shape).astype(np.float32)
            buf = io.BytesIO()
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=LARGE_QUALITY)
            big[name.rsplit(".", 1)[0] + ".jpg"] = buf.getvalue()
        out.append(big)
    return out


def large_shards(out: Path, n_samples: int, per_shard: int = 50) -> float:
    """`n_samples` Graph200K-sized samples (the bundled ones, cycled under new keys) in tars under
    `out`; returns their mean encoded size in bytes."""
    from tests.sampler_shards import with_key, write_shards

    base = large_records()
    records = [with_key(base[i % len(base)], f"{base[i % len(base)]['__key__']}-b{i}") for i in range(n_samples)]
    write_shards(out, records, max(1, n_samples // per_shard))
    return sum(len(v) for r in records for k, v in r.items() if k != "__key__") / n_samples


def to_task(name: str) -> str:
    """`reference+depth+target` -> `reference+depth->target` (either node spelling)."""
    *conds, target = name.split("+")
    return "+".join(conds) + "->" + target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", help="training shards (default: data/demo/shards, else the bundled samples)")
    parser.add_argument("--grids", type=int, default=150, help="timed grids per resolution, default mix")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--cell-grids", type=int, default=8, help="timed grids per (task, rows) of the reference mix")
    parser.add_argument("--pool-sizes", type=int, nargs="*", default=[200, 1000],
                        help="pool sizes of the Graph200K-sized memory case (none: skip it)")
    parser.add_argument("--pool-grids", type=int, default=60, help="timed grids of each pool memory case")
    parser.add_argument("--skip-reference-mix", action="store_true", help="leave out measurement 2")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: one measurement, in a fresh process
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return 0
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    shards, source = shards_dir(args.shards)
    table = reference_table()
    ref_mix = {res: sum(sum(v[i]) for v in table.values()) / (3 * len(table)) for i, res in enumerate((384, 512))}

    print(f"shards: {source}; one worker, one thread")
    print(f"\n{'default task mix':<18} {'grids/s':>8} {'ms/grid':>8} {'wall ms':>8} {'base/s':>7} {'speedup':>8}  "
          + "  ".join(f"{s:>8}" for s in STAGES) + f"  {'other':>8}  {'peak RSS':>9}")
    result = {"benchmark": "sampler", "threads": 1, "shards": source}
    for res in (384, 512):
        case = in_fresh_process({"shards": shards, "resolution": res, "warmup": args.warmup, "grids": args.grids})
        per_grid, wall, spent = case["cpu_s_per_grid"], case["wall_s_per_grid"], case["spent"]
        base = 1000 / ref_mix[res]
        shares = {s: spent[s] / wall for s in STAGES}  # stage timers are wall-clock
        other = 1 - sum(shares.values())
        print(f"{'resolution ' + str(res):<18} {1 / per_grid:8.1f} {per_grid * 1000:8.1f} {wall * 1000:8.1f} {base:7.1f} "
              f"{1 / per_grid / base:7.1f}x  " + "  ".join(f"{shares[s]:8.0%}" for s in STAGES) + f"  {other:8.0%}"
              f"  {case['peak_rss'] / MB:6.0f} MB")
        result[f"grids_per_s_{res}"] = round(1 / per_grid, 2)
        result[f"wall_grids_per_s_{res}"] = round(1 / wall, 2)
        result[f"baseline_grids_per_s_{res}"] = round(base, 2)
        result[f"speedup_{res}"] = round(1 / per_grid / base, 2)
        result[f"shares_{res}"] = {**{s: round(v, 3) for s, v in shares.items()}, "other": round(other, 3)}
        result[f"peak_rss_mb_{res}"] = round(case["peak_rss"] / MB)

    if args.pool_sizes:
        pool_memory(args, result)
    if not args.skip_reference_mix:
        reference_mix(args, shards, table, result)
    result["accepted"] = result["speedup_384"] >= 3.0
    print(json.dumps(result))
    return 0


def pool_memory(args, result: dict) -> None:
    """Measurement 3: RSS growth and grids/s with Graph200K-sized samples at each pool size."""
    print(f"\npool memory, Graph200K-sized samples, default mix at 384 ({args.pool_grids} grids after "
          f"{args.warmup} of warm-up)")
    print(f"{'pool':>6} {'MB/sample':>10} {'grids/s':>8} {'wall ms':>8} {'RSS start':>10} {'peak RSS':>9} "
          f"{'growth':>8} {'growth/sample':>14}")
    for pool in args.pool_sizes:
        tmp = Path(tempfile.mkdtemp(prefix="bench-sampler-large-"))
        try:
            size = large_shards(tmp, pool + args.warmup + args.pool_grids)
            case = in_fresh_process({"shards": str(tmp), "resolution": 384, "pool_size": pool,
                                     "warmup": args.warmup, "grids": args.pool_grids})
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        growth = case["rss_growth"]
        print(f"{pool:6d} {size / MB:10.2f} {1 / case['cpu_s_per_grid']:8.1f} {case['wall_s_per_grid'] * 1000:8.1f} "
              f"{case['rss_start'] / MB:7.0f} MB {case['peak_rss'] / MB:6.0f} MB {growth / MB:5.0f} MB "
              f"{growth / pool / MB:11.2f} MB")
        result[f"pool_{pool}"] = {"sample_mb": round(size / MB, 2),
                                  "grids_per_s": round(1 / case["cpu_s_per_grid"], 2),
                                  "rss_start_mb": round(case["rss_start"] / MB),
                                  "peak_rss_mb": round(case["peak_rss"] / MB),
                                  "rss_growth_mb": round(growth / MB)}
    print("growth: peak RSS minus the RSS before iterating (pool fill, warm-up and timed grids included)")


def reference_mix(args, shards: str, table: dict, result: dict) -> None:
    """Measurement 2: the reference's table mix at 384, cell by cell."""
    print("\nreference table mix at 384 (ms per grid; rows 1 / 2 / 3)")
    print(f"{'task':<30} {'ours':>20} {'reference':>20}")
    ours_ms, ref_ms, missing = [], [], []
    for name, (ref384, _) in table.items():
        row = []
        for rows in (1, 2, 3):
            ds = GridDataset(shards, resolution=384, seed=1, tasks=[to_task(name)], rows={rows: 1.0})
            try:
                per_grid, _, _ = run(ds, 2, args.cell_grids)
            except ShardError:  # the shards carry no sample for this task (e.g. no Canny maps)
                row = None
                break
            row.append(per_grid * 1000)
        if row is None:
            missing.append(name)
            print(f"{name:<30} {'(no sample carries it)':>20} {' / '.join(f'{v:.0f}' for v in ref384):>20}")
            continue
        ours_ms.extend(row)
        ref_ms.extend(ref384)
        print(f"{name:<30} {' / '.join(f'{v:.0f}' for v in row):>20} {' / '.join(f'{v:.0f}' for v in ref384):>20}")
    ours_mean, ref_mean = sum(ours_ms) / len(ours_ms), sum(ref_ms) / len(ref_ms)
    print(f"{'mean over the cells':<30} {ours_mean:20.1f} {ref_mean:20.1f}   "
          f"{1000 / ours_mean:.1f} vs {1000 / ref_mean:.1f} grids/s, {ref_mean / ours_mean:.1f}x")
    if missing:
        print(f"left out (no sample in these shards carries them): {', '.join(missing)}")
    print("grids/s and ms: CPU time of this single-threaded process (wall ms beside it); baseline = the "
          "reference implementation's published item-processor figures on this machine class "
          "(bench_reference.md); acceptance: >= 3x at 384 on the default mix")
    result.update(ref_mix_ms_384=round(ours_mean, 1), ref_mix_baseline_ms_384=round(ref_mean, 1),
                  ref_mix_speedup_384=round(ref_mean / ours_mean, 2), ref_mix_left_out=missing)


if __name__ == "__main__":
    raise SystemExit(main())
