# The two commands a new user needs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
CODE := evaluator container devtools
DEMO_DIR ?= demo-output

.PHONY: demo test lint typecheck layers unit venv clean prometheus-tools

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

unit: $(VENV)/.installed prometheus-tools
	$(BIN)/pytest -q

## prometheus-tools: promtool and a Prometheus server for the metrics tests, from Debian, when
## missing. Silent when present; without root or apt-get it only warns (those tests then skip
## locally and fail under CI=true).
prometheus-tools:
	@if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then \
	  :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing prometheus and promtool (apt-get) for the metrics tests"; \
	  log=$$(mktemp); \
	  if (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus) >"$$log" 2>&1; then \
	    rm -f "$$log"; \
	  else \
	    cat "$$log"; rm -f "$$log"; \
	    echo "warning: could not install prometheus; its tests skip (and fail when CI=true)"; \
	  fi; \
	else \
	  echo "warning: promtool/prometheus missing; as root: apt-get update && apt-get install -y --no-install-recommends prometheus"; \
	fi

clean:
	rm -rf $(VENV) $(DEMO_DIR) .mypy_cache .ruff_cache .pytest_cache .hypothesis
