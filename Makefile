# The two quick-start commands: `make run` and `make test`; `make lint` runs the checks CI runs first.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint install install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	@# tests/test_verify_page.py drives the Debian chromium + chromium-driver; without them (no apt-get,
	@# not root) that test skips, so a failure here does not stop the target.
	@(command -v chromium >/dev/null && command -v chromedriver >/dev/null) || \
	  (DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	   DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) || \
	  echo "note: could not install chromium/chromium-driver; the browser test will be skipped"

run: install
	$(BIN)/iamsign serve

test: install-test
	$(BIN)/python -m pytest -q

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy signing api

clean:
	rm -rf $(VENV) data .pytest_cache
