"""The evaluation's outputs: `report.json` (the contract), `report.md` (the paper's tables), `gallery.html`.

report.json: a list of rows (the issue's contract), one per (variant, task, context):
`task`, `context`, `variant` ("lora" / "baseline"), `family`, `n` (items scored), `metrics`
{name: mean}, `skipped` {metric: reason} (a whole row the shards cannot serve has n = 0 and
`skipped["all"]`), and, when there is something to say, `extra` (kid_std, the FID features) and
`notes` (per metric: items left out). report.md has one table per paper table (task x context
rows, metric columns, each cell "ours / baseline"), then what was skipped and why.
gallery.html shows every grid: the examples and the query's conditions, the ground truth and
each variant's output, linked relatively so the folder can be moved or served as is.
provenance.json: which weights and settings made the figures (model, LoRA paths and sha256,
steps, seed, metric models, date, and the note that tiny models test wiring only).
"""

from __future__ import annotations

import html
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from graph200k.shardio import write_json, write_text

from .items import ItemRef, item_dir
from .scoring import METRIC_ORDER, TABLES, recipe_for

NOTE = ("Figures depend on the weights named in the provenance. With tiny or randomly initialised models "
        "(train.tiny, the tests, `make demo`) they test the wiring only and say nothing about a model.")
DIGITS = {"canny_f1": 3, "ssim": 3, "maniqa": 3, "kid": 4}


def write_report_json(out: Path, rows: list[dict], provenance: dict) -> Path:
    """report.json (the rows) and provenance.json beside it; provenance first, so a report.json
    is never newer than the provenance it belongs to."""
    write_json(Path(out) / "provenance.json", {**provenance, "note": NOTE})
    path = Path(out) / "report.json"
    write_json(path, rows)
    return path


def _fmt(name: str, value) -> str:
    if value is None:
        return "-"
    return f"{value:.{DIGITS.get(name, 2)}f}"


def _model_name(entry) -> str:
    """A metric model as `MetricSuite.describe()` gives it (a name, or {model, path}), for one line."""
    if isinstance(entry, dict):
        return f"{entry.get('model')} ({entry.get('path')})" if entry.get("path") else str(entry.get("model"))
    return str(entry) if entry else "not loaded"


def markdown(rows: Sequence[dict], provenance: dict) -> str:
    """report.md: a provenance header, one table per paper table, then the skipped metrics and rows."""
    variants = list(dict.fromkeys(r["variant"] for r in rows)) or ["lora"]
    lines = ["# VisualCloze evaluation", "", f"> {NOTE}", ""]
    for key in ("model", "lora", "baseline", "steps", "guidance", "resolution", "seed", "per_task", "date"):
        if key in provenance:
            value = provenance[key]
            if key in ("lora", "baseline"):
                value = (f"{value['source']} (weight {value['weight']:g}, sha256 {str(value['sha256'])[:12]})"
                         if value else "none (the base model)")
            lines.append(f"- {key}: {value}")
    metric_models = provenance.get("metric_models") or {}
    if metric_models:
        lines.append(f"- metric models: clip {_model_name(metric_models.get('clip'))}, "
                     f"dino {_model_name(metric_models.get('dino'))}, "
                     f"iqa {', '.join(metric_models.get('iqa') or []) or 'none'}, "
                     f"fid/kid features {metric_models.get('fid_features') or 'none'}")
    lines.append("")
    cell_label = " / ".join(variants)
    by_key = {(r["variant"], r["task"], r["context"]): r for r in rows}
    keys = list(dict.fromkeys((r["task"], r["context"], r["family"]) for r in rows))
    for table in TABLES:
        in_table = [(t, c) for t, c, f in keys if recipe_for(f).table == table]
        if not in_table:
            continue
        names = [m for m in METRIC_ORDER
                 if any(m in by_key.get((v, t, c), {}).get("metrics", {}) for v in variants for t, c in in_table)]
        lines += [f"## {table}", "", f"Each cell: {cell_label}.", ""]
        lines.append("| task | context | n | " + " | ".join(names) + " |")
        lines.append("|---|---|---|" + "---|" * len(names))
        for task, context in in_table:
            cells = []
            for name in names:
                cells.append(" / ".join(_fmt(name, by_key.get((v, task, context), {}).get("metrics", {}).get(name))
                                        for v in variants))
            n = " / ".join(str(by_key.get((v, task, context), {}).get("n", 0)) for v in variants)
            lines.append(f"| {task} | {context} | {n} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Not measured", ""]
    metrics_of: dict[str, set[str]] = defaultdict(set)
    tasks_of: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        for name, reason in r.get("skipped", {}).items():
            metrics_of[reason].add("every metric" if name == "all" else name)
            tasks_of[reason].add(r["task"] if name != "all" else f"{r['task']} context {r['context']}")
    if not metrics_of:
        lines.append("Every metric of every row was computed.")
    for reason in sorted(metrics_of, key=lambda k: (sorted(metrics_of[k]), k)):
        lines.append(f"- {', '.join(sorted(metrics_of[reason]))} ({', '.join(sorted(tasks_of[reason]))}): {reason}")
    lines.append("")
    return "\n".join(lines)


