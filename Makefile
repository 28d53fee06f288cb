# gperc: set-up and everyday commands. Every target installs what it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PLUGINS := image audio text graph
PLUGIN_DIRS := $(addprefix gperc_plugins/,$(PLUGINS))
STAMP := $(VENV)/.gperc-installed
# The distributions declare version ranges; the exact versions we test with live in constraints.txt
# (torch==2.11.0, torchvision==0.26.0, torchaudio==2.11.0 among them). PIP_CONSTRAINT also pins the
# build backend pip installs in its isolated build environments.
CONSTRAINTS := constraints.txt
PIP := PIP_CONSTRAINT=$(abspath $(CONSTRAINTS)) $(PY) -m pip
TORCH := torch torchvision torchaudio
DIST ?= dist
DEBIAN_DATA := dataset-fashion-mnist espeak-ng flite festival festvox-kdlpc16k wordnet-base
TASK ?= image/digits

.PHONY: install test docs demo bench bench-tasks data dist clean

$(STAMP): pyproject.toml $(wildcard gperc_plugins/*/pyproject.toml) $(CONSTRAINTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PIP) install -q -c $(CONSTRAINTS) $(TORCH)
	$(PIP) install -q -c $(CONSTRAINTS) -e '.[test,docs]' $(foreach d,$(wildcard $(PLUGIN_DIRS)),-e '$(d)[test]')
	@touch $(STAMP)

install: $(STAMP)

# Wheels of gperc-core (with its registry) and of every plugin (with its tasks/*.toml cards) into dist/;
# install them anywhere with: pip install dist/gperc_core-*.whl dist/gperc_plugin_image-*.whl ...
dist: $(STAMP)
	rm -rf $(DIST)
	$(PIP) wheel -q --no-deps -w $(DIST) . $(PLUGIN_DIRS)
	@ls $(DIST)

test: $(STAMP)
	$(PY) -m pytest -q

docs: $(STAMP)
	$(PY) -m mkdocs build --strict --site-dir site

data:
	@if [ "$$(id -u)" = "0" ]; then \
		missing=""; for p in $(DEBIAN_DATA); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
		if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi; \
	else \
		for p in $(DEBIAN_DATA); do dpkg -s $$p >/dev/null 2>&1 || echo "missing $$p: run  sudo apt-get install -y $(DEBIAN_DATA)"; done; \
	fi

demo: $(STAMP) data
	$(VENV)/bin/gperc train $(TASK) --out runs/demo

bench: $(STAMP)
	$(PY) bench/run.py
	$(PY) bench/update_readme.py

# every card over SEEDS seeds (10 folds for cross-validated cards); one card:
#   make bench-tasks TASKS=graph/karate SEEDS=2 BENCH_TASKS_ARGS="--limit-min 5 --set training.epochs=5"
TASKS ?=
SEEDS ?= 3
BENCH_TASKS_ARGS ?=
bench-tasks: $(STAMP) data
	$(PY) bench/tasks.py $(TASKS) --seeds $(SEEDS) $(BENCH_TASKS_ARGS)
	$(PY) bench/update_readme.py

clean:
	rm -rf $(VENV) .peers-venv runs .pytest_cache site $(DIST)
