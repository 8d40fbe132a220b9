"""Annotation throughput: canny through the Ray pipeline vs a plain single-process loop.

Both sides do the same work per image on the same images: decode the JPEG
(`graph200k.decode.decode_image`), Canny at 512 (`annotators.perception.canny.canny_edges`)
and encode the PNG (`annotators.base.encode_image`). The pipeline side also
reads the source shards and writes the node shards, stats and errors records.
Measured for a local Ray with 1 and with 2 CPUs, configured as
`annotators.runner.ray_session` configures a local Ray (`LOCAL_SYSTEM_CONFIG`).

Three figures per Ray configuration:
- end to end: the whole canny stage (`run_annotator`), its actor pool's start included;
- steady state: from the first actor ready to the last shard written (the stats' times);
- pool start: stage start to first actor ready, a fixed cost per annotator stage
  (a fresh Ray worker process importing Ray Data), whatever the number of images.
Not timed, as they are paid once per cluster: starting Ray, Ray Data's system actors
(warmed up by a task stage and an actor-pool stage), writing the source shards.

Images: N (default 256) 512x512 JPEGs cut from the bundled samples/ at varying
positions and scales. Acceptance (issue 4): pipeline >= 0.5x the plain loop at
1 CPU, and 2 CPUs >= 1.6x faster than 1 CPU; the JSON line reports both readings.

    python benchmarks/bench_annotate.py [--images 256] [--samples-per-shard 64]
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import cv2
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from annotators.base import encode_image  # noqa: E402
from annotators.perception.canny import CannyAnnotator, canny_edges  # noqa: E402
from annotators.registry import AnnotatorRegistry  # noqa: E402
from annotators.runner import LOCAL_SYSTEM_CONFIG, RunConfig, RunSummary, run_annotator, write_sources  # noqa: E402
from annotators.inputs.sources import plan_sources  # noqa: E402
from graph200k.decode import decode_image  # noqa: E402
from graph200k.shardio import read_stats  # noqa: E402


def make_images(folder: Path, n: int, size: int = 512) -> list[Path]:
    """N size x size JPEGs cut from the real samples (varying crop and scale)."""
    sources = [Image.open(p).convert("RGB") for p in sorted((REPO / "samples").glob("*.jpg"))
               if p.name.count(".") == 1]
    paths = []
    for i in range(n):
        image = sources[i % len(sources)]
        side = min(image.size)
        crop = int(side * (0.6 + 0.4 * ((i * 7) % 10) / 10))
        x = (i * 37) % (image.width - crop + 1)
        y = (i * 53) % (image.height - crop + 1)
        tile = image.crop((x, y, x + crop, y + crop)).resize((size, size), Image.BICUBIC)
        buf = io.BytesIO()
        tile.save(buf, format="JPEG", quality=90)
        path = folder / f"img{i:05d}.jpg"
        path.write_bytes(buf.getvalue())
        paths.append(path)
    return paths


def plain_loop(paths: list[Path]) -> float:
    """Images per second for read + decode + canny + PNG encode, one process, one thread."""
    cv2.setNumThreads(1)
    started = time.perf_counter()
    total = 0
    for path in paths:
        rgb = decode_image(path.read_bytes())
        total += len(encode_image(canny_edges(rgb), "png", "L"))
    elapsed = time.perf_counter() - started
    assert total > 0
    return len(paths) / elapsed


class _Identity:
    """The smallest callable class: its only job is to make Ray Data start its actor-pool system actors."""

    def __call__(self, batch):
        return batch


def pipeline(folder: Path, work: Path, cpus: int, per_shard: int, n: int) -> dict[str, float]:
    """The canny stage on a local Ray with `cpus` CPUs (one actor per CPU): images per second
    end to end (actor pool start included) and in steady state (from the first actor ready
    to the last shard written, per the shards' stats), and the actor pool's start time."""
    import ray
    import ray.data

    ray.init(num_cpus=cpus, include_dashboard=False, object_store_memory=256 * 1024**2, _system_config=LOCAL_SYSTEM_CONFIG,
             logging_level=logging.WARNING, log_to_driver=False)
    try:
        from annotators.runner import _quiet_data_context

        _quiet_data_context(False)
        # Ray Data starts its own system actors and worker processes on first use (a task
        # stage starts its stats and autoscaling actors, the first actor-pool stage its
        # detached ActorLocationTracker); like ray.init, that is paid once per cluster, not
        # per annotator, so it is not timed.
        warm = ray.data.range(cpus * 2, override_num_blocks=cpus * 2).map_batches(lambda b: b, batch_size=1)
        warm.map_batches(_Identity, batch_size=1, compute=ray.data.ActorPoolStrategy(size=1), num_cpus=0).materialize()
        time.sleep(1.0)
        cfg = RunConfig(input=folder, out=work, samples_per_shard=per_shard, progress=False, workers=cpus)
        plan = plan_sources(folder, per_shard)
        summary = RunSummary(str(work))
        write_sources(cfg, plan, summary)
        assert summary.succeeded == n, summary
        registry = AnnotatorRegistry([CannyAnnotator])
        time.sleep(0.5)
        started_wall, started = time.time(), time.perf_counter()
        row = run_annotator(CannyAnnotator, cfg, [s.shard for s in plan.shards], registry, summary)
        elapsed = time.perf_counter() - started
        assert row.written == n and row.failed == 0, row
        stats = [read_stats(tar) for tar in sorted((work / "nodes" / "canny").glob("*.tar"))]
        first_ready = min(s["worker_ready_at"] for s in stats)
        steady = max(s["finished_at"] for s in stats) - first_ready
        return {"e2e": n / elapsed, "steady": n / steady, "start_s": first_ready - started_wall}
    finally:
        ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--samples-per-shard", type=int, default=64)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_annotate_") as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        paths = make_images(folder, args.images)
        plain = plain_loop(paths)
        one = pipeline(folder, Path(tmp) / "cpu1", 1, args.samples_per_shard, args.images)
        two = pipeline(folder, Path(tmp) / "cpu2", 2, args.samples_per_shard, args.images)
    print(f"canny over {args.images} images of 512x512, {args.samples_per_shard} per shard (images/s)")
    print(f"{'':24s} {'end-to-end':>11s} {'vs plain':>9s} {'steady':>9s} {'vs plain':>9s} {'pool start':>11s}")
    print(f"{'plain loop, 1 process':24s} {plain:11.1f} {1.0:8.2f}x {plain:9.1f} {1.0:8.2f}x {'-':>11s}")
    for name, r in (("Ray pipeline, 1 CPU", one), ("Ray pipeline, 2 CPUs", two)):
        print(f"{name:24s} {r['e2e']:11.1f} {r['e2e'] / plain:8.2f}x {r['steady']:9.1f} {r['steady'] / plain:8.2f}x "
              f"{r['start_s']:10.2f}s")
    print(f"2 CPUs vs 1 CPU: end-to-end {two['e2e'] / one['e2e']:.2f}x, steady state {two['steady'] / one['steady']:.2f}x")
    print("steady state = first actor ready to last shard written; pool start = stage start to first actor ready "
          "(a fixed cost per annotator stage, whatever the number of images)")
    result = {
        "bench": "annotate_canny", "images": args.images, "samples_per_shard": args.samples_per_shard,
        "plain_images_per_s": round(plain, 2),
        "ray_1cpu_images_per_s": round(one["e2e"], 2), "ray_2cpu_images_per_s": round(two["e2e"], 2),
        "ray_1cpu_steady_images_per_s": round(one["steady"], 2), "ray_2cpu_steady_images_per_s": round(two["steady"], 2),
        "ray_1cpu_pool_start_s": round(one["start_s"], 3), "ray_2cpu_pool_start_s": round(two["start_s"], 3),
        "ray_1cpu_vs_plain": round(one["e2e"] / plain, 3), "ray_1cpu_steady_vs_plain": round(one["steady"] / plain, 3),
        "ray_2cpu_vs_1cpu": round(two["e2e"] / one["e2e"], 3),
        "ray_2cpu_vs_1cpu_steady": round(two["steady"] / one["steady"], 3),
        "acceptance_steady": {"ray_1cpu_vs_plain>=0.5": one["steady"] / plain >= 0.5,
                              "ray_2cpu_vs_1cpu>=1.6": two["steady"] / one["steady"] >= 1.6},
        "acceptance_end_to_end": {"ray_1cpu_vs_plain>=0.5": one["e2e"] / plain >= 0.5,
                                  "ray_2cpu_vs_1cpu>=1.6": two["e2e"] / one["e2e"] >= 1.6},
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
