# `make run` and `make test` set everything up themselves on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INPUT ?= data/sample
OUTPUT ?= output
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_HOME ?= $(CURDIR)/.prefect
export DO_NOT_TRACK := 1

.PHONY: run test install clean

$(BIN)/b12lab: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/b12lab

run: install
	$(BIN)/b12lab run --input $(INPUT) --output $(OUTPUT)

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(OUTPUT) .pytest_cache
