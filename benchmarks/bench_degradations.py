"""Degradation speed: median ms per call, single thread, at 512 and 1024 px.

Times are CPU time of this (single-threaded) process, `time.process_time`: on a
quiet machine that equals wall time for these calls, and on a shared machine it
leaves out the time spent waiting for a core (the JSON line also has the wall
sums).

Per degradation: the median over random draws (severity and sub-method drawn as
in training) at 512x512 and 1024x1024, and the worst variant at 1024x1024 (every
severity x sub-method, the median of a few draws each): the acceptance rule is
that no variant exceeds 60 ms and that one of each sums to at most ~1.1 s at 1024.
The baseline column is the reference implementation's published figure on this
machine class (../shared/reference/bench_reference.md, measured the same way);
the reference code is not available here, so it cannot be re-run in this process.

    python benchmarks/bench_degradations.py [--draws 9] [--variant-draws 3] [--image PATH]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from graph200k import DEFAULT_NODES, DEGRADATION_NAMES  # noqa: E402
from sampler.degradations import degrade, degrade_variant, variants  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO.parent / "shared/fixtures/graph200k-samples/2b74476568f7562a6aa832d423132ed3/target.jpg"
REFERENCE = REPO.parent / "shared/reference/bench_reference.md"
LIMIT_MS = 60.0


def reference_figures(path: Path) -> dict[str, tuple[float, float]]:
    """{canonical name: (ms at 512, ms at 1024)} from the reference's published table."""
    if not path.is_file():
        return {}
    figures = {}
    for line in path.read_text().splitlines():
        m = re.match(r"\|\s*([A-Za-z0-9_]+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|", line)
        if m:
            try:
                figures[DEFAULT_NODES.get(m.group(1)).name] = (float(m.group(2)), float(m.group(3)))
            except ValueError:
                continue
    return figures


CLOCKS = {"wall_ms": 0.0, "cpu_ms": 0.0}  # over every timed call: how much the machine made us wait


def timed(fn) -> float:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    cpu_ms = (time.process_time() - cpu) * 1000
    CLOCKS["wall_ms"] += (time.perf_counter() - wall) * 1000
    CLOCKS["cpu_ms"] += cpu_ms
    return cpu_ms


def median_random(image: np.ndarray, name: str, draws: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    return float(np.median([timed(lambda: degrade(image, name, rng)) for _ in range(draws)]))


def worst_variant(image: np.ndarray, name: str, draws: int, seed: int) -> tuple[float, str]:
    worst, label = 0.0, ""
    for severity, method in variants(name):
        rng = np.random.default_rng(seed)
        ms = float(np.median([timed(lambda: degrade_variant(image, name, rng, severity=severity, method=method))
                              for _ in range(draws)]))
        if ms > worst:
            worst, label = ms, " ".join(x for x in (f"s{severity}" if severity else "", method or "") if x)
    return worst, label or "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default=str(FIXTURE), help="a photo, resized to 512 and 1024 (default: a fixture)")
    parser.add_argument("--draws", type=int, default=9, help="random draws per degradation and size")
    parser.add_argument("--variant-draws", type=int, default=3, help="draws per severity x method at 1024")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    source = Image.open(args.image).convert("RGB")
    images = {n: np.asarray(source.resize((n, n), Image.LANCZOS)) for n in (512, 1024)}
    cold = {}
    for name in DEGRADATION_NAMES:  # first calls fill the per-size caches (maps, tables)
        cold[name] = max(timed(lambda: degrade_variant(images[1024], name, np.random.default_rng(0),
                                                      severity=s, method=m)) for s, m in variants(name))
        degrade(images[512], name, np.random.default_rng(0))
    baseline = reference_figures(REFERENCE)
    rows, totals = [], {"512": 0.0, "1024": 0.0}
    CLOCKS.update(wall_ms=0.0, cpu_ms=0.0)
    for i, name in enumerate(DEGRADATION_NAMES):
        ms512 = median_random(images[512], name, args.draws, i)
        ms1024 = median_random(images[1024], name, args.draws, i)
        worst, label = worst_variant(images[1024], name, args.variant_draws, i)
        totals["512"] += ms512
        totals["1024"] += ms1024
        rows.append({"name": name, "ms_512": round(ms512, 2), "ms_1024": round(ms1024, 2),
                     "worst_1024": round(worst, 2), "worst_variant": label, "cold_1024": round(cold[name], 2),
                     "baseline_512": baseline.get(name, (None, None))[0],
                     "baseline_1024": baseline.get(name, (None, None))[1]})

    def ratio(base, ours):
        return f"{base / ours:6.1f}x" if base and ours else "   n/a"

    print(f"{'degradation':<20} {'512 ms':>7} {'base':>6} {'speedup':>7} | {'1024 ms':>7} {'base':>6} "
          f"{'speedup':>7} | {'worst 1024':>10} {'variant':<16} {'cold':>6}")
    for r in rows:
        flag = "  OVER 60 ms" if r["worst_1024"] > LIMIT_MS else ""
        print(f"{r['name']:<20} {r['ms_512']:7.2f} {r['baseline_512'] or 0:6.1f} {ratio(r['baseline_512'], r['ms_512'])} | "
              f"{r['ms_1024']:7.2f} {r['baseline_1024'] or 0:6.1f} {ratio(r['baseline_1024'], r['ms_1024'])} | "
              f"{r['worst_1024']:10.2f} {r['worst_variant']:<16} {r['cold_1024']:6.1f}{flag}")
    base_sum = {k: round(sum(r[f"baseline_{k}"] or 0 for r in rows), 1) for k in ("512", "1024")}
    print(f"{'sum, one of each':<20} {totals['512']:7.1f} {base_sum['512']:6.0f} {ratio(base_sum['512'], totals['512'])} | "
          f"{totals['1024']:7.1f} {base_sum['1024']:6.0f} {ratio(base_sum['1024'], totals['1024'])} |")
    worst = max(rows, key=lambda r: r["worst_1024"])
    print(f"\nworst variant at 1024: {worst['name']} {worst['worst_variant']} {worst['worst_1024']:.1f} ms "
          f"(limit {LIMIT_MS:.0f} ms); 'cold' = slowest first call at 1024, caches empty.")
    wait = CLOCKS["wall_ms"] / max(CLOCKS["cpu_ms"], 1e-9)
    print("baseline = the reference implementation's published figures on this machine class "
          "(bench_reference.md), not re-measured in this run.")
    print(f"times are CPU ms (process_time); wall time was {wait:.2f}x CPU time over the run "
          f"({'quiet machine' if wait < 1.15 else 'other processes competed for the cores'}).")
    print(json.dumps({"benchmark": "degradations", "threads": 1, "sum_ms_512": round(totals["512"], 1),
                      "sum_ms_1024": round(totals["1024"], 1), "baseline_sum_ms_512": base_sum["512"],
                      "baseline_sum_ms_1024": base_sum["1024"], "worst_variant_ms_1024": worst["worst_1024"],
                      "worst_variant": f"{worst['name']} {worst['worst_variant']}", "limit_ms": LIMIT_MS,
                      "clock": "process_time", "wall_over_cpu": round(wait, 3),
                      "rows": rows}))


if __name__ == "__main__":
    main()
