# regprune — `make demo` and `make test` work from a fresh clone (they create .venv first).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-slow test-ci-slow lint bench figures results notebooks reproduce reproduce-digits reproduce-mini clean clean-runs
PAPER ?= all

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: setup  ## network slimming on digits with vgg_tiny: baseline, trained, pruned, fine-tuned
	$(PY) scripts/demo.py

test: setup  ## fast suite (< 15 min on 2 cores)
	$(PY) -m pytest -q

test-slow: setup  ## long end-to-end checks
	$(PY) -m pytest -q -m slow

test-ci-slow: setup  ## the bounded subset of the slow checks that CI runs after make test
	$(PY) -m pytest -q -m "slow and ci"

bench: setup  ## speed ratios vs an NS-style reference loop -> results/bench/<device>.json
	$(PY) scripts/bench.py

figures: setup  ## figures of your own collected tables: outputs/tables -> outputs/figures (git-ignored)
	$(PY) scripts/make_figures.py

results: setup  ## regenerate the committed figures in results/ from the committed tables next to them
	$(PY) scripts/make_figures.py --committed

reproduce: setup  ## paper sweeps on CIFAR (GPU expected); PAPER=ns2017|bui2020|tang2023|li2024|survey
	$(PY) scripts/reproduce.py --paper $(PAPER) $(OVERRIDES)

reproduce-digits: setup  ## the digits benchmark on CPU: lambda calibrated on validation, 3 seeds -> results/digits/
	$(PY) scripts/reproduce.py --paper digits --jobs 2 $(OVERRIDES)

reproduce-mini: setup  ## smoke run of the digits pipeline (calibrated lambda, one seed) -> outputs/mini/
	$(PY) scripts/reproduce.py --paper mini --jobs 2 $(OVERRIDES)

lint: setup
	$(PY) -m ruff check src tests scripts train.py

notebooks: setup  ## execute every notebook headless into build/notebooks/ (ignored by git)
	mkdir -p build/notebooks
	for nb in notebooks/*.py; do \
	  $(VENV)/bin/jupytext --to ipynb --execute --output build/notebooks/$$(basename $$nb .py).ipynb $$nb || exit 1; \
	done

clean:  ## caches only; run folders (checkpoints included) stay: `make clean-runs` deletes them
	rm -rf .pytest_cache .ruff_cache build
	find . -path ./.venv -prune -o -name __pycache__ -prune -exec rm -rf {} +

clean-runs:  ## delete every run folder (checkpoints included) after asking; CONFIRM=yes skips the question
	@test "$(CONFIRM)" = yes || { printf 'delete runs/, outputs/ and multirun/ with every checkpoint? [y/N] '; \
	  read answer; test "$$answer" = y || { echo 'nothing deleted'; exit 1; }; }
	rm -rf runs outputs multirun
