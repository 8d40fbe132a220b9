"""The import graph of our five packages, read statically (`ast`): no circle, the layering that
docs/ARCHITECTURE.md draws, `annotators/` in subpackages, and README's layout table true to the folders.

Every `import` counts, at module level or inside a function, and under `if TYPE_CHECKING:` too: a
function-level import only delays a dependency, it does not remove it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import networkx as nx
import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("graph200k", "annotators", "sampler", "train", "inference")
OTHER_FOLDERS = ("benchmarks", "tests", "docs")  # README's layout table lists these besides the packages
# annotators/ top level: the framework (progress: the runner's per-sample progress bars); producers, input
# handling and model plumbing live in the subpackages.
ANNOTATOR_FRAMEWORK = {"__init__", "__main__", "cli", "runner", "worker", "annotate", "registry", "base", "sheet",
                       "dataset_plan", "content_ids", "progress"}
# docs/ARCHITECTURE.md's exceptions to "only from the stages before it" (importer, imported; a prefix of the
# dotted name): the trainer's validation scores with the evaluation's metrics and samples with its defaults, so
# `inference` sits below `train` (never the reverse); `python -m graph200k show` draws with `sampler.show`, inside
# the command's function only.
AGAINST_THE_FLOW = {("train", "inference.metrics"): "any", ("train.config", "inference.settings"): "any",
                    ("graph200k.cli", "sampler.show"): "function"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))
            if "__pycache__" not in p.parts}


def _lazy_exports(path: Path) -> dict[str, str]:
    """A package's PEP 562 table (`_EXPORTS = {"Name": "submodule"}`), so `from pkg import Name` counts as an
    import of `pkg.submodule`."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["_EXPORTS"]:
            return ast.literal_eval(node.value)
    return {}


def _function_level(tree: ast.Module) -> set[ast.AST]:
    """The import statements inside a function (run when it is called, not when the module loads)."""
    inside = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inside.update(n for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom)))
    return inside


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """Dotted names an import statement may load: the module and, for `from X import a`, `X.a`."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    return [source] + [f"{source}.{alias.name}" for alias in node.names]


@pytest.fixture(scope="module")
def graph() -> nx.DiGraph:
    """module -> every module of ours it imports (a name resolves to the longest module it starts with).
    An edge's `where` is "function" when every import behind it sits inside a function, else "module"."""
    modules = _modules()
    lazy = {m: _lazy_exports(p) for m, p in modules.items() if p.name == "__init__.py"}
    g = nx.DiGraph()
    g.add_nodes_from(modules)
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        in_function = _function_level(tree)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            where = "function" if node in in_function else "module"
            for name in _imported(node, module, path.name == "__init__.py"):
                package, _, attr = name.rpartition(".")
                if name not in modules and attr in lazy.get(package, {}):
                    name = f"{package}.{lazy[package][attr]}"
                while name and name not in modules:
                    name = name.rpartition(".")[0]
                if not name or name == module:
                    continue
                if g.has_edge(module, name):
                    where = "module" if "module" in (where, g.edges[module, name]["where"]) else "function"
                g.add_edge(module, name, line=node.lineno, where=where)
    return g


def _where(g: nx.DiGraph, a: str, b: str) -> str:
    return f"{a} -> {b} ({_modules()[a].relative_to(REPO)}:{g.edges[a, b]['line']})"


def test_the_graph_is_read(graph):
    """The reader sees relative, absolute and function-level imports (else every check below is vacuous)."""
    assert graph.has_edge("annotators.runner", "annotators.inputs.ingest")  # from .inputs.ingest import ...
    assert graph.has_edge("annotators.inputs.sources", "graph200k.catalog")  # from graph200k.catalog import ...
    assert graph.has_edge("train.config", "sampler.planner")  # inside TrainConfig._check_tasks
    assert graph.has_edge("train.validation_metrics", "inference.metrics")
    assert graph.has_edge("train.data", "sampler.dataset")  # `from sampler import GridDataset`, a lazy export
    assert graph.edges["train.config", "sampler.planner"]["where"] == "function"
    assert graph.edges["train.config", "sampler.instruction"]["where"] == "module"


