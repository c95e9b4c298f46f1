# classimbalance-rule: SageMaker Debugger's ClassImbalance rule, evaluated beside a training job.
#
# Two images from this one Dockerfile, its two targets:
#   slim (the default, last)  the native reader only              classimbalance-rule:0.1.0
#   full                      slim plus smdebug and pandas, for   classimbalance-rule:0.1.0-smdebug
#                             --reader smdebug
# The dependencies are installed from the locks in config/requirements (`make lock` writes them):
#   docker build -t classimbalance-rule:0.1.0 .
#   docker build --target full -t classimbalance-rule:0.1.0-smdebug .
#   podman build --format docker ... (the same arguments; docker format keeps HEALTHCHECK)
# (`--build-context locks=DIR` builds with other locks; the Makefile passes config/requirements.)
#
# The image runs as uid 10001, gid 0, and under any other uid with gid 0 (OpenShift's
# restricted SCC): what it writes in the image (/work, its working folder and HOME) belongs to
# group 0 and is group-writable. A folder mounted for the status file must be writable by the
# container's uid or by group 0: run as yourself to write into a folder of yours,
#   mkdir -p out
#   docker run --rm --user "$(id -u):0" -v "$PWD/trial:/trial:ro" -v "$PWD/out:/out" \
#     -p 9410:9410 -e CLASSIMBALANCE_STATUS_FILE=/out/status.json classimbalance-rule:0.1.0 \
#     --trial /trial --argmax true
# (or keep uid 10001 and let it write there: chmod o+rwx out, or chgrp 0 out && chmod g+rwx out).
#
# Settings come from the environment (THRESHOLD_IMBALANCE=5), a YAML file (RULE_CONFIG) and
# flags, as the README's Configuration section says. Exit codes: 0 NoIssuesFound, 1 IssuesFound,
# 2 Error, 3 NoIssuesFound without the checks having run (fewer than samples labels), 4 Stopped.
ARG PYTHON_IMAGE=docker.io/library/python:3.11-slim

# -- locks: the pinned requirements, each with its hashes ----------------------------------------
# Replaced by the build context of the same name (--build-context locks=config/requirements);
# without one, taken from the main context.
FROM scratch AS locks
COPY config/requirements/*.txt /

# -- tools: the locked setuptools and wheel, which build what is built from source ---------------
# A C compiler, here only: it builds the project's compiled kernels (evaluator/compiled) and
# smdebug's pyinstrument-cext, and stays out of the image. Versions come from the base image's
# Debian release.
FROM ${PYTHON_IMAGE} AS tools
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
COPY --from=locks /build.txt /locks/build.txt
RUN pip install --require-hashes --only-binary :all: --requirement /locks/build.txt

# -- wheel: the project's wheel, built by the locked setuptools (no build isolation) -------------
# With its compiled kernels: the build fails here, rather than ship the slower pure-Python path,
# if they do not compile (a wheel with an extension is platform-tagged, one without is "any").
FROM tools AS wheel
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY evaluator/ evaluator/
COPY container/ container/
RUN pip wheel --no-index --no-deps --no-build-isolation --wheel-dir /wheels . \
 && ls /wheels/*-linux_*.whl

# -- smdebug: what the full image adds, installed under /install as its files land in / ---------
# smdebug's pyinstrument needs pyinstrument-cext, published only as source: built here with the
# tools' compiler, which stays out of the image.
FROM tools AS smdebug
COPY --from=locks /smdebug.txt /locks/smdebug.txt
RUN pip install --require-hashes --no-deps --no-build-isolation --ignore-installed \
      --no-warn-script-location \
      --root /install --requirement /locks/smdebug.txt

# -- native: Python, the working folder, the runtime's locked dependencies and the project -------
FROM ${PYTHON_IMAGE} AS native

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    SMDEBUG_LOG_LEVEL=warning \
    HOME=/work

# Any uid may run the image with gid 0 (OpenShift assigns one at random): /work belongs to group
# 0 with the owner's rights, and nothing is owned by uid 10001 alone. The passwd entry only
# names the default uid; a uid without one works the same (HOME is set above).
RUN useradd --system --uid 10001 --gid 0 --home-dir /work --no-create-home \
      --shell /usr/sbin/nologin rule \
 && mkdir /work \
 && chgrp 0 /work \
 && chmod g=u /work

# Every dependency pinned, with its hashes (pip refuses anything unpinned or altered): two
# builds a month apart install the same files. Only wheels: nothing compiles here.
COPY --from=locks /runtime.txt /tmp/locks/runtime.txt
RUN pip install --no-cache-dir --require-hashes --only-binary :all: \
      --requirement /tmp/locks/runtime.txt \
 && rm -rf /tmp/locks

COPY --from=wheel /wheels/ /tmp/wheels/
RUN pip install --no-cache-dir --no-index --no-deps /tmp/wheels/*.whl \
 && rm -rf /tmp/wheels \
 && pip check \
 && classimbalance-rule --help >/dev/null

COPY --chmod=0755 entrypoint.sh /entrypoint.sh

# The default status file (classimbalance-status.json, relative) lands in the working folder;
# mount a volume and set CLASSIMBALANCE_STATUS_FILE to keep it.
WORKDIR /work
# Numeric, so that a cluster can check it is not root (runAsNonRoot); any uid with gid 0 works.
USER 10001:0
EXPOSE 9410
STOPSIGNAL SIGTERM
# /healthz answers while the process is alive; the port follows CLASSIMBALANCE_METRICS_PORT
# when it is set.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('CLASSIMBALANCE_METRICS_PORT') or '9410'; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]
# Late, so that a new revision or date reuses every layer above.
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

# -- full (classimbalance-rule:VERSION-smdebug): the slim image plus the smdebug reader ----------
# The slim image's layers, then smdebug's files (installed in the smdebug stage, checked against
# the lock's hashes there) and pip check's empty layer: nothing else changes.
FROM native AS full
COPY --from=smdebug /install/ /
RUN pip check \
 && python -c "import smdebug.trials, pandas"
LABEL classimbalance-rule.variant="smdebug" \
      classimbalance-rule.readers="native smdebug"

# -- slim (classimbalance-rule:VERSION, the default target): the native reader only -------------
FROM native AS slim
LABEL classimbalance-rule.variant="slim" \
      classimbalance-rule.readers="native"
