"""`python -m graph200k`: inspect node types and tasks, draw the task graph."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter

from .catalog import DEFAULT_NODES
from .dataset_dir import PACK_CARD, PACK_INDEX, PACK_README
from .nodes import Graph200kError
from .quiet import add_verbose_argument
from .quiet import configure as configure_output
from .tasks import TaskGraph
from .text_table import format_table, wrap_line


def _print_table(rows: list[list[str]], header: list[str]) -> None:
    print(format_table(header, rows))


def cmd_nodes(args: argparse.Namespace) -> None:
    nodes = list(DEFAULT_NODES)
    if args.json:
        json.dump([n.to_json() for n in nodes], sys.stdout, indent=1)
        print()
        return
    rows = [[n.name, n.graph200k_name, n.group.value, n.produced_by_label(),
             ", ".join(n.storage.names(n.max_instances)[:2]) + (" ..." if n.max_instances > 1 else "")
             if n.storage else "-"]
            for n in nodes]
    _print_table(rows, ["name", "graph200k", "group", "produced_by", "stored as"])
    print(f"\n{len(nodes)} node types: " + ", ".join(
        f"{count} {group}" for group, count in Counter(n.group.value for n in nodes).items()))


def cmd_tasks(args: argparse.Namespace) -> None:
    graph = TaskGraph()
    tasks = graph.tasks(split=args.split, family=args.family)
    if args.json:
        json.dump([t.to_json() for t in tasks], sys.stdout, indent=1)
        print()
        return
    if args.counts:
        per_family = Counter(t.family for t in tasks)
        rows = [[f, str(per_family[f]), f"{graph.weights[f]:g}"] for f in graph.family_names() if per_family[f]]
        _print_table(rows, ["family", "tasks", "weight"])
        print(f"\n{len(tasks)} {args.split} tasks in {len(per_family)} families")
        return
    rows = [[t.family, t.id, "->".join(t.graph200k_nodes)] for t in tasks]
    _print_table(rows, ["family", "id (data.tasks takes it)", "path (Graph200K names)"])
    print(f"\n{len(tasks)} {args.split} tasks; data.tasks also takes a family name, 'train', 'test' or a list")


def cmd_graph(args: argparse.Namespace) -> None:
    from .draw import draw_task_graph

    path = draw_task_graph(TaskGraph(), args.out, fold_degradations=not args.unfold)
    print(f"wrote {path}")


def cmd_show(args: argparse.Namespace) -> None:
    # The one upward import of graph200k, in this command only: derived nodes and degradations are
    # sampler code (docs/ARCHITECTURE.md, "layers").
    from sampler.show import write_show

    degradations = [d.strip() for d in args.degradations.split(",") if d.strip()]
    for path, cells in write_show(args.dataset, args.keys, args.out, seed=args.seed, cell=args.cell,
                                  degradations=degradations):
        kinds = Counter(c.kind for c in cells)
        print(f"wrote {path} ({len(cells)} cells: " + ", ".join(f"{n} {k}" for k, n in kinds.items()) + ")")


def cmd_shards(args: argparse.Namespace) -> None:
    from .pack_holdout import parse_holdout
    from .packing import pack, parse_size

    holdout = parse_holdout(args.holdout, args.holdout_keys)
    result = pack(args.dataset, args.out, parse_size(args.max_shard_size), progress=not args.no_progress,
                  holdout=holdout)
    card = result.card
    print(f"packed {card['samples']} samples into {len(card['shards'])} shard(s) in {result.out} "
          f"(generation {card['generation']}); {card['tasks_served']} of {len(card['tasks'])} tasks served")
    splits = card["splits"]
    if not holdout.empty:
        print(f"splits: train {splits['train']['samples']} samples ({result.out}/train-*.tar), heldout "
              f"{splits['heldout']['samples']} samples ({result.out}/heldout-*.tar)")
    unknown = sorted(holdout.keys - {e["key"] for e in result.index})
    if unknown:
        print(f"note: {len(unknown)} key(s) of --holdout-keys are not in this dataset, e.g. {unknown[0]!r}")
    print(wrap_line("nodes: " + ", ".join(f"{n} {c}" for n, c in card["node_counts"].items() if c)))
    print(f"index: {result.out / PACK_INDEX}  card: {result.out / PACK_CARD}, {result.out / PACK_README}")
    for stale in card.get("stale_shards", []):
        print(f"not packed: {stale['shard']} is stale ({stale['why']}); redo: {stale['redo']}")


def cmd_export(args: argparse.Namespace) -> None:
    from pathlib import Path

    from .export import export

    result = export(Path(args.dataset), Path(args.out), args.format, overwrite=args.overwrite,
                    progress=not args.no_progress)
    print(f"exported {sum(result.splits.values())} samples ("
          + ", ".join(f"{s} {n}" for s, n in result.splits.items()) + f") to {result.out} as {result.format}")
    print(wrap_line("images: " + ", ".join(f"{c} {n}" for c, n in result.column_counts.items() if n)))
    for name, n in sorted(result.unexported.items()):
        print(f"not exported: field {name} of {n} sample(s) has no column in the release schema", file=sys.stderr)
    print(f"load: {result.load_hint()}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m graph200k", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("nodes", help="list the node types")
    p.add_argument("--json", action="store_true", help="print a JSON list of node declarations")
    p.set_defaults(func=cmd_nodes)

    p = sub.add_parser("tasks", help="list the tasks (paths through the node graph)")
    p.add_argument("--json", action="store_true", help="print a JSON list of tasks")
    p.add_argument("--split", choices=["train", "test"], default="train")
    p.add_argument("--family", help="only this family")
    p.add_argument("--counts", action="store_true", help="print the number of tasks per family")
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("graph", help="draw the task graph as a PNG")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--unfold", action="store_true", help="draw each degradation as its own node")
    p.set_defaults(func=cmd_graph)

    p = sub.add_parser("show", help="a labelled contact sheet per sample of the packed shards: every node it "
                                    "carries (stored, derived, a few degradations) and its caption")
    p.add_argument("--dataset", required=True, help="dataset folder packed by `graph200k shards` (its shards/), "
                                                    "or a packed shards folder")
    p.add_argument("keys", nargs="+", metavar="KEY", help="sample keys (index.jsonl lists them)")
    p.add_argument("--out", metavar="FILE_OR_DIR", help="FILE.png for one key, or a folder for <key>.png each "
                                                        "(default: show-<key>.png in the current folder)")
    p.add_argument("--degradations", default="gaussian_blur,jpeg,rain,inpainting",
                   help="degradations of the target to show, comma-separated (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the degradations' severities (default 0)")
    p.add_argument("--cell", type=int, default=256, help="cell height in px (default 256)")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("shards", help="pack an annotated dataset folder into training shards, index and card")
    p.add_argument("--dataset", required=True, help="dataset folder written by `python -m annotators run`")
    p.add_argument("--out", help="output folder (default: DATASET/shards)")
    p.add_argument("--max-shard-size", default="1GB", help="largest training tar (default 1GB; e.g. 500MB, 1e9)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--holdout", metavar="N|FRACTION", help="write these keys to heldout-*.tar (validation.shards), "
                   "the rest to train-*.tar: the N keys of lowest hash score, or a FRACTION in (0, 1) (stable "
                   "when the dataset grows); 0 or absent: no heldout split")
    p.add_argument("--holdout-keys", metavar="FILE", help="also hold out these sample keys (one a line)")
    p.set_defaults(func=cmd_shards)

    p = sub.add_parser("export", help="write the packed shards as a Hugging Face `datasets` dataset "
                                      "(the Graph200K release's columns)")
    p.add_argument("--dataset", required=True, help="dataset folder packed by `python -m graph200k shards` "
                                                     "(or the pack folder itself)")
    p.add_argument("--out", required=True, help="folder to write (outside the dataset folder)")
    p.add_argument("--format", choices=["arrow", "parquet"], default="arrow",
                   help="arrow: DatasetDict.save_to_disk (datasets.load_from_disk); parquet: data/<split>-*.parquet "
                        "(load_dataset('parquet', ...), the Hub's layout). Default: arrow")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it holds files")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_export)
    add_verbose_argument(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_output(args.verbose)
    try:
        args.func(args)
        sys.stdout.flush()  # a reader that closed early shows here, not at interpreter exit
    except BrokenPipeError:
        return reader_closed_early()
    except Graph200kError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def reader_closed_early() -> int:
    """`graph200k nodes | head`: stop quietly, as `yes | head` does (exit 141 = 128 + SIGPIPE).

    stdout is pointed at devnull so that Python's flush at exit raises no second BrokenPipeError
    (the recipe of the `signal` module's docs)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141
