"""`python -m graph200k`: inspect node types and tasks, draw the task graph."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

from .catalog import DEFAULT_NODES
from .nodes import Graph200kError
from .tasks import TaskGraph


def _print_table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())


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
    rows = [[t.family, " -> ".join(t.nodes), " -> ".join(t.graph200k_nodes)] for t in tasks]
    _print_table(rows, ["family", "path (canonical)", "path (Graph200K)"])
    print(f"\n{len(tasks)} {args.split} tasks")


def cmd_graph(args: argparse.Namespace) -> None:
    from .draw import draw_task_graph

    path = draw_task_graph(TaskGraph(), args.out, fold_degradations=not args.unfold)
    print(f"wrote {path}")


def cmd_shards(args: argparse.Namespace) -> None:
    from .packing import pack, parse_size

    result = pack(args.dataset, args.out, parse_size(args.max_shard_size), progress=not args.no_progress)
    card = result.card
    print(f"packed {card['samples']} samples into {len(card['shards'])} shard(s) in {result.out}; "
          f"{card['tasks_served']} of {len(card['tasks'])} tasks served")
    print("nodes: " + ", ".join(f"{n} {c}" for n, c in card["node_counts"].items() if c))
    print(f"index: {result.out / 'index.jsonl'}  card: {result.out / 'dataset.json'}, {result.out / 'README.md'}")


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

    p = sub.add_parser("shards", help="pack an annotated dataset folder into training shards, index and card")
    p.add_argument("--dataset", required=True, help="dataset folder written by `python -m annotators run`")
    p.add_argument("--out", help="output folder (default: DATASET/shards)")
    p.add_argument("--max-shard-size", default="1GB", help="largest training tar (default 1GB; e.g. 500MB, 1e9)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_shards)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except Graph200kError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
