#!/usr/bin/env bash
# Podman on a machine with no image registry: a private storage root, a containers.conf that
# works on this kind of host, and a stand-in for the Dockerfile's base image built from Debian
# packages (the real python:3.11-slim cannot be pulled here).
#
#   tests/deploy/podman_env.sh env    print the export lines that point podman at this setup
#   tests/deploy/podman_env.sh base   also make the stand-in base image unless it exists (~45 s)
#
# Everything lives under CLASSIMBALANCE_PODMAN_ROOT (default /var/tmp/classimbalance-podman) and
# is reused when present. Needs root and the Debian packages of `make deploy-tools`.
set -euo pipefail

root=${CLASSIMBALANCE_PODMAN_ROOT:-/var/tmp/classimbalance-podman}
base_image=${BASE_IMAGE:-docker.io/library/python:3.11-slim}
# Bumped when the stand-in's recipe changes, so an older stand-in is rebuilt.
standin_version=2
ca_bundle=/etc/ssl/certs/ca-certificates.crt

write_config() {
  mkdir -p "$root/storage" "$root/run" "$root/tmp"
  # Written anew each time (cheap), so a change here reaches an existing setup.
  cat >"$root/containers.conf" <<CONF
# Written by tests/deploy/podman_env.sh.
[containers]
# pip inside RUN and the containers need this host's CA bundle to reach the package registries.
volumes = ["$ca_bundle:$ca_bundle:ro"]
# podman's defaults exceed this host's hard limits.
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$root/tmp"

[network]
network_backend = "netavark"
CONF
  cat >"$root/storage.conf" <<CONF
# Written by tests/deploy/podman_env.sh.
[storage]
driver = "overlay"
graphroot = "$root/storage"
runroot = "$root/run"
CONF
}

exports() {
  printf 'export CONTAINERS_CONF=%q\n' "$root/containers.conf"
  printf 'export CONTAINERS_STORAGE_CONF=%q\n' "$root/storage.conf"
}

debian_mirror() {
  # The mirror apt already uses: the first deb822 URIs line, else the first deb line.
  local uri
  uri=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -n 1 || true)
  if [ -z "$uri" ]; then
    uri=$(awk '$1 == "deb" && $2 !~ /^\[/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

make_base() {
  if podman image exists "$base_image"; then
    local made
    made=$(podman image inspect --format '{{ index .Labels "classimbalance.standin" }}' "$base_image")
    if [ "$made" = "$standin_version" ]; then
      return 0
    fi
    if [ -z "$made" ]; then
      echo "$base_image is not a stand-in of this script; keeping it" >&2
      return 0
    fi
    echo "the stand-in $base_image is of an older recipe ($made); making it anew" >&2
  fi
  echo "making the stand-in base image $base_image with debootstrap (about a minute)" >&2
  local rootfs
  rootfs=$(mktemp -d "$root/rootfs.XXXXXX")
  trap 'rm -rf "$rootfs"' EXIT
  # python3-dev: the real image has Python's headers, which building a C extension needs.
  debootstrap --variant=minbase \
    --include=python3,python3-pip,python3-venv,python3-dev,ca-certificates \
    bookworm "$rootfs" "$(debian_mirror)" >"$root/debootstrap.log" 2>&1 || {
    tail -n 30 "$root/debootstrap.log" >&2
    return 1
  }
  # As in the real image: pip may install into the system interpreter; python and pip on PATH.
  rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
  ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
  ln -sf /usr/bin/pip3 "$rootfs/usr/local/bin/pip"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | podman import --quiet \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "LABEL classimbalance.standin=$standin_version" \
    --change 'CMD ["python3"]' - "$base_image" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
}

case "${1:-}" in
  env)
    write_config
    exports
    ;;
  base)
    write_config
    eval "$(exports)"
    make_base
    exports
    ;;
  *)
    echo "usage: $0 env|base" >&2
    exit 64
    ;;
esac
