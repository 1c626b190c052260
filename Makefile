# `make run` and `make test` set everything up themselves on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INPUT ?= data/sample
OUTPUT ?= output
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_HOME ?= $(CURDIR)/.prefect
export DO_NOT_TRACK := 1

# The report's browser test and screenshot use Debian's chromium (Playwright drives it; no browser download).
CHROMIUM_INSTALL := command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

.PHONY: run test test-fast install lock clean report-screenshot bench

# The locked versions (requirements.lock) without resolving them, then b12lab itself; pip check fails the install
# when the lock no longer satisfies pyproject.toml (`make lock` writes it again). The bytecode is compiled here,
# b12lab's own included: where PYTHONDONTWRITEBYTECODE is set, no process would ever keep what it compiled, and
# every `b12lab` process and test worker would compile Prefect, GX and dbt again (a quarter more CPU for the suite).
$(BIN)/b12lab: pyproject.toml setup.py requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --quiet --upgrade pip
	$(BIN)/pip install --quiet --quiet --no-deps -r requirements.lock
	$(BIN)/pip install --quiet --quiet --no-deps -e .
	$(BIN)/pip check --quiet || { rm -f $@; exit 1; }
	$(BIN)/python -m compileall -q pipelines benchmarks
	touch $@

install: $(BIN)/b12lab

# After a change of pyproject.toml's dependencies: resolve them afresh in a scratch virtualenv and write the
# versions pip chose to requirements.lock (its comment lines kept).
LOCK_VENV := .lock-venv
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --quiet --quiet --upgrade pip
	$(LOCK_VENV)/bin/pip install --quiet --quiet --no-compile -e '.[test]'
	{ grep '^#' requirements.lock; $(LOCK_VENV)/bin/pip freeze --exclude-editable; } > requirements.lock.new
	mv requirements.lock.new requirements.lock
	rm -rf $(LOCK_VENV)

run: install
	$(BIN)/b12lab run --input $(INPUT) --output $(OUTPUT)

# Two worker processes, one per core; a file's tests stay on one worker, so its module fixtures are built once.
# Files are handed out in collection order, the longest first (tests/conftest.py, HEAVIEST_FILES).
PYTEST_WORKERS ?= 2
test: install
	$(CHROMIUM_INSTALL)
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The inner loop: every test that needs no night of the pipeline, process or browser (markers in pyproject.toml).
test-fast: install
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder -m "not slow"

# After `make run`: a full-page screenshot of the report, to look at it as a reader would.
report-screenshot: install
	$(CHROMIUM_INSTALL)
	$(BIN)/python -m b12lab.report.screenshot $(OUTPUT)/report/index.html $(OUTPUT)/report/screenshot.png

clean:
	rm -rf $(OUTPUT) .pytest_cache

# Performance harness (benchmarks/README.md): make bench [ROWS=10000000] [BENCH_ARGS="--skip pandas"]
ROWS ?= 1000000
BENCH_ARGS ?=
bench: install
	$(BIN)/python -m benchmarks --rows $(ROWS) $(BENCH_ARGS)
