"""Training-step cost of the VisualCloze LoRA at real FLUX.1-Fill-dev shapes (CUDA only).

The transformer is FLUX.1-Fill-dev's architecture (hidden 3072, 19 double + 38 single blocks,
24 heads, in_channels 384, guidance embedding) with random bf16 weights built directly on the
GPU (no download, no CPU init), plus the trainer's own LoRA (`train.lora.add_lora`: rank 256
on every linear layer, fp32) and AdamW. Inputs have the shapes of one 3x3 grid of 384 px cells
(3 rows x 1728 image tokens, 512 T5 tokens, pooled CLIP 768); text encoders and VAE are not
needed for the step's cost. Each case runs a warm-up step, then timed steps (forward, backward,
grad clip, optimizer step); the baseline is the same step without gradient checkpointing.

python benchmarks/bench_train_gpu.py [--steps 3] [--rows 3] [--cols 3] [--cell 384] [--rank 256]
Prints "needs CUDA" and exits 0 when no GPU is visible. `--tiny` runs the same code on the
tiny test transformer on any device (a check of this script, not a measurement).

`--fsdp N` checks the FSDP route instead: `accelerate launch --config_file configs/accelerate/fsdp.yaml
--num_processes N` of this script, each process sharding the transformer exactly as the trainer
does (`train.sharding.prepare_transformer` + `accelerator.prepare`, gradient checkpointing on) and
taking the trainer's step calls (`accelerator.backward`, `clip_grad_norm_`, AdamW); it reports step
time, the per-GPU memory of the sharded state and the step's peak, and the time to gather the
LoRA for export (`train.lora.lora_state_dict`). One process per GPU; `--tiny --fsdp N` checks the
route in seconds.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
FSDP_CONFIG = REPO / "configs" / "accelerate" / "fsdp.yaml"

FLUX_FILL_DEV = dict(  # black-forest-labs/FLUX.1-Fill-dev transformer/config.json
    patch_size=1, in_channels=384, out_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
    num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
    axes_dims_rope=(16, 56, 56),
)
TINY = dict(FLUX_FILL_DEV, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=4,
            joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=(4, 6, 6))


def build_transformer(config: dict, device: torch.device, dtype: torch.dtype):
    """Random weights created in `dtype` directly on `device` (12B parameters init in seconds on a GPU)."""
    from diffusers import FluxTransformer2DModel

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = FluxTransformer2DModel(**config)
    finally:
        torch.set_default_dtype(previous)
    return model


def grid_inputs(config: dict, rows: int, cols: int, cell: int, text_len: int, device, dtype):
    """Random tensors with the shapes the trainer feeds for one rows x cols grid."""
    from diffusers import VisualClozeGenerationPipeline

    row_images = [torch.empty(1, 3, cell, cell * cols) for _ in range(rows)]
    img_ids = VisualClozeGenerationPipeline._prepare_latent_image_ids(row_images, 8, device, torch.float32)
    tokens = img_ids.shape[0]
    gen = torch.Generator(device=device).manual_seed(0)
    return dict(
        hidden_states=torch.randn(1, tokens, config["in_channels"], device=device, dtype=dtype, generator=gen),
        encoder_hidden_states=torch.randn(1, text_len, config["joint_attention_dim"], device=device, dtype=dtype,
                                          generator=gen),
        pooled_projections=torch.randn(1, config["pooled_projection_dim"], device=device, dtype=dtype, generator=gen),
        timestep=torch.full((1,), 0.5, device=device, dtype=dtype),
        guidance=torch.full((1,), 1.0, device=device, dtype=torch.float32),
        img_ids=img_ids,
        txt_ids=torch.zeros(text_len, 3, device=device, dtype=torch.float32),
    ), torch.randn(1, tokens, config["out_channels"], device=device, dtype=torch.float32, generator=gen)


def run_case(config, *, checkpointing: bool, steps: int, rows: int, cols: int, cell: int, rank: int, text_len: int,
             device: torch.device) -> dict:
    from train.lora import add_lora

    dtype = torch.bfloat16
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    model = build_transformer(config, device, dtype)
    with torch.device(device):  # LoRA matrices created on the GPU too
        add_lora(model, rank)  # rank `rank` on every nn.Linear, LoRA weights fp32
    if checkpointing:
        model.enable_gradient_checkpointing()
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    inputs, target = grid_inputs(config, rows, cols, cell, text_len, device, dtype)

    def step():
        with torch.autocast(device.type, dtype=dtype):
            pred = model(**inputs, return_dict=False)[0]
        loss = torch.nn.functional.mse_loss(pred.float(), target)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 2.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    result = {"checkpointing": checkpointing, "tokens": inputs["hidden_states"].shape[1],
              "lora_params_m": sum(p.numel() for p in params) / 1e6,
              "base_params_m": sum(p.numel() for p in model.parameters() if not p.requires_grad) / 1e6}
    try:
        step()  # warm-up: kernels, optimizer state allocation
        if cuda:
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(steps):
            loss = step()
        if cuda:
            torch.cuda.synchronize(device)
        elapsed = (time.perf_counter() - start) / steps
        result.update(status="ok", step_s=elapsed, tokens_per_s=result["tokens"] / elapsed, grids_per_s=1 / elapsed,
                      loss_finite=bool(math.isfinite(float(loss.detach()))))
    except torch.OutOfMemoryError:
        result.update(status="oom", step_s=None, tokens_per_s=None, grids_per_s=None)
    if cuda:
        result["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    del step, model, optimizer, params, inputs, target
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return result


def launch_fsdp(args) -> int:
    """Run this script's FSDP worker in `args.fsdp` processes through accelerate's launcher and the shipped config."""
    if not torch.cuda.is_available():
        print("needs CUDA: no GPU visible, nothing measured (FSDP under accelerate runs on GPUs only; "
              "tests/test_train_fsdp.py checks the sharding on CPU)")
        return 0
    if torch.cuda.device_count() < args.fsdp:
        print(f"--fsdp {args.fsdp} needs {args.fsdp} GPUs, {torch.cuda.device_count()} visible")
        return 2
    worker_args = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
                   if k not in ("fsdp", "fsdp_worker", "tiny")] + (["--tiny"] if args.tiny else [])
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(FSDP_CONFIG),
               "--num_processes", str(args.fsdp), str(Path(__file__).resolve()), "--fsdp-worker", *worker_args]
    return subprocess.run(command, cwd=REPO).returncode


def run_fsdp_worker(args) -> int:
    """One process of `--fsdp N`: the trainer's FSDP route on random FLUX.1-Fill-dev weights."""
    from accelerate import Accelerator

    from train.lora import lora_state_dict
    from train.sharding import fsdp_plugin_of, prepare_transformer

    acc = Accelerator()
    plugin = fsdp_plugin_of(acc)
    if plugin is None:
        raise SystemExit("--fsdp-worker runs under accelerate launch with configs/accelerate/fsdp.yaml; use --fsdp N")
    config, device, dtype = (TINY if args.tiny else FLUX_FILL_DEV), acc.device, torch.bfloat16
    torch.manual_seed(0)
    model = build_transformer(config, device, dtype)  # the full bf16 base on every GPU until it is sharded
    with torch.device(device):
        model = prepare_transformer(model, rank=args.rank, gradient_checkpointing=True, device=device,
                                    fsdp_plugin=plugin, mixed_precision=acc.mixed_precision)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    model, optimizer = acc.prepare(model, optimizer)
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    sharded_gib = torch.cuda.memory_allocated(device) / 2**30
    inputs, target = grid_inputs(config, args.rows, args.cols, args.cell, args.text_len, device, dtype)

    def step():
        pred = model(**inputs, return_dict=False)[0]
        loss = torch.nn.functional.mse_loss(pred.float(), target)
        acc.backward(loss)
        grad_norm = acc.clip_grad_norm_(params, 2.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach()), float(grad_norm)

    result = {"processes": acc.num_processes, "tokens": inputs["hidden_states"].shape[1],
              "sharded_state_gib": sharded_gib}
    try:
        step()  # warm-up: optimizer state allocation
        torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            loss, grad_norm = step()
        torch.cuda.synchronize(device)
        elapsed = (time.perf_counter() - start) / args.steps
        start = time.perf_counter()
        layers = lora_state_dict(model)  # the export/checkpoint gather, LoRA only
        result.update(status="ok", step_s=elapsed, tokens_per_s=result["tokens"] * acc.num_processes / elapsed,
                      loss_finite=math.isfinite(loss) and math.isfinite(grad_norm),
                      lora_gather_s=time.perf_counter() - start, lora_tensors=len(layers))
    except torch.OutOfMemoryError:
        result.update(status="oom")
    result["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    peaks = acc.gather(torch.tensor([result["peak_mem_gib"]], device=device)).tolist()
    if acc.is_main_process:
        name = "tiny" if args.tiny else "FLUX.1-Fill-dev"
        print(f"FSDP2 ({FSDP_CONFIG.name}) x {acc.num_processes} on {torch.cuda.get_device_name(device)}: {name}, LoRA "
              f"rank {args.rank}, {args.rows}x{args.cols} grid of {args.cell} px, gradient checkpointing, batch 1/GPU")
        print(f"status {result['status']}; sharded state {sharded_gib:.1f} GiB/GPU; step peak "
              f"{max(peaks):.1f} GiB (max over GPUs)"
              + (f"; {result['step_s']:.3f} s/step, {result['tokens_per_s']:,.0f} tokens/s; LoRA gather "
                 f"{result['lora_gather_s']:.2f} s ({result['lora_tensors']} tensors); loss finite "
                 f"{result['loss_finite']}" if result["status"] == "ok" else ""))
        print(json.dumps({"bench": "train_gpu_fsdp", "model": name, "rank": args.rank, "rows": args.rows,
                          "cols": args.cols, "cell": args.cell, "steps": args.steps, "peak_mem_gib_per_gpu": peaks,
                          **result}))
    acc.end_training()
    return 0 if result["status"] == "ok" else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per case (after one warm-up step)")
    parser.add_argument("--rows", type=int, default=3)
    parser.add_argument("--cols", type=int, default=3)
    parser.add_argument("--cell", type=int, default=384, help="cell side in pixels")
    parser.add_argument("--rank", type=int, default=256, help="LoRA rank")
    parser.add_argument("--text-len", type=int, default=512, help="T5 tokens")
    parser.add_argument("--tiny", action="store_true", help="tiny transformer on any device: checks the script only")
    parser.add_argument("--fsdp", type=int, metavar="N", help="the FSDP route: N processes (GPUs) with "
                        "configs/accelerate/fsdp.yaml through accelerate launch")
    parser.add_argument("--fsdp-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.fsdp_worker:
        return run_fsdp_worker(args)
    if args.fsdp:
        return launch_fsdp(args)

    if args.tiny:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        config = TINY
    else:
        if not torch.cuda.is_available():
            print("needs CUDA: no GPU visible, nothing measured")
            return 0
        device, config = torch.device("cuda"), FLUX_FILL_DEV
        torch.backends.cuda.matmul.allow_tf32 = True

    common = dict(steps=args.steps, rows=args.rows, cols=args.cols, cell=args.cell, rank=args.rank,
                  text_len=args.text_len, device=device)
    # The checkpointed case first: it is the one a real run uses, and the baseline may run out of memory.
    checkpointed = run_case(config, checkpointing=True, **common)
    baseline = run_case(config, checkpointing=False, **common)

    name = "tiny" if args.tiny else "FLUX.1-Fill-dev"
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"{name} LoRA rank {args.rank}, {args.rows}x{args.cols} grid of {args.cell} px "
          f"({baseline['tokens']} image + {args.text_len} text tokens), bf16, batch 1, on {gpu}")
    print(f"{'gradient checkpointing':<24}{'status':>8}{'step s':>10}{'tokens/s':>12}{'grids/s':>10}{'peak GiB':>10}")
    for r in (baseline, checkpointed):
        fmt = lambda v, spec: format(v, spec) if v is not None else "-"  # noqa: E731
        print(f"{'on' if r['checkpointing'] else 'off (baseline)':<24}{r['status']:>8}{fmt(r['step_s'], '.3f'):>10}"
              f"{fmt(r['tokens_per_s'], ',.0f'):>12}{fmt(r['grids_per_s'], '.3f'):>10}"
              f"{fmt(r.get('peak_mem_gib'), '.1f'):>10}")
    ratios = {}
    if baseline["status"] == checkpointed["status"] == "ok":
        ratios["step_time_ratio_ckpt_vs_baseline"] = checkpointed["step_s"] / baseline["step_s"]
        if "peak_mem_gib" in baseline:
            ratios["peak_mem_ratio_ckpt_vs_baseline"] = checkpointed["peak_mem_gib"] / baseline["peak_mem_gib"]
        print("ratios vs baseline: " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()))
    print(json.dumps({"bench": "train_gpu", "model": name, "device": gpu, "rows": args.rows, "cols": args.cols,
                      "cell": args.cell, "rank": args.rank, "steps": args.steps, "baseline": baseline,
                      "checkpointing": checkpointed, **ratios}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
