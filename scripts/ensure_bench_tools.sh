#!/usr/bin/env bash
# The benches' peers that come from Debian rather than the lock: etcd for
# bench/coordinator. Installed only when missing, and only where apt may run.
set -euo pipefail
if ! command -v etcd >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq etcd-server >/dev/null
  else
    echo "bench: etcd is missing; install the Debian package etcd-server" >&2
    exit 1
  fi
fi
