# Two commands on a fresh machine: `make demo` and `make test`.
# The first target run creates .venv and installs the pinned set (requirements.txt).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO   ?= out/demo
PIP    := $(VENV)/bin/pip -q --disable-pip-version-check

.PHONY: install test demo annotate shards train evaluate bench graph clean

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is needed, found " + sys.version' 
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -r requirements.txt 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
	$(PY) -c "import torch, torchvision, transformers, diffusers, ray, webdataset" 
	$(PIP) install --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile

# The demo grows stage by stage; each stage adds its own lines below.
demo: $(STAMP)
	@mkdir -p $(DEMO)
	$(PY) -m graph200k nodes
	$(PY) -m graph200k tasks --counts
	$(PY) -m graph200k graph --out $(DEMO)/task_graph.png
	$(PY) -m sampler degradations --image samples/2c4e256fa512cb7e7f433f4c7f9101de.jpg --out $(DEMO)/degradations.png --seed 0
	$(MAKE) annotate shards
	$(PY) -m sampler preview --shards $(DATASET)/shards --n 16 --out $(DEMO)/grids
	$(PY) -m graph200k show --dataset $(DATASET) $(SHOW_KEYS) --out $(DEMO)/show
	$(MAKE) train
	$(MAKE) evaluate
	@echo "demo outputs are in $(DEMO)/ and $(DATASET)/"

graph: $(STAMP)
	$(PY) -m graph200k graph --out $(DEMO)/task_graph.png

# Benchmarks: every benchmarks/bench_*.py, one after another (run by hand; never part of make test).
bench: $(STAMP)
	@set -e; for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f; done

# Annotate samples/ (8 real Graph200K images) into data/demo/ on a local Ray; pack it into shards.
# Model weights: the Hugging Face cache, or MODEL_DIR=DIR holding DIR/<repo_id>/ (docs/annotators.md).
ANNOTATE_INPUT ?= samples
DATASET ?= data/demo
# The sample(s) `make demo` draws with `graph200k show` (every node they carry, labelled).
SHOW_KEYS ?= 78dc6506367d7aa43fe42a898abbfe4a
annotate: $(STAMP)
	$(PY) -m annotators run --input $(ANNOTATE_INPUT) --out $(DATASET) $(if $(MODEL_DIR),--model-dir $(MODEL_DIR))

shards: $(STAMP)
	$(PY) -m graph200k shards --dataset $(DATASET)

# Train: the smoke config (tiny random Flux-Fill pipeline, a few CPU steps on the demo shards;
# LoRA and validation PNG land in $(DEMO)/train/) unless CONFIG=...; overrides in ARGS="key=value ...".
CONFIG ?= configs/smoke.yaml
TINY_FLUX ?= $(DEMO)/tiny-flux-fill
SMOKE_PATHS = model.pretrained=$(TINY_FLUX) data.shards=$(DATASET)/shards \
	train.output_dir=$(DEMO)/train
train: $(STAMP)
	test -f $(TINY_FLUX)/model_index.json || $(PY) -m train.tiny --out $(TINY_FLUX)
	$(PY) -m train --config $(CONFIG) $(if $(filter configs/smoke.yaml,$(CONFIG)),$(SMOKE_PATHS)) $(ARGS)

# Evaluate: the smoke LoRA against the base model with the tiny pipeline on the demo shards' keys the smoke
# training held out (validation.holdout 0.4), a handful of items (the figures test the wiring only);
# report in $(DEMO)/evaluate/. Real runs: README, "Evaluate a LoRA".
EVAL_TASKS ?= canny->target,depth->target,gaussian_blur->target
evaluate: $(STAMP)
	$(PY) -m inference evaluate --shards $(DATASET)/shards --holdout 0.4 --tasks "$(EVAL_TASKS)" \
		--model $(TINY_FLUX) --lora $(DEMO)/train/pytorch_lora_weights.safetensors --baseline-lora none \
		--per-task 1 --context 0,1 --steps 2 --resolution 64 --max-sequence-length 128 --device cpu \
		$(if $(MODEL_DIR),--model-dir $(MODEL_DIR)) --out $(DEMO)/evaluate

clean:
	rm -rf out .pytest_cache
