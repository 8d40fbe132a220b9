# Two commands on a fresh machine: `make demo` and `make test`.
# The first target run creates .venv and installs the pinned set (requirements.txt).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO   ?= out/demo
PIP    := $(VENV)/bin/pip -q --disable-pip-version-check

.PHONY: install test demo annotate shards train bench graph clean

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is needed, found " + sys.version' 
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -r requirements.txt 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
	$(PY) -c "import torch, torchvision, transformers, diffusers, ray, webdataset" 
	$(PIP) install --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

# The demo grows stage by stage; each stage adds its own lines below.
demo: $(STAMP)
	@mkdir -p $(DEMO)
	$(PY) -m graph200k nodes
	$(PY) -m graph200k tasks --counts
	$(PY) -m graph200k graph --out $(DEMO)/task_graph.png
	@echo "demo outputs are in $(DEMO)/"

graph: $(STAMP)
	$(PY) -m graph200k graph --out $(DEMO)/task_graph.png

# Benchmarks: every benchmarks/bench_*.py, one after another (run by hand; never part of make test).
bench: $(STAMP)
	@set -e; for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f; done

annotate shards train:
	@echo "make $@: this stage is not built yet (see the open issues); nothing was run." >&2; exit 2

clean:
	rm -rf out .pytest_cache
