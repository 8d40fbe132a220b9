"""`python -m train --config FILE.yaml [key=value ...]` (or `accelerate launch -m train ...`)."""

from __future__ import annotations

import argparse
import logging
import sys

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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .checkpoints import CheckpointError
    from .trainer import Trainer, TrainingAborted  # heavy imports only after the config is known good

    try:
        summary = Trainer(cfg).train()
    except TrainingAborted as err:
        print(f"error: training aborted: {err}", file=sys.stderr)
        return 1
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    state = "interrupted" if summary["interrupted"] else "done"
    print(f"{state} at step {summary['step']}: LoRA {summary['lora']}, checkpoint {summary['checkpoint']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
