"""How many processes the launcher was asked for, compared with the processes the run has.

`accelerate launch --cpu --num_processes 2 -m train ...` starts ONE process (accelerate's CPU
launch without `--multi_gpu` is its single-process launcher) and sets no variable saying that 2
were asked for: that run would train alone, into the same folder, with another gradient
accumulation than asked. `requested_processes` reads what the launcher was asked for: the
`WORLD_SIZE` that torchrun (and accelerate's multi-process launch) sets; else, when the parent
process is `accelerate launch`, its `--num_processes` or the `num_processes` of the accelerate
config it reads (its `--config_file`, else accelerate's default config file). `check_launch`
turns a difference into an error (not a warning: a run that silently trains with another world
size also writes checkpoints that a correctly launched run cannot resume), naming the command
that does run N processes on CPU: `ACCELERATE_USE_CPU=1 torchrun --nproc_per_node N -m train ...`.
Reading the parent's command line needs Linux's /proc; elsewhere only `WORLD_SIZE` is read.
"""

from __future__ import annotations

import os
from pathlib import Path

from .config import ConfigError

CPU_COMMAND = "ACCELERATE_USE_CPU=1 torchrun --nproc_per_node {n} -m train ..."


def _parent_argv() -> list[str]:
    try:
        raw = Path(f"/proc/{os.getppid()}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def accelerate_launch_args(argv: list[str]) -> list[str] | None:
    """The arguments after `accelerate launch` in a command line, or None when it is no accelerate launch."""
    for i, arg in enumerate(argv):
        base = os.path.basename(arg)
        if base == "accelerate" and argv[i + 1: i + 2] == ["launch"]:
            return argv[i + 2:]
        if base == "accelerate-launch" or arg == "accelerate.commands.launch":
            return argv[i + 1:]
    return None


def _config_processes(path: str | None) -> int | None:
    import yaml
    from accelerate.commands.config.config_args import default_config_file

    file = Path(path) if path else Path(default_config_file)
    try:
        value = (yaml.safe_load(file.read_text()) or {}).get("num_processes")
    except (OSError, yaml.YAMLError, AttributeError):
        return None
    return value if isinstance(value, int) and value > 0 else None


def requested_processes(argv: list[str] | None = None) -> tuple[int, str] | None:
    """(processes the launcher was asked for, where that was read), or None when nothing says.
    `argv` is the parent's command line (default: read from /proc)."""
    world = os.environ.get("WORLD_SIZE", "").strip()
    if world.isdigit():
        return int(world), f"WORLD_SIZE={world}"
    launch = accelerate_launch_args(_parent_argv() if argv is None else argv)
    if launch is None:
        return None
    from accelerate.commands.launch import launch_command_parser

    try:
        args, _ = launch_command_parser().parse_known_args(launch)
    except SystemExit:  # not a command line accelerate itself would take
        return None
    if args.num_processes:
        return args.num_processes, f"accelerate launch --num_processes {args.num_processes}"
    n = _config_processes(args.config_file)
    if n:
        return n, f"num_processes: {n} in the accelerate config {args.config_file or 'default_config.yaml'}"
    return None


def check_launch(num_processes: int, argv: list[str] | None = None) -> None:
    """`ConfigError` when the launcher was asked for another number of processes than the run has."""
    asked = requested_processes(argv)
    if asked is None or asked[0] == num_processes:
        return
    n, source = asked
    why = ("accelerate launch --cpu starts a single process" if "accelerate" in source
           else "without GPUs accelerate needs ACCELERATE_USE_CPU=1 to join the processes")
    raise ConfigError(f"the launcher was asked for {n} processes ({source}) but this run has {num_processes}: {why}; "
                      f"for {n} processes on CPU run `{CPU_COMMAND.format(n=n)}` (README, multi-process on CPU)")
