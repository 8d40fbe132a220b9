"""`python -m sampler`: look at what the sampler makes. One function per subcommand."""

from __future__ import annotations

import argparse
import sys

from graph200k.quiet import add_verbose_argument
from graph200k.quiet import configure as configure_output

from .settings import GRID_DEFAULTS


def add_degradations_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("degradations", help="contact sheet: a source image and all 32 degradations of it, labelled")
    p.add_argument("--image", required=True, help="source image (any format PIL reads)")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--seed", type=int, default=0, help="seed of the severities, methods and noise (default 0)")
    p.add_argument("--cell", type=int, default=256, help="cell size in px; degradations run at this size (default 256)")
    p.set_defaults(func=cmd_degradations)


def cmd_degradations(args: argparse.Namespace) -> int:
    from .degradations.sheet import write_contact_sheet

    if args.cell < 32:
        raise SystemExit(f"--cell {args.cell}: use at least 32 px")
    path = write_contact_sheet(args.image, args.out, seed=args.seed, cell=args.cell)
    print(f"wrote {path}")
    return 0


def add_preview_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("preview", help="training grids as annotated PNGs (masked cell, prompt, columns) + index.html")
    p.add_argument("--shards", required=True, help="training shards: a directory of *.tar, a tar, a brace pattern or a glob")
    p.add_argument("--n", type=int, default=16, help="number of grids (default 16)")
    p.add_argument("--out", required=True, help="directory to write grid_NNN.png and index.html into")
    p.add_argument("--seed", type=int, default=GRID_DEFAULTS.seed, help=f"sampler seed (default {GRID_DEFAULTS.seed})")
    p.add_argument("--resolution", type=int, default=GRID_DEFAULTS.resolution,
                   help=f"cell area is resolution^2, a multiple of 16 (default {GRID_DEFAULTS.resolution})")
    p.add_argument("--tasks", action="append", metavar="TASKS",
                   help="only these tasks, as the trainer's data.tasks takes them: 'train' (default), 'test', a "
                        "family, or task ids as `python -m graph200k tasks` prints them ('reference+canny->target'); "
                        "several comma-separated or the flag repeated")
    p.set_defaults(func=cmd_preview)


def preview_tasks(values: list[str] | None) -> str | list[str]:
    """`--tasks` values (repeated, each comma-separated) as `GridDataset(tasks=...)` takes them."""
    if not values:
        return "train"
    items = [part.strip() for value in values for part in value.split(",") if part.strip()]
    if not items:
        raise ValueError("--tasks names no task; give 'train', 'test', a family or task ids")
    return items


def cmd_preview(args: argparse.Namespace) -> int:
    from .dataset import GridDataset
    from .preview import write_previews

    if args.n < 1:
        raise SystemExit(f"--n {args.n}: ask for at least one grid")
    dataset = GridDataset(args.shards, resolution=args.resolution, seed=args.seed, tasks=preview_tasks(args.tasks))
    write_previews(iter(dataset), args.out, args.n)
    print(f"wrote {args.n} grids and index.html to {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sampler", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add_degradations_command(sub)
    add_preview_command(sub)
    add_verbose_argument(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_output(args.verbose)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError) as e:
        print(f"python -m sampler {args.command}: {e}", file=sys.stderr)
        return 2
