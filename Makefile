# The two commands a new user needs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
CODE := evaluator container devtools
DEMO_DIR ?= demo-output

.PHONY: demo test lint typecheck layers unit venv clean

# One virtual environment with the runtime, the optional smdebug reader and the dev tools.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

## demo: write a small imbalanced trial with smdebug's own writer, then evaluate it.
demo: $(VENV)/.installed
	rm -rf $(DEMO_DIR)
	$(PY) -m devtools.write_trial --out $(DEMO_DIR)/trial --steps 40 --batch 64 --classes 5 --imbalance 20 --workers 2
	$(BIN)/classimbalance-rule --trial $(DEMO_DIR)/trial --status-file $(DEMO_DIR)/status.json --argmax true; \
	  code=$$?; echo "exit code $$code (0 NoIssuesFound, 1 IssuesFound, 2 Error); status file: $(DEMO_DIR)/status.json"; \
	  test $$code -le 1

## test: lint, format check, strict typing, layer contracts, then the test suite.
test: lint typecheck layers unit

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed
	$(BIN)/mypy --strict $(CODE)

layers: $(VENV)/.installed
	$(BIN)/lint-imports

unit: $(VENV)/.installed
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) $(DEMO_DIR) .mypy_cache .ruff_cache .pytest_cache .hypothesis
