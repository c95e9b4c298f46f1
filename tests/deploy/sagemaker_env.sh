#!/usr/bin/env bash
# A virtual environment with SageMaker's Python SDK, apart from the project's .venv: the SDK pulls
# in about a hundred packages (boto3 pins, pandas, protobuf, ...) that the image never needs and
# that could move the versions the project's tests pin. Only tests/deploy/test_sagemaker_example.py
# uses it, to build the README's custom-rule example with the real SDK.
#
#   tests/deploy/sagemaker_env.sh    make the environment unless it exists; print its python
#
# The environment lives in CLASSIMBALANCE_SAGEMAKER_VENV (default
# /var/tmp/classimbalance-sagemaker-venv) and is made once: a marker file naming the SDK version
# says the install finished, so an interrupted install is redone and a version bump reinstalls.
# Needs PyPI (a few minutes the first time). Everything but the python path goes to stderr.
set -euo pipefail

venv=${CLASSIMBALANCE_SAGEMAKER_VENV:-/var/tmp/classimbalance-sagemaker-venv}
# The SDK version the README's example is checked against; bump it with the README.
sdk=sagemaker==2.257.7
marker=$venv/.installed
python=$venv/bin/python

# One install at a time (two test runs at once would both start one); flock is util-linux's.
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
if command -v flock >/dev/null 2>&1; then
  flock 9
fi

if [ ! -f "$marker" ] || [ "$(cat "$marker")" != "$sdk" ]; then
  # Redone from scratch, but only over a virtual environment: never a folder named by mistake.
  if [ -e "$venv" ] && [ ! -f "$venv/pyvenv.cfg" ] && [ -n "$(ls -A "$venv" 2>/dev/null)" ]; then
    echo "$venv exists and is not a virtual environment; set CLASSIMBALANCE_SAGEMAKER_VENV" >&2
    exit 1
  fi
  echo "installing $sdk into $venv (a few minutes the first time)" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  log=$(mktemp)
  trap 'rm -f "$log"' EXIT
  if ! "$python" -m pip install --quiet --disable-pip-version-check "$sdk" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    exit 1
  fi
  echo "$sdk" >"$marker"
fi
echo "$python"
