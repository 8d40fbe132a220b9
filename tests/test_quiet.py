"""Quiet by default (graph200k/quiet.py): the demo's commands, run as a user runs them, print no
third-party warning or INFO line; `-v` brings them back; `annotators run` counts samples, not shards.

Each command runs in a subprocess on three of the bundled samples (canny only, two shards) and
the smoke training for one step with a checkpoint, the paths where Ray's, transformers' and
accelerate's lines used to show."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from graph200k.quiet import QUIET_ENV

REPO = Path(__file__).resolve().parent.parent
SAMPLES = ["012cd3921e1f97d761eeff580f918ff9", "0fdaecdb7906a1bf0d6e202363f15de3", "2c4e256fa512cb7e7f433f4c7f9101de"]
OURS = r"(?:graph200k|annotators|sampler|train|inference)"
# What the libraries printed on the demo path before (issue 15), and their kind in general.
THIRD_PARTY = [re.compile(p) for p in [
    r"core_worker\.cc", r"Token authentication", r"Token indices sequence length", r"\(raylet\)",
    r"Warning:", r"UserWarning", r"FutureWarning", r"DeprecationWarning", r"No LoRA keys",
    r"Loading pipeline components", r"Loading weights", r"Writing model shards", r"was truncated",
    r"\bINFO\b", rf"\b(?:WARNING|ERROR)\b(?! {OURS}[.:])",
]]


def _env() -> dict:
    """The user's environment without what a quiet parent process would have left in it."""
    return {k: v for k, v in os.environ.items() if k not in QUIET_ENV and not k.startswith("PYTEST")}


def _run(*args: str) -> str:
    """stdout and stderr of `python -m ARGS`, each progress-bar refresh on its own line."""
    proc = subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=_env(), capture_output=True, text=True,
                          timeout=300)
    out = (proc.stdout + proc.stderr).replace("\r", "\n")
    assert proc.returncode == 0, out[-3000:]
    return out


def _third_party(out: str) -> list[str]:
    return [line for line in out.splitlines() if any(p.search(line) for p in THIRD_PARTY)]


@pytest.fixture(scope="module")
def annotated(tmp_path_factory) -> tuple[Path, str]:
    """Three samples annotated with canny in two shards, by the default command; its output."""
    root = tmp_path_factory.mktemp("quiet")
    source = root / "input"
    source.mkdir()
    for key in SAMPLES:
        for path in (REPO / "samples").glob(f"{key}.*"):
            if path.suffix in (".jpg", ".json") and path.name.count(".") == 1:
                shutil.copy(path, source / path.name)
    out = _run("annotators", "run", "--input", str(source), "--out", str(root / "data"), "--annotators", "canny",
               "--num-cpus", "2", "--samples-per-shard", "2")
    return root, out


def test_annotators_run_prints_no_third_party_line(annotated):
    _, out = annotated
    assert _third_party(out) == []
    assert "canny  ran" in out  # the summary table is there


def test_annotators_run_progress_counts_every_sample(annotated):
    """The bars count images (3 samples in 2 shards), and reach the total when the stage ends."""
    _, out = annotated
    for stage in ("source shards", "canny"):
        finals = [line for line in out.splitlines() if line.startswith(f"{stage}: 100%")]
        assert finals, f"no finished {stage!r} bar in:\n{out}"
        # tqdm writes the rate as img/s, or s/img when under one image a second (a busy machine)
        assert re.search(r"\| 3/3 \[.*(img/s|s/img), 2/2 shards\]", finals[-1]), finals[-1]


def test_annotators_run_verbose_shows_ray_again_and_no_progress_hides_bars(annotated):
    root, _ = annotated
    out = _run("annotators", "run", "--input", str(root / "input"), "--out", str(root / "data"), "--annotators",
               "canny", "--num-cpus", "2", "--samples-per-shard", "2", "--overwrite", "--no-progress", "-v")
    assert _third_party(out), out  # e.g. Ray's "Started a local Ray instance" INFO line
    assert "img/s" not in out and "s/img" not in out


@pytest.fixture(scope="module")
def packed(annotated, tiny_flux_fill) -> tuple[Path, Path]:
    root, _ = annotated
    _run("graph200k", "shards", "--dataset", str(root / "data"), "--no-progress")
    return root / "data" / "shards", tiny_flux_fill


def _train(shards: Path, model: Path, out: Path, *flags: str) -> str:
    return _run("train", "--config", "configs/smoke.yaml", f"model.pretrained={model}", f"data.shards={shards}",
                f"train.output_dir={out}", "train.max_steps=1", "checkpoint.every=1", "validation.every=0", *flags)


def test_train_prints_no_third_party_line_and_says_a_t5_cut_once(packed, tmp_path):
    """No accelerate INFO per checkpoint, no tokenizer warnings; the smoke config's 128 T5 tokens cut
    the tiny tokenizer's prompts (a letter a token), which the trainer says once, in one line."""
    shards, model = packed
    out = _train(shards, model, tmp_path / "train")
    assert _third_party(out) == []
    assert len(re.findall(r"WARNING train: T5 prompts are cut at model\.max_sequence_length=128", out)) == 1
    assert "done at step 1" in out


def test_train_verbose_shows_library_lines(packed, tmp_path):
    shards, model = packed
    out = _train(shards, model, tmp_path / "train", "-v")
    assert any("INFO accelerate" in line for line in _third_party(out)), out


def test_a_library_switch_waits_for_the_library_to_be_imported(tmp_path, monkeypatch):
    """diffusers has no environment switch for its bars: the switch runs right after its first import."""
    from graph200k import quiet

    (tmp_path / "late_library.py").write_text("VALUE = 7\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    quiet._when_imported("late_library", lambda module: setattr(module, "SEEN", module.VALUE))
    import late_library

    assert late_library.SEEN == 7
    assert not [f for f in sys.meta_path if isinstance(f, quiet._AfterImport) and f.name == "late_library"]
    monkeypatch.delitem(sys.modules, "late_library")


def test_verbose_undoes_what_a_quiet_parent_left_in_the_environment(monkeypatch):
    import logging

    from graph200k import quiet

    for name in QUIET_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DIFFUSERS_VERBOSITY", "info")  # the user's own choice stays
    level = logging.getLogger().level
    try:
        quiet.configure(False)
        assert os.environ["TRANSFORMERS_VERBOSITY"] == "error" and os.environ["DIFFUSERS_VERBOSITY"] == "info"
        assert quiet.ray_init_options()["log_to_driver"] is False
        quiet.configure(True)
        assert "TRANSFORMERS_VERBOSITY" not in os.environ and os.environ["DIFFUSERS_VERBOSITY"] == "info"
        assert quiet.ray_init_options()["log_to_driver"] is True
    finally:
        quiet.configure(False)
        logging.getLogger().setLevel(level)