def test_no_import_circle(graph):
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        return
    pytest.fail("import circle: " + "; ".join(_where(graph, a, b) for a, b in cycle))


def _stages() -> list[str]:
    """Our packages in the order of the data-flow line at the top of docs/ARCHITECTURE.md."""
    text = (REPO / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    flow = next(line for line in text.splitlines() if "──►" in line)
    order = [word for word in re.split(r"\s*──►\s*", flow.strip()) if word in PACKAGES]
    assert sorted(order) == sorted(PACKAGES), f"docs/ARCHITECTURE.md's flow line names {order}"
    return order


def _starts(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _allowed(graph: nx.DiGraph, a: str, b: str, stages: list[str]) -> bool:
    pa, pb = a.split(".")[0], b.split(".")[0]
    if pa == pb or stages.index(pb) < stages.index(pa):  # graph200k comes first: every package may read it
        return True
    return any(_starts(a, importer) and _starts(b, imported) and where in ("any", graph.edges[a, b]["where"])
               for (importer, imported), where in AGAINST_THE_FLOW.items())


def test_the_layering_of_the_architecture_doc_holds(graph):
    stages = _stages()
    assert stages[0] == "graph200k"
    wrong = [_where(graph, a, b) for a, b in graph.edges if not _allowed(graph, a, b, stages)]
    assert not wrong, "imports against docs/ARCHITECTURE.md's layers: " + "; ".join(wrong)
    packages = {(a.split(".")[0], b.split(".")[0]) for a, b in graph.edges}
    assert ("inference", "train") not in packages  # inference reads the LoRA file, never the trainer
    assert {b.split(".")[0] for a, b in graph.edges if a.startswith("graph200k.") and a != "graph200k.cli"} <= {
        "graph200k"}  # only the `show` command reaches up


def test_annotators_top_level_is_the_framework():
    top = {p.stem for p in (REPO / "annotators").glob("*.py")}
    extra = sorted(top - ANNOTATOR_FRAMEWORK)
    assert not extra, (f"annotators/{extra[0]}.py is not a framework module: move it into inputs/, models/, "
                       "perception/ or generative/")


def test_every_producer_lives_in_a_subpackage():
    from annotators.registry import DEFAULT_ANNOTATORS

    names = DEFAULT_ANNOTATORS.names()
    assert names
    for name in names:
        module = DEFAULT_ANNOTATORS.get(name).__module__
        parts = module.split(".")
        assert len(parts) == 3 and parts[:1] == ["annotators"] and parts[1] in ("perception", "generative"), (
            f"annotator {name!r} is defined in {module}: producers live in annotators/perception/ or generative/")


def test_annotator_subpackage_inits_import_nothing():
    """Ray actors import `annotators.<subpackage>.<module>`: the package's __init__ must cost nothing."""
    inits = sorted((REPO / "annotators").glob("*/__init__.py"))
    assert {p.parent.name for p in inits} >= {"inputs", "models", "perception", "generative"}
    for path in inits:
        body = ast.parse(path.read_text(encoding="utf-8")).body
        assert len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant), (
            f"{path.relative_to(REPO)} must hold only its docstring")


def _package_folders() -> set[str]:
    folders = {p.parent for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py") if "__pycache__" not in p.parts}
    missing_init = sorted(str(f.relative_to(REPO)) for f in folders if not (f / "__init__.py").is_file())
    assert not missing_init, f"folders of .py files without __init__.py: {missing_init}"
    return {f"{f.relative_to(REPO).as_posix()}/" for f in folders}


def test_readme_layout_table_lists_exactly_the_package_folders():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `([^`]+)` \|", section, flags=re.M)
    assert len(listed) == len(set(listed)), f"listed twice: {listed}"
    expected = _package_folders() | {f"{name}/" for name in OTHER_FOLDERS}
    assert set(listed) == expected, (f"README's layout table lacks {sorted(expected - set(listed))} "
                                     f"and lists {sorted(set(listed) - expected)}")
