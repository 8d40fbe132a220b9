"""Checkpoint size under FSDP: accelerate's `save_state` layout (frozen base included) vs the trainer's (LoRA only).

Two CPU processes (gloo) shard the tiny Flux-Fill transformer (bf16 base) with its fp32 LoRA as the
trainer does (`train.sharding.prepare_transformer`, the plugin of configs/accelerate/fsdp.yaml), take
one AdamW step so the optimizer holds its state, and write one checkpoint each way:
- before: what `Accelerator.save_state` writes under FSDP: `save_fsdp_model` (a DCP folder of the whole
  state dict, frozen base and LoRA), `save_fsdp_optimizer`, the trainer's LoRA file, the RNG states;
- after: what the trainer writes now (train/sharded_checkpoint.py): LoRA file, optimizer shards, RNG states.
Printed: each folder's size and write time, then both sizes for FLUX.1-Fill-dev, computed from its
parameter counts (its transformer built on the meta device, the trainer's LoRA on every linear layer):
base in bf16, LoRA and both AdamW moments in fp32. Tiny write times say nothing about the real model.

python benchmarks/bench_fsdp_checkpoint.py [--rank 4] [--flux-rank 256] [--no-flux]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
FSDP_CONFIG = REPO / "configs" / "accelerate" / "fsdp.yaml"
WORLD = 2


def fsdp_env() -> dict[str, str]:
    """The FSDP_* variables `accelerate launch --config_file configs/accelerate/fsdp.yaml` gives each process."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    args, _, _ = _validate_launch_command(launch_command_parser().parse_args(["--config_file", str(FSDP_CONFIG),
                                                                               "-m", "train"]))
    return {k: v for k, v in prepare_multi_gpu_env(args).items() if k.startswith("FSDP_")}


class Process:
    """What the checkpoint writers read from an `Accelerator`."""

    is_fsdp2, step, scaler = True, 0, None

    def __init__(self):
        import torch.distributed as dist

        self.process_index, self.num_processes = dist.get_rank(), dist.get_world_size()
        self.is_main_process = self.process_index == 0

    def wait_for_everyone(self):
        import torch.distributed as dist

        dist.barrier()


def write_both(out: Path, lora_rank: int) -> dict:
    """One sharded model with AdamW state, written both ways; seconds per layout (every rank done)."""
    import torch.distributed as dist
    from accelerate.checkpointing import save_accelerator_state
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import save_fsdp_model, save_fsdp_optimizer
    from bench_train_gpu import TINY, build_transformer

    from train.lora import lora_metadata, lora_state_dict, save_lora
    from train.sharded_checkpoint import save_sharded_checkpoint
    from train.sharding import prepare_transformer

    plugin = FullyShardedDataParallelPlugin()  # reads the FSDP_* variables
    torch.manual_seed(0)
    model = prepare_transformer(build_transformer(TINY, torch.device("cpu"), torch.bfloat16), rank=lora_rank,
                                fsdp_plugin=plugin, mixed_precision="bf16")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params)
    for p in params:
        p.grad = torch.zeros_like(p)
    optimizer.step()
    process, seconds = Process(), {}

    before, after = out / "before", out / "after"
    for path in (before, after):
        path.mkdir(exist_ok=True)
    dist.barrier()
    start = time.perf_counter()
    save_fsdp_model(plugin, process, model, before)
    save_fsdp_optimizer(plugin, process, optimizer, model, before)
    layers = lora_state_dict(model)
    if process.is_main_process:
        save_lora(before, layers, lora_metadata(model))
    save_accelerator_state(str(before), [], [], [], [], process.process_index, 0, None)
    dist.barrier()
    seconds["before"] = time.perf_counter() - start
    start = time.perf_counter()
    save_sharded_checkpoint(after, process, model, optimizer)
    dist.barrier()
    seconds["after"] = time.perf_counter() - start
    return {"seconds": seconds, "lora_params": sum(p.numel() for p in params),
            "frozen_params": sum(p.numel() for p in model.parameters() if not p.requires_grad)}


