"""Items per second of `python -m inference evaluate`, per task family.

For each family one task the bundled samples serve is evaluated end to end (`inference.evaluate`:
draw, render, generate, save, score, report) on shards of the bundled samples packed three times
under distinct keys (tests/sampler_shards.py), contexts 0,1,2, a fresh `--out` each time. Two
figures per family: wall items/s (everything, loading the pipeline and the metric models
included: fixed costs dominate a tiny run) and pipeline items/s (the generation calls alone,
from each item's recorded `seconds`). Scoring uses the tiny CLIP / DINOv2 / depth models of the
tests (tests/metric_models.py).

Two cases:
- `tiny` (any device): the tiny random FLUX.1-Fill of `train.tiny`, 64 px cells, 2 steps. A check
  of the harness's own overhead, not of a model.
- `real` (CUDA only; prints "needs CUDA" otherwise): `--model` (FLUX.1-Fill-dev, which must be on
  disk or in the Hugging Face cache), 384 px cells, `--steps` (default 30), bf16, no LoRA (a LoRA
  adds little to the step).

python benchmarks/bench_evaluate.py [--case tiny|real|both] [--per-task 3] [--families NAME,...]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# One task per family that the bundled samples serve (canny is not among their annotations).
FAMILY_TASKS = {
    "conditional generation": "depth->target",
    "conditional generation with reference": "reference+depth->target",
    "conditional generation with style": "depth->instant_style",
    "image generation with reference": "reference->target",
    "subject extraction": "target->reference",
    "style transfer": "target->instant_style",
    "style transfer with condition": "reference+depth->instant_style",
    "image editing": "fill_edit->target",
    "image editing with reference": "reference+fill_edit->target",
    "dense prediction": "target->depth",
    "restoration": "gaussian_blur->target",
    "restoration with reference": "reference+inpainting->target",
}


def run_family(task: str, *, shards: Path, model: str, model_dir: Path, out: Path, per_task: int, steps: int,
               resolution: int, device: str) -> dict:
    from accelerate.state import AcceleratorState

    from inference.evaluate import EvaluateSettings, evaluate

    settings = EvaluateSettings(shards=str(shards), out=str(out), lora=None, baseline=None, tasks=task,
                                contexts=(0, 1, 2), per_task=per_task, model=model, num_inference_steps=steps,
                                resolution=resolution, max_sequence_length=512, device=device,
                                model_dir=str(model_dir))
    AcceleratorState._reset_state(reset_partial_state=True)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        evaluate(settings)
    wall = time.perf_counter() - start
    records = [json.loads(p.read_text()) for p in (out / "items").rglob("item.json")]
    pipeline = sum(r["seconds"] for r in records)
    return {"items": len(records), "wall_s": wall, "pipeline_s": pipeline}


def measure(case: str, families: list[str], per_task: int, steps: int | None, model: str) -> None:
    import torch
    import transformers

    from tests.metric_models import save_metric_models
    from tests.sampler_shards import pack

    transformers.logging.set_verbosity_error()  # VisualCloze prompts exceed CLIP's 77 tokens by design
    if case == "real" and not torch.cuda.is_available():
        print("real: needs CUDA: no GPU visible, nothing measured")
        return
    with tempfile.TemporaryDirectory(prefix="bench-evaluate-") as tmp:
        tmp = Path(tmp)
        pack(tmp / "shards", n_shards=4, copies=3)
        model_dir = save_metric_models(tmp / "metric-models")
        if case == "tiny":
            from train.tiny import save_tiny_pipeline

            torch.set_num_threads(1)  # tiny models run fastest on one thread
            model, resolution, steps, device = str(save_tiny_pipeline(tmp / "tiny-flux")), 64, steps or 2, "cpu"
        else:
            resolution, steps, device = 384, steps or 30, "cuda"
        print(f"{case}: model {model}, {resolution} px cells, {steps} steps, {per_task} queries x contexts 0,1,2, "
              f"device {device}, torch threads {torch.get_num_threads()}")
        print(f"{'family':40s} {'task':32s} {'items':>5s} {'wall s':>7s} {'items/s':>8s} {'pipeline items/s':>17s}")
        for family in families:
            task = FAMILY_TASKS[family]
            result = run_family(task, shards=tmp / "shards", model=model, model_dir=model_dir,
                                out=tmp / "out" / family.replace(" ", "_"), per_task=per_task, steps=steps,
                                resolution=resolution, device=device)
            n = result["items"]
            print(f"{family:40s} {task:32s} {n:5d} {result['wall_s']:7.1f} {n / result['wall_s']:8.2f} "
                  f"{(n / result['pipeline_s']) if result['pipeline_s'] else float('nan'):17.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=("tiny", "real", "both"), default="both")
    parser.add_argument("--per-task", type=int, default=3, help="queries per task (default 3)")
    parser.add_argument("--steps", type=int, help="sampling steps (default: 2 tiny, 30 real)")
    parser.add_argument("--model", default="black-forest-labs/FLUX.1-Fill-dev", help="the real case's model")
    parser.add_argument("--families", help="comma-separated family names (default: all 12)")
    args = parser.parse_args(argv)
    families = [f.strip() for f in args.families.split(",")] if args.families else list(FAMILY_TASKS)
    unknown = [f for f in families if f not in FAMILY_TASKS]
    if unknown:
        parser.error(f"unknown families {unknown}; known: {', '.join(FAMILY_TASKS)}")
    for case in (("tiny", "real") if args.case == "both" else (args.case,)):
        measure(case, families, args.per_task, args.steps, args.model)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
