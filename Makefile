# The two commands a new user needs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
CODE := evaluator container devtools
DEMO_DIR ?= demo-output

.PHONY: demo test lint typecheck layers unit fuzz fuzz-kernels fuzz-parsers fuzz-config venv clean prometheus-tools browser-tools

# $(call debian-tools,PRESENT,PACKAGES,FOR): install Debian PACKAGES unless the shell test
# PRESENT passes; silent when present, and without root or apt-get only a warning (the tests
# FOR then skip locally and fail under CI=true).
define debian-tools
	@if $(1); then \
	  :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing $(2) (apt-get) for $(3)"; \
	  log=$$(mktemp); \
	  if (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(2)) >"$$log" 2>&1; then \
	    rm -f "$$log"; \
	  else \
	    cat "$$log"; rm -f "$$log"; \
	    echo "warning: could not install $(2); $(3) skip (and fail when CI=true)"; \
	  fi; \
	else \
	  echo "warning: $(2) missing; as root: apt-get update && apt-get install -y --no-install-recommends $(2)"; \
	fi
endef

# One virtual environment with the runtime, the optional smdebug reader and the dev tools, and
# the frameworks whose real smdebug hooks the tests train with (devtools/*_train.py):
# PyTorch 2.13.0 CPU (pip takes the wheel this machine keeps on disk; any other version would
# download a CUDA build of several GB), XGBoost without its unused NCCL wheel, and a setuptools
# that still has pkg_resources, which smdebug's XGBoost hook imports.
FRAMEWORKS := torch==2.13.0
$(VENV)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet $(FRAMEWORKS) 'setuptools<81'
	$(PY) -m pip install --quiet --no-deps xgboost==3.2.0
	touch $@

venv: $(VENV)/.installed

## kernels: the compiled kernels (evaluator/compiled/_kernels.c), built in place by the editable
## install and again here whenever the C source is newer than the module (setuptools skips an
## up-to-date one). Without a C compiler it only warns: everything runs in pure Python.
.PHONY: kernels
kernels: $(VENV)/.installed
	@$(PY) setup.py --quiet build_ext --inplace

## demo: write a small imbalanced trial with smdebug's own writer, then evaluate it.
demo: kernels
	rm -rf $(DEMO_DIR)
	$(PY) -m devtools.write_trial --out $(DEMO_DIR)/trial --steps 40 --batch 64 --classes 5 --imbalance 20 --workers 2
	$(BIN)/classimbalance-rule --trial $(DEMO_DIR)/trial --status-file $(DEMO_DIR)/status.json --argmax true; \
	  code=$$?; echo "exit code $$code (0 NoIssuesFound, 1 IssuesFound, 2 Error, 3 not checked, 4 Stopped); status file: $(DEMO_DIR)/status.json"; \
	  echo "the HTML report: file://$(CURDIR)/$(DEMO_DIR)/status.html (open it in a browser)"; \
	  test $$code -le 1

## test: lint, format check, strict typing, layer contracts, then the test suite.
test: lint typecheck layers unit fuzz

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed
	$(BIN)/mypy --strict $(CODE)

layers: $(VENV)/.installed
	$(BIN)/lint-imports

unit: kernels prometheus-tools deploy-tools browser-tools
	$(BIN)/pytest -q

## fuzz: three fuzzers, each for a fixed time and deterministic by seed; any finding fails it,
## its reproducer in $(FUZZ_DIR)/<fuzzer>:
## - fuzz-kernels: evaluator/compiled/_kernels.c built again with AddressSanitizer and UBSan, then
##   the differential fuzzer (devtools/fuzz_kernels.py) for FUZZ_SECONDS against the Python
##   reference on mutants of event files it writes with smdebug's writer (FUZZ_ARGS='--corpus
##   DIR' adds more). Without gcc it only warns locally, and fails under CI=true.
## - fuzz-parsers: every Python parser of trial bytes (devtools/fuzz_parsers.py) for
##   PARSER_FUZZ_SECONDS: only the typed errors come out, each input in bounded time.
## - fuzz-config: the settings loader (devtools/fuzz_config.py) for CONFIG_FUZZ_SECONDS: YAML,
##   environment and flags, only the typed configuration error, each input in bounded time.
FUZZ_SECONDS ?= 60
PARSER_FUZZ_SECONDS ?= 30
CONFIG_FUZZ_SECONDS ?= 30
FUZZ_DIR ?= $(CURDIR)/build/fuzz
FUZZ_CFLAGS := -O1 -g -std=c11 -Wall -Wextra -fsanitize=address,undefined \
  -fno-sanitize-recover=all -fno-omit-frame-pointer -shared -fPIC
