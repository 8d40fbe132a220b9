"""`python -m train --config FILE.yaml [key=value ...]` (or `accelerate launch -m train ...`)."""

from __future__ import annotations

import argparse
import os
import sys

from graph200k.quiet import add_verbose_argument
from graph200k.quiet import configure as configure_output

from .config import ConfigError, flat_defaults, load_config


def _help_epilog() -> str:
    rows = flat_defaults()
    width = max(len(k) for k, _, _ in rows)
    lines = ["config keys (override any with key=value; values are read as YAML):"]
    lines += [f"  {key:<{width}}  {default!r}  ({tp})" for key, tp, default in rows]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m train",
        description="Train a VisualCloze LoRA on FLUX.1-Fill-dev from sampler grids.",
        epilog=_help_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="YAML config (configs/visualcloze_384.yaml, configs/smoke.yaml, ...)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides, e.g. optim.lr=5e-5")
    add_verbose_argument(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_output(args.verbose)  # before the model stack is imported; torchrun's ranks each run this
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from sampler.shards import ShardError

    from .checkpoints import CheckpointError
    from .trainer import Trainer, TrainingAborted  # heavy imports only after the config is known good

    try:
        summary = Trainer(cfg).train()
    except (ConfigError, CheckpointError, ShardError, TrainingAborted) as err:
        # Our own errors only, each one line naming the input and the fix; anything else is a bug: traceback.
        prefix = "training aborted: " if isinstance(err, TrainingAborted) else ""
        print(f"error: {prefix}{err}", file=sys.stderr)
        return 2 if isinstance(err, ConfigError) else 1
    state = "interrupted" if summary["interrupted"] else "done"
    if os.environ.get("RANK", "0") == "0":  # once per run, not once per process
        print(f"{state} at step {summary['step']}: LoRA {summary['lora']}, checkpoint {summary['checkpoint']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
