# Backprop by Hand: the one build entry point. `make help` lists the targets.
# Every target creates the virtual environment (.venv) and installs what it needs.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Parallel build jobs: unset, the scripts use one per core, at most 4 (scripts/project.py).
JOBS   ?=
PORT   ?= 8000
# Optional wheel index for torch alone, e.g. PyTorch's CPU-only index, so pip does
# not fetch the multi-GB CUDA build: make book TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
TORCH := $(shell grep -E '^torch==' requirements.txt)

.DEFAULT_GOAL := help
.PHONY: help book test check format preview serve bench bench-build lighthouse chapter clean

help:
	@echo "make book      build the whole book strictly, from clean, into _build/html"
	@echo "make test      run the whole test suite (builds the book itself, in a temporary folder)"
	@echo "make check CHAPTER=book/02-batched-backprop.md   the fast inner loop (under a minute):"
	@echo "               ruff, helper units, repository checks, and that chapter with its"
	@echo "               exercises (without solutions) and its mutations"
	@echo "make format    ruff: format the Python code and fix what it can"
	@echo "make preview   live preview on http://127.0.0.1:$(PORT); re-executes only edited chapters"
	@echo "make serve     serve the last build of _build/html on http://127.0.0.1:$(PORT)"
	@echo "make chapter NAME=07-my-topic TITLE='My topic'   new chapter from the template, added to _toc.yml"
	@echo "make bench     run the test suite once; print its wall time and five slowest tests"
	@echo "make bench-build print build-speed figures (clean build, per chapter, rebuilds)"
	@echo "make lighthouse print Lighthouse figures for every page of the last build"
	@echo "make clean     remove _build"

$(VENV)/.book-deps: requirements.txt package.json package-lock.json
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(if $(TORCH_INDEX),$(PY) -m pip install --quiet --index-url $(TORCH_INDEX) '$(TORCH)')
	$(PY) -m pip install --quiet -r requirements.txt
	@if command -v npm >/dev/null; then npm ci --omit=dev --no-audit --no-fund --loglevel=error; \
	 else echo "note: npm not found; math will be typeset in the browser instead of at build time"; fi
	@touch $@

$(VENV)/.test-deps: $(VENV)/.book-deps requirements-test.txt
	$(PY) -m pip install --quiet -r requirements-test.txt
	@touch $@

book: $(VENV)/.book-deps
	$(PY) scripts/build_book.py $(if $(JOBS),--jobs $(JOBS))

# pytest's options (workers, markers, warnings) are in pyproject.toml: `pytest` run from
# the root does the same as `make test`.
test: $(VENV)/.test-deps
	$(PY) -m pytest $(PYTEST_ARGS)

# The inner loop (scripts/check.py): ruff, every test that needs no build, and the chapter
# being edited with its exercises without solutions and its mutations (run_chapter.py).
check: $(VENV)/.test-deps
	$(PY) scripts/check.py $(CHAPTER) $(if $(PYTEST_ARGS),--pytest $(PYTEST_ARGS))

format: $(VENV)/.test-deps
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

preview: $(VENV)/.book-deps
	$(PY) scripts/preview.py --port $(PORT) $(if $(JOBS),--jobs $(JOBS))

serve:
	@test -f _build/html/index.html || { echo "no build yet: run make book first"; exit 1; }
	$(PY) -m http.server --bind 127.0.0.1 --directory _build/html $(PORT)

chapter: $(VENV)/.book-deps
	$(PY) scripts/new_chapter.py "$(NAME)" --title "$(TITLE)"

bench: $(VENV)/.test-deps
	$(PY) scripts/bench_suite.py $(if $(PYTEST_ARGS),-- $(PYTEST_ARGS))

bench-build: $(VENV)/.test-deps
	$(PY) scripts/bench_build.py

lighthouse: $(VENV)/.book-deps
	@test -f _build/html/index.html || { echo "no build yet: run make book first"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	$(PY) scripts/bench_lighthouse.py

clean:
	rm -rf _build