FUZZ_ENV := PYTHONMALLOC=malloc ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:abort_on_error=1

fuzz: fuzz-kernels fuzz-parsers fuzz-config

fuzz-kernels: $(VENV)/.installed
	@if ! command -v gcc >/dev/null 2>&1; then \
	  if [ "$$CI" = true ]; then echo "error: gcc is missing, and CI=true: the kernels must be fuzzed"; exit 1; fi; \
	  echo "warning: gcc missing: the kernels' fuzz run is skipped (apt-get install gcc; it fails under CI=true)"; \
	  exit 0; \
	fi; \
	set -e; \
	so="$(FUZZ_DIR)/evaluator/compiled/_kernels$$($(PY) -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"; \
	mkdir -p "$$(dirname "$$so")"; \
	gcc $(FUZZ_CFLAGS) -I"$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["include"])')" \
	  evaluator/compiled/_kernels.c -o "$$so"; \
	echo "fuzzing $$so for $(FUZZ_SECONDS) s under AddressSanitizer and UBSan"; \
	env LD_PRELOAD="$$(gcc -print-file-name=libasan.so)" $(FUZZ_ENV) \
	  $(PY) -m devtools.fuzz_kernels --seconds $(FUZZ_SECONDS) --kernels "$$so" \
	  --out "$(FUZZ_DIR)/kernels" $(FUZZ_ARGS)

fuzz-parsers: $(VENV)/.installed
	$(PY) -m devtools.fuzz_parsers --seconds $(PARSER_FUZZ_SECONDS) --out "$(FUZZ_DIR)/parsers"

fuzz-config: $(VENV)/.installed
	$(PY) -m devtools.fuzz_config --seconds $(CONFIG_FUZZ_SECONDS) --out "$(FUZZ_DIR)/config"

