"""`python -m annotators`: annotate a folder, webdataset shards or the Graph200K release on Ray."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from graph200k.dataset_dir import DatasetDir
from graph200k.decode import MAX_PIXELS
from graph200k.nodes import Graph200kError
from graph200k.quiet import add_verbose_argument
from graph200k.quiet import configure as configure_output
from graph200k.text_table import format_table

from .registry import DEFAULT_ANNOTATORS
from .runner import AnnotatorUnavailable, RunConfig, RunSummary, collect_errors, run
from .inputs.columns import ColumnMap
from .inputs.sources import DEFAULT_SAMPLES_PER_SHARD, InputError


def print_summary(summary: RunSummary, errors: list[dict]) -> None:
    print(f"\ninputs: {summary.inputs} = {summary.succeeded} succeeded + {summary.failed} failed"
          f" ({summary.field_errors} dropped fields)")
    for c in summary.collisions:
        print(f"key collision: {c['inputs']} fold to {c['key']!r}; assigned {c['assigned']}")
    if summary.unmatched_files:
        print(f"{len(summary.unmatched_files)} file(s) belong to no sample and were not read: "
              + ", ".join(summary.unmatched_files[:10]) + (" ..." if len(summary.unmatched_files) > 10 else ""))
    rows = [[r.annotator, r.nodes, r.status, str(r.shards), str(r.written), str(r.already_present), str(r.failed)]
            for r in summary.annotators]
    print()
    print(format_table(["annotator", "nodes", "status", "shards", "written", "imported", "failed"], rows,
                       details=[[("why", r.why), ("enable", r.how_to_enable)] for r in summary.annotators]))
    for e in summary.shard_errors:
        print(f"shard {e['shard']} ({e['stage']}) did not complete: {e['error']}", file=sys.stderr)
    if summary.stale:
        print(f"\n{len(summary.stale)} stale node shard(s), made from inputs that have changed since; "
              "they are not read and not packed until redone:")
        for e in summary.stale:
            print(f"  {e['shard']}: {e['why']}; redo: {e['redo']}")
    if errors:
        print(f"\n{len(errors)} per-sample error(s), first {min(10, len(errors))}:")
        for e in errors[:10]:
            print(f"  {e['stage']}/{e['shard']} {e['key']}: {e.get('field', '')} {e['reason']}".replace("  ", " "))
    lost = lost_inputs(summary)
    if lost:
        files = _error_files(Path(summary.dataset), errors)
        where = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
        if summary.shard_errors:
            where += (" and " if files else "") + f"{DatasetDir(summary.dataset).run_record} (shard_errors)"
        print(f"\nlost: {', '.join(lost)}; the records (key, source, field, file, reason) are in {where} "
              "(in Python: annotators.runner.collect_errors(dataset))")
    print(f"\ndataset: {summary.dataset}  ({summary.duration_s:.1f} s)")


def lost_inputs(summary: RunSummary) -> list[str]:
    """What the run lost, in words (empty when nothing was): `annotators run` then exits with status 1."""
    lost = {"failed sample(s)": summary.failed, "dropped field(s)": summary.field_errors,
            "sample(s) an annotator failed on": sum(r.failed for r in summary.annotators),
            "shard(s) that did not complete": len(summary.shard_errors)}
    return [f"{n} {what}" for what, n in lost.items() if n]


def _error_files(dataset: Path, errors: list[dict]) -> list[str]:
    shards = dict.fromkeys((e["stage"], e["shard"]) for e in errors)
    return [str(DatasetDir(dataset).errors(stage, shard)) for stage, shard in shards]


def parse_settings(pairs: list[str] | None, style_dir: str | None) -> dict[str, dict[str, str]]:
    """`--set NAME.FIELD=VALUE` pairs (and `--style-dir`, given to every annotator with a `style_dir` setting)."""
    settings: dict[str, dict[str, str]] = {}
    for pair in pairs or ():
        name, dot, rest = pair.partition(".")
        field, eq, value = rest.partition("=")
        if not dot or not eq or not name or not field:
            raise ValueError(f"--set {pair!r}: write ANNOTATOR.SETTING=VALUE "
                             "(e.g. fill_edit.num_inference_steps=28)")
        settings.setdefault(DEFAULT_ANNOTATORS.get(name).name, {})[field] = value
    if style_dir is not None:
        for cls in DEFAULT_ANNOTATORS.ordered():
            if "style_dir" in {f.name for f in dataclasses.fields(cls.Settings)}:
                settings.setdefault(cls.name, {}).setdefault("style_dir", style_dir)
    return settings


def with_weight_options(settings: dict[str, dict[str, str]], model_dir: str | None,
                        trust_remote_code: bool) -> dict[str, dict[str, str]]:
    """`--model-dir` and `--trust-remote-code`, given to every annotator with that setting (`--set` wins)."""
    for field, value in (("model_dir", model_dir), ("trust_remote_code", "true" if trust_remote_code else None)):
        if value is None:
            continue
        for cls in DEFAULT_ANNOTATORS.ordered():
            if field in {f.name for f in dataclasses.fields(cls.Settings)}:
                settings.setdefault(cls.name, {}).setdefault(field, value)
    return settings


def cmd_download(args: argparse.Namespace) -> int:
    """Fetch the weights of the chosen model-backed annotators (all by default); needs network."""
    from .models.weights import download

    chosen = DEFAULT_ANNOTATORS.ordered(args.names or None)
    specs = list(dict.fromkeys(spec for cls in chosen for spec in getattr(cls, "models", ())))
    if not specs:
        print("none of the chosen annotators loads weights")
        return 0
    from graph200k.hub import hub_unreachable

    why = hub_unreachable()  # seconds, instead of minutes of retries per file
    if why:
        named = "; ".join(f"{spec.repo_id}@{spec.revision[:12]} ({', '.join(spec.patterns)})" for spec in specs[:3])
        print(f"error: cannot download {named}{f' and {len(specs) - 3} more' if len(specs) > 3 else ''}: {why}; "
              "run `python -m annotators download` on a machine "
              "with network and copy the files over (--model-dir DIR keeps them as DIR/<repo_id>/)", file=sys.stderr)
        return 1
    failed = 0
    for spec in specs:
        try:
            path, commit = download(spec, args.model_dir)
        except OSError as err:  # huggingface_hub's network and not-found errors are OSErrors
            print(f"error: {spec.repo_id}@{spec.revision[:12]} ({', '.join(spec.patterns)}): "
                  f"{type(err).__name__}: {str(err).splitlines()[0]}", file=sys.stderr)
            failed += 1
            continue
        pin = "" if commit == spec.revision else f" (revision {spec.revision!r} is commit {commit}: pin it)"
        print(f"{spec.repo_id}: {path}{pin}")
    return 1 if failed else 0


def cmd_sheet(args: argparse.Namespace) -> int:
    from .sheet import contact_sheet, save_sheet

    settings = with_weight_options(parse_settings(args.set, None), args.model_dir, args.trust_remote_code)
    sheet, sources = contact_sheet(Path(args.sample), settings)
    save_sheet(sheet, Path(args.out))
    for s in sources:
        print(f"{s['node']:<15} {s['source']}")
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1024:.0f} KiB)")
    return 0


def _weight_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-dir", help="folder holding weights as <repo_id>/ (e.g. DIR/lllyasviel/Annotators); "
                                       "default: the Hugging Face cache")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow annotators whose model runs its hub repo's code (foreground_mask: BiRefNet), "
                        "at their pinned revision")


def cmd_run(args: argparse.Namespace) -> int:
    cfg = RunConfig(
        input=Path(args.input), out=Path(args.out), annotators=args.annotators, strict=args.strict,
        overwrite=args.overwrite, samples_per_shard=args.samples_per_shard, num_cpus=args.num_cpus,
        address=args.address, workers=args.workers, cpus_per_worker=args.cpus_per_worker,
        gpus_per_worker=args.gpus_per_worker, batch_size=args.batch_size, max_pixels=args.max_pixels,
        follow_symlinks=args.follow_symlinks, progress=not args.no_progress,
        settings=with_weight_options(parse_settings(args.set, args.style_dir), args.model_dir, args.trust_remote_code),
        columns=ColumnMap(args.image_col, args.caption_col),
    )
    summary = run(cfg)
    print_summary(summary, collect_errors(cfg.out))
    if summary.succeeded == 0:
        print(f"error: no sample of {cfg.input} was imported (0 of {summary.inputs} succeeded), so there is "
              "nothing to annotate or pack; the reasons are listed above", file=sys.stderr)
        return 1
    return 1 if lost_inputs(summary) else 0


def cmd_list(args: argparse.Namespace) -> int:
    rows = []
    options = with_weight_options({}, args.model_dir, args.trust_remote_code)
    for cls in DEFAULT_ANNOTATORS.ordered():
        avail = cls(settings=options.get(cls.name)).availability()
        needs = ", ".join(n if n in cls.needs() else f"{n}?" for n in cls.reads()) or "-"  # ?: used when present
        rows.append([cls.name, ", ".join(cls.produces), needs, cls.model_id or "-",
                     cls.revision or "-", cls.license or "-", str(cls.batch_size), f"{cls.num_cpus:g}",
                     f"{cls.num_gpus:g}", "yes" if avail.ok else f"no: {avail.reason}"])
    if args.json:
        print(json.dumps([dict(zip(["name", "produces", "needs", "model_id", "revision", "license", "batch_size",
                                    "num_cpus", "num_gpus", "available"], r)) for r in rows], indent=1))
        return 0
    # model, revision, licence and why not available: a details line under the row (120 columns)
    table = [[name, produces, needs, batch, cpus, gpus, available.partition(":")[0]]
             for name, produces, needs, _, _, _, batch, cpus, gpus, available in rows]
    details = [[("model", "" if model == "-" else f"{model} @ {revision[:12]} (licence: {licence})"),
                ("not available", available[4:] if available.startswith("no: ") else "")]
               for _, _, _, model, revision, licence, _, _, _, available in rows]
    print(format_table(["annotator", "produces", "needs", "batch", "cpus", "gpus", "available"], table,
                       details=details))
    missing = DEFAULT_ANNOTATORS.unannotated_nodes()
    if missing:
        print(f"\nnodes without an annotator yet (import them from existing data): {', '.join(missing)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m annotators", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="write source shards and annotate them")
    p.add_argument("--input", required=True,
                   help="a folder (<key>.jpg, <key>.json, <key>.<node>.<ext>), webdataset .tar shards "
                        "(file, folder or brace pattern), or a `datasets` dataset: the Graph200K release, a "
                        "save_to_disk folder, Parquet files, a `graph200k export`")
    p.add_argument("--out", default="data/demo", help="dataset folder to write (default: data/demo)")
    p.add_argument("--annotators", nargs="+", metavar="NAME",
                   help=f"annotators or node types to run (default: all: {', '.join(DEFAULT_ANNOTATORS.names())})")
    p.add_argument("--strict", action="store_true", help="fail when an annotator cannot run here")
    p.add_argument("--overwrite", action="store_true",
                   help="redo completed shards, and replace a dataset planned from another input or "
                        "--samples-per-shard (refused without it)")
    p.add_argument("--samples-per-shard", type=int, default=DEFAULT_SAMPLES_PER_SHARD)
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray instance (default: all)")
    p.add_argument("--address", help="join this Ray cluster (e.g. auto or ray://head:10001) instead of starting one")
    p.add_argument("--workers", type=int, help="actors per annotator (default: as many as the resources allow)")
    p.add_argument("--cpus-per-worker", type=float, help="override the annotators' declared CPUs per actor")
    p.add_argument("--gpus-per-worker", type=float, help="override the annotators' declared GPU fraction per actor")
    p.add_argument("--batch-size", type=int, help="override the annotators' declared batch size")
    p.add_argument("--max-pixels", type=int, default=MAX_PIXELS,
                   help=f"refuse images with more pixels (default {MAX_PIXELS}, decompression-bomb guard)")
    p.add_argument("--image-col", metavar="COLUMN", help="`datasets` input (Arrow/Parquet): the column holding "
                   "the target image (like img2dataset's --url_col; default: the release's `target`)")
    p.add_argument("--caption-col", metavar="COLUMN", help="`datasets` input: the column holding the caption "
                   "(like img2dataset's --caption_col; default: the release's `description`)")
    p.add_argument("--follow-symlinks", action="store_true",
                   help="folder input: also read files and enter folders that symbolic links lead to outside "
                        "the input folder (default: recorded as errors, not read)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--set", action="append", metavar="ANNOTATOR.SETTING=VALUE",
                   help="override an annotator setting (repeatable; see docs/annotators.md), "
                        "e.g. fill_edit.num_inference_steps=28")
    p.add_argument("--style-dir", help="folder of style reference images for the style annotators "
                                       "(default: the bundled demo pool, samples/styles)")
    _weight_arguments(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("list", help="list the annotators, what they need and whether they can run here")
    p.add_argument("--json", action="store_true")
    _weight_arguments(p)
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("download", help="fetch model weights (on a machine with network access)")
    p.add_argument("names", nargs="*", metavar="NAME", help="annotators or node types (default: all)")
    p.add_argument("--model-dir", help="download into DIR/<repo_id> instead of the Hugging Face cache")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("sheet", help="picture of one sample folder through every perception annotator")
    p.add_argument("--sample", required=True, help="a sample folder: target.jpg and its maps (<node>.jpg)")
    p.add_argument("--out", required=True, metavar="FILE.png",
                   help="PNG to write (required: nothing is written unless asked; the docs picture is "
                        "docs/img/annotators.png)")
    p.add_argument("--set", action="append", metavar="ANNOTATOR.SETTING=VALUE")
    _weight_arguments(p)
    p.set_defaults(func=cmd_sheet)
    add_verbose_argument(parser)
    return parser


def check_model_dir(args: argparse.Namespace) -> None:
    """A `--model-dir` that is no folder is an error: ignored, it would send every lookup to the cache."""
    folder = getattr(args, "model_dir", None)
    if folder is None or Path(folder).is_dir():
        return
    what = "is a file" if Path(folder).exists() else "does not exist"
    fix = (f"create it first (mkdir -p {folder}) or fix the path" if args.command == "download" else
           "give the folder holding the weights as DIR/<repo_id>/ (docs/annotators.md), or leave --model-dir out "
           "to use the Hugging Face cache")
    raise ValueError(f"--model-dir {folder} {what}: {fix}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_output(args.verbose, hub_progress=args.command == "download")
    try:
        check_model_dir(args)
        return args.func(args)
    except (InputError, AnnotatorUnavailable, Graph200kError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