def worker(rank: int, port: int, env: dict[str, str], out: str, lora_rank: int) -> None:
    import torch.distributed as dist
    from accelerate import PartialState

    os.environ.update(env, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(WORLD), LOCAL_WORLD_SIZE=str(WORLD), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    PartialState(cpu=True, timeout=timedelta(seconds=120))  # gloo
    try:
        result = write_both(Path(out), lora_rank)
        if rank == 0:
            (Path(out) / "result.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def flux_counts(lora_rank: int) -> tuple[int, int]:
    """(frozen, LoRA) parameter counts of FLUX.1-Fill-dev's transformer with the trainer's LoRA, on the meta device."""
    from bench_train_gpu import FLUX_FILL_DEV
    from diffusers import FluxTransformer2DModel

    from train.lora import add_lora

    with torch.device("meta"):
        model = FluxTransformer2DModel(**FLUX_FILL_DEV)
    add_lora(model, lora_rank)
    return (sum(p.numel() for p in model.parameters() if not p.requires_grad),
            sum(p.numel() for p in model.parameters() if p.requires_grad))


def layout_bytes(frozen: int, lora: int) -> tuple[int, int]:
    """Before: model DCP (bf16 base + fp32 LoRA) + 2 fp32 moments + LoRA file; after: LoRA file + 2 moments."""
    return 2 * frozen + 4 * lora + 8 * lora + 4 * lora, 4 * lora + 8 * lora


def main(argv=None) -> int:
    import torch.multiprocessing as mp

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rank", type=int, default=4, help="LoRA rank of the tiny model (the FSDP tests' 4)")
    parser.add_argument("--flux-rank", type=int, default=256, help="LoRA rank for the FLUX.1-Fill-dev estimate")
    parser.add_argument("--no-flux", action="store_true", help="skip the FLUX.1-Fill-dev estimate (~15 s)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        mp.start_processes(worker, args=(port, fsdp_env(), tmp, args.rank), nprocs=WORLD, start_method="fork")
        result = json.loads((Path(tmp) / "result.json").read_text())
        sizes = {name: folder_bytes(Path(tmp) / name) for name in ("before", "after")}
    print(f"tiny Flux-Fill, {WORLD} CPU processes (gloo), FSDP2 as configs/accelerate/fsdp.yaml: "
          f"{result['frozen_params']:,} frozen bf16 + {result['lora_params']:,} LoRA fp32 params (rank {args.rank})")
    print(f"{'layout':<44}{'bytes':>14}{'write s':>10}")
    labels = {"before": "accelerate save_state (base included)", "after": "trainer (train/sharded_checkpoint.py)"}
    for name, label in labels.items():
        print(f"{label:<44}{sizes[name]:>14,}{result['seconds'][name]:>10.3f}")
    weights = layout_bytes(result["frozen_params"], result["lora_params"])
    print(f"ratio before/after: {sizes['before'] / sizes['after']:.2f}x; the weights alone are {weights[0]:,} and "
          f"{weights[1]:,} bytes (the rest: RNG states, DCP metadata, per-tensor file overhead of tiny tensors)")
    report = {"bench": "fsdp_checkpoint", "tiny_bytes": sizes, "tiny_seconds": result["seconds"]}
    if not args.no_flux:
        frozen, lora = flux_counts(args.flux_rank)
        before, after = layout_bytes(frozen, lora)
        print(f"FLUX.1-Fill-dev, LoRA rank {args.flux_rank}: {frozen / 1e9:.2f}B frozen (bf16, "
              f"{2 * frozen / 1e9:.1f} GB), {lora / 1e9:.3f}B LoRA (fp32, {4 * lora / 1e9:.2f} GB); per checkpoint, "
              f"all ranks: before {before / 1e9:.1f} GB, after {after / 1e9:.1f} GB ({before / after:.2f}x smaller, "
              f"{(before - after) / 1e9:.1f} GB less to write and hash)")
        report.update(flux_params={"frozen": frozen, "lora": lora}, flux_bytes={"before": before, "after": after})
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