## browser-tools: Debian's chromium for the report's tests in a real headless browser, when
## missing. Silent when present; without root or apt-get it only warns (those tests then skip
## locally and fail under CI=true).
browser-tools:
	$(call debian-tools,command -v chromium >/dev/null 2>&1,chromium,the report's browser tests)

## prometheus-tools: promtool, a Prometheus server and a Pushgateway for the metrics tests,
## from Debian, when missing. Silent when present; without root or apt-get it only warns
## (those tests then skip locally and fail under CI=true).
prometheus-tools:
	$(call debian-tools,command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 && command -v prometheus-pushgateway >/dev/null 2>&1,prometheus prometheus-pushgateway,the metrics tests)

clean:
	rm -rf $(VENV) $(DEMO_DIR) .mypy_cache .ruff_cache .pytest_cache .hypothesis

## bench: smdebug's rule loop, the evaluator, a numpy floor and a C floor (bench/cfloor.c, built
## with gcc) side by side on the same trials, the command's whole process and its start-up;
## rewrites the generated part of BENCHMARKS.md. Quick (S=1000) by default;
## `make bench BENCH_ARGS=--full` adds S=5000 (see BENCHMARKS.md for durations).
.PHONY: bench
bench: kernels
	$(PY) -m bench.run $(BENCH_ARGS)

# -- deployment: the image, its tools, the manifests' and rules' linters ------------------------
IMAGE ?= classimbalance-rule
IMAGE_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
PODMAN_ENV := tests/deploy/podman_env.sh
DEPLOY_PACKAGES := podman buildah runc skopeo debootstrap fuse-overlayfs netavark aardvark-dns \
  containernetworking-plugins uidmap slirp4netns iptables

.PHONY: deploy-tools image-base image image-full lock deploy-lint prometheusrule

## deploy-tools: podman, buildah, runc and debootstrap from Debian for the image tests, when
## missing. Silent when present; without root or apt-get it only warns (those tests then skip
## locally and fail under CI=true).
deploy-tools:
	$(call debian-tools,command -v podman >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1 && command -v runc >/dev/null 2>&1 && [ -x /usr/lib/podman/netavark ],$(DEPLOY_PACKAGES),the image tests)

## image-base: the stand-in for python:3.11-slim on a machine that cannot pull images (built
## once with debootstrap, ~1.5 min, then reused); podman's storage in /var/tmp/classimbalance-podman.
image-base: deploy-tools
	$(PODMAN_ENV) base >/dev/null

## image: build the slim image (the native reader only; the Dockerfile's default target) with
## podman, docker format (which keeps the HEALTHCHECK), tagged $(IMAGE):$(IMAGE_VERSION).
## image-full: the Dockerfile's target `full`, the slim image plus smdebug and pandas for
## --reader smdebug, tagged $(IMAGE):$(IMAGE_VERSION)-smdebug. Both install their dependencies
## from the locks in $(LOCKS) (the build context `locks`). With Docker (BuildKit):
##   docker build --build-context locks=$(LOCKS) [--target full] -t $(IMAGE):$(IMAGE_VERSION) .
IMAGE_BUILD = eval "$$($(PODMAN_ENV) env)" && podman build --format docker --pull=never \
  --build-context locks=$(LOCKS) \
  --label org.opencontainers.image.revision="$$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  --label org.opencontainers.image.created="$$(date -u +%Y-%m-%dT%H:%M:%SZ)"

image: image-base
	$(IMAGE_BUILD) --target slim --tag $(IMAGE):$(IMAGE_VERSION) .

image-full: image-base
	$(IMAGE_BUILD) --target full --tag $(IMAGE):$(IMAGE_VERSION)-smdebug .

## lock: pin the image's dependencies, every transitive one with its hashes, for Linux and
## CPython 3.11: $(LOCKS)/runtime.txt (pyproject's dependencies: the slim image),
## $(LOCKS)/smdebug.txt (what the smdebug extra adds to them: the -smdebug image) and
## $(LOCKS)/build.txt (the build stage's setuptools and wheel, from $(LOCKS)/build.in). uv, at
## a pinned version, in a throwaway venv under /var/tmp. Only files uploaded before LOCK_DATE
## count, so running it again gives the same locks; to update them:
##   make lock LOCK_DATE=YYYY-MM-DD   (then build, run the image tests, commit the locks)
LOCKS := config/requirements
LOCK_DATE ?= 2026-12-01
UV_VERSION := 0.13.9
LOCK_VENV ?= /var/tmp/classimbalance-lock/venv
UV_COMPILE = $(LOCK_VENV)/bin/uv pip compile --quiet --upgrade --python-version 3.11 \
  --python-platform linux --generate-hashes --exclude-newer $(LOCK_DATE)

$(LOCK_VENV)/.uv-$(UV_VERSION):
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --quiet uv==$(UV_VERSION)
	touch $@

lock: $(LOCK_VENV)/.uv-$(UV_VERSION)
	$(UV_COMPILE) pyproject.toml -o $(LOCKS)/runtime.txt
	$(UV_COMPILE) pyproject.toml --extra smdebug --constraint $(LOCKS)/runtime.txt \
	  $$(sed -n 's/^\([A-Za-z0-9._-]*\)==.*/--no-emit-package \1/p' $(LOCKS)/runtime.txt) \
	  -o $(LOCKS)/smdebug.txt
	$(UV_COMPILE) $(LOCKS)/build.in -o $(LOCKS)/build.txt

## deploy-lint: the Dockerfile, shell scripts, YAML, rendered overlays and alerting rules, quickly.
deploy-lint: $(VENV)/.installed prometheus-tools
	$(BIN)/hadolint Dockerfile
	$(BIN)/shellcheck entrypoint.sh tests/deploy/*.sh
	$(BIN)/yamllint --strict config/kubernetes config/prometheus config/grafana .yamllint
	@set -e; out=$$(mktemp -d); trap 'rm -rf "$$out"' EXIT; \
	for overlay in evaluate sidecar-job sidecar-pytorchjob; do \
	  kubectl kustomize config/kubernetes/overlays/$$overlay > "$$out/$$overlay.yaml"; \
	done; \
	kubectl kustomize --load-restrictor LoadRestrictionsNone \
	  config/kubernetes/overlays/grafana-dashboard > "$$out/grafana-dashboard.yaml"; \
	$(BIN)/kubernetes-validate --strict --quiet -k 1.29.0 "$$out"/*.yaml
	cd config/prometheus && promtool check config prometheus.yml \
	  && promtool test rules classimbalance-rules.test.yaml

## prometheusrule: the monitoring component's PrometheusRule from config/prometheus's rules file.
prometheusrule: $(VENV)/.installed
	$(PY) -m tests.deploy.prometheusrule > config/kubernetes/components/monitoring/prometheusrule.yaml
