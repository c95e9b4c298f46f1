#!/bin/sh
# The image's entrypoint: the evaluator replaces this shell (exec), so it runs as PID 1 and
# SIGTERM from `docker stop`, `podman stop` or the kubelet reaches it; it then writes a terminal
# status (Stopped, or IssuesFound) and exits within two seconds.
#
# Arguments are passed through unchanged:  IMAGE --trial /trial --argmax true
# The environment needs no mapping: the evaluator reads its settings from variables itself
# (THRESHOLD_IMBALANCE or threshold_imbalance, BASE_TRIAL, RULE_CONFIG for a YAML file, ...), as
# a managed service passes rule parameters. What the image sets instead is a working folder
# (/work) where the default status file lands, and metrics on 0.0.0.0:9410 (the defaults).
#
# A first argument that is not a flag runs that command instead (IMAGE sh), for debugging.
set -eu

case "${1-}" in
  '' | -*) exec classimbalance-rule "$@" ;;
  *) exec "$@" ;;
esac