def _img(src: str, label: str) -> str:
    return (f'<figure><img src="{html.escape(src)}" loading="lazy" alt="{html.escape(label)}">'
            f"<figcaption>{html.escape(label)}</figcaption></figure>")


def gallery(out: Path, refs: Sequence[ItemRef], records: dict[ItemRef, dict]) -> str:
    """gallery.html: per task, context and query, the grid shown to the model and every variant's output."""
    out = Path(out)
    variants = list(dict.fromkeys(r.variant for r in refs))
    queries = list(dict.fromkeys((r.task, r.context, r.index) for r in refs))
    parts = ["<!doctype html><meta charset='utf-8'><title>VisualCloze evaluation gallery</title>",
             "<style>body{font-family:sans-serif;background:#181818;color:#ddd}figure{display:inline-block;"
             "margin:2px}img{height:128px}figcaption{font-size:11px}.row{white-space:nowrap}"
             "section{border-top:1px solid #444;margin-top:8px}</style>",
             f"<h1>VisualCloze evaluation gallery</h1><p>{html.escape(NOTE)}</p>"]
    for task, context, index in queries:
        here = [ItemRef(v, task, context, index) for v in variants if ItemRef(v, task, context, index) in records]
        if not here:
            continue
        first = records[here[0]]
        rel = item_dir(Path("."), here[0]).as_posix()
        columns = first["columns"]
        rows = first["files"]["rows"]
        parts.append(f"<section><h3>{html.escape(task)} | context {context} | query {index} "
                     f"({html.escape(first['keys'][-1])})</h3>")
        for r, names in enumerate(rows):
            role = "query" if r == len(rows) - 1 else f"example {r + 1}"
            cells = [_img(f"{rel}/{name}", f"{role}: {col}" + (" (ground truth)" if r == len(rows) - 1 and
                                                                  c == len(names) - 1 else ""))
                     for c, (name, col) in enumerate(zip(names, columns))]
            if r == len(rows) - 1:
                for ref in here:
                    record = records[ref]
                    cells.append(_img(f"{item_dir(Path('.'), ref).as_posix()}/{record['files']['generated']}",
                                      f"generated: {ref.variant}"))
            parts.append(f"<div class='row'>{''.join(cells)}</div>")
        parts.append(f"<p><small>prompt: {html.escape(first['prompt'])}</small></p></section>")
    return "\n".join(parts) + "\n"


def write_outputs(out: Path, rows: list[dict], provenance: dict, refs: Sequence[ItemRef],
                  records: dict[ItemRef, dict]) -> dict[str, Path]:
    """report.json, report.md and gallery.html under `out` (each written atomically)."""
    out = Path(out)
    paths = {"json": write_report_json(out, rows, provenance)}
    write_text(out / "report.md", markdown(rows, provenance))
    write_text(out / "gallery.html", gallery(out, refs, records))
    paths.update(md=out / "report.md", gallery=out / "gallery.html", provenance=out / "provenance.json")
    return paths
