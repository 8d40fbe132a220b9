"""The installed face of the project: console scripts and the licence it declares."""

import importlib
import inspect
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SCRIPTS = PYPROJECT["project"]["scripts"]


def _resolve(entry: str):
    module, _, attr = entry.partition(":")
    return getattr(importlib.import_module(module), attr)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_each_console_script_is_a_zero_argument_callable(name):
    """A console script calls its entry with no arguments and exits with what it returns."""
    entry = _resolve(SCRIPTS[name])
    assert callable(entry), f"{name} = {SCRIPTS[name]!r} is not callable"
    required = [p for p in inspect.signature(entry).parameters.values()
                if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    assert not required, f"{name} = {SCRIPTS[name]!r} needs arguments {[p.name for p in required]}"


def test_every_stage_has_a_console_script():
    packages = {entry.partition(":")[0].split(".")[0] for entry in SCRIPTS.values()}
    assert packages == {"graph200k", "annotators", "sampler", "train", "inference"}


def test_installed_graph200k_script_prints_help():
    script = Path(sys.executable).parent / "graph200k"
    if not script.exists():
        pytest.fail(f"{script} absent: `make install` installs the project (pip install -e .) with its scripts")
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "nodes" in out.stdout and "tasks" in out.stdout


def test_licence_file_matches_the_declared_licence():
    assert PYPROJECT["project"]["license"] == {"text": "Apache-2.0"}
    text = (REPO / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License") and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
