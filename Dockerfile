# classimbalance-rule: SageMaker Debugger's ClassImbalance rule, evaluated beside a training job.
#
#   docker build -t classimbalance-rule:0.1.0 .
#   podman build --format docker -t classimbalance-rule:0.1.0 .   (docker format keeps HEALTHCHECK)
#   docker run --rm -v "$PWD/trial:/trial:ro" -v "$PWD/out:/out" -p 9410:9410 \
#     -e CLASSIMBALANCE_STATUS_FILE=/out/status.json classimbalance-rule:0.1.0 --trial /trial --argmax true
#
# Settings come from the environment (THRESHOLD_IMBALANCE=5), a YAML file (RULE_CONFIG) and
# flags, as the README's Configuration section says. Exit codes: 0 NoIssuesFound or Stopped,
# 1 IssuesFound, 2 Error.
ARG PYTHON_IMAGE=docker.io/library/python:3.11-slim

# -- requirements: pyproject's dependencies and its smdebug extra, one per line ------------------
FROM ${PYTHON_IMAGE} AS requirements
WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['smdebug']))" > /requirements.txt

# -- build: wheels of every runtime dependency, then of the project ------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
# smdebug's pyinstrument needs pyinstrument-cext, published only as source: a C compiler here
# keeps it out of the final image. Versions come from the base image's Debian release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
# Copied by content: an edit elsewhere in pyproject.toml (or the code, or the README) reuses the
# dependencies' wheels.
COPY --from=requirements /requirements.txt /requirements.txt
RUN pip wheel --no-cache-dir --wheel-dir /deps --requirement /requirements.txt
WORKDIR /src
COPY pyproject.toml README.md ./
COPY evaluator/ evaluator/
COPY container/ container/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# -- runtime: the wheel and its dependencies (smdebug included, for --reader smdebug) ---------
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    SMDEBUG_LOG_LEVEL=warning

RUN groupadd --system --gid 10001 rule \
 && useradd --system --uid 10001 --gid rule --home-dir /work --no-create-home \
      --shell /usr/sbin/nologin rule \
 && mkdir /work \
 && chown rule:rule /work

# Installed from the build stage's wheels only (no index): what was built is what runs.
COPY --from=build /requirements.txt /tmp/requirements.txt
RUN --mount=type=bind,from=build,source=/deps,target=/tmp/deps \
    pip install --no-cache-dir --no-index --find-links /tmp/deps --requirement /tmp/requirements.txt \
 && rm /tmp/requirements.txt
COPY --from=build /wheels/ /tmp/wheels/
RUN pip install --no-cache-dir --no-index --no-deps /tmp/wheels/*.whl \
 && rm -rf /tmp/wheels \
 && pip check \
 && classimbalance-rule --help >/dev/null

COPY --chmod=0755 entrypoint.sh /entrypoint.sh

# The default status file (classimbalance-status.json, relative) lands in the working folder;
# mount a volume and set CLASSIMBALANCE_STATUS_FILE to keep it.
WORKDIR /work
USER 10001:10001
EXPOSE 9410
STOPSIGNAL SIGTERM
# /healthz answers while the process is alive; the port follows CLASSIMBALANCE_METRICS_PORT
# when it is set.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('CLASSIMBALANCE_METRICS_PORT') or '9410'; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]
# Last, so that a new revision or date reuses every layer above.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="classimbalance-rule" \
      org.opencontainers.image.description="Evaluates SageMaker Debugger's ClassImbalance rule on smdebug trials, live beside a training job; Prometheus metrics on port 9410" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim"

ENTRYPOINT ["/entrypoint.sh"]
