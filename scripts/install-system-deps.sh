#!/usr/bin/env bash
# Installs the distribution packages pkube needs, only those that are missing.
# Idempotent; needs root on Debian/Ubuntu.
set -euo pipefail
declare -A want=(
  [curl]=curl       # install-etcd.sh fetches etcd 3.5 from Debian 13's archive ...
  [gpgv]=gpgv       # ... and checks its signature,
  [xz]=xz-utils     # ... and reads its package index
  [busybox]=busybox-static
  [runc]=runc
  [nft]=nftables
  [iptables]=iptables
  [docker-registry]=docker-registry
  [skopeo]=skopeo
  [ip]=iproute2
  [cc]=gcc
  [podman]=podman   # bench/runtime.py times it next to pdocker
  [iperf3]=iperf3   # bench/network.py: pod-to-pod TCP throughput
)
missing=()
for bin in "${!want[@]}"; do
  command -v "$bin" >/dev/null 2>&1 || missing+=("${want[$bin]}")
done
# busybox must be the static build: the runtime copies it into images.
if command -v busybox >/dev/null 2>&1 && ldd "$(command -v busybox)" >/dev/null 2>&1; then
  missing+=(busybox-static)
fi
# the runtime compiles its small C shim and pause programs against libc headers.
[ -f /usr/include/stdio.h ] || missing+=(libc6-dev)
# install-etcd.sh checks Debian 13's archive against the Debian archive keyring.
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || missing+=(debian-archive-keyring)
# the shim compiles the default seccomp profile with libseccomp (linked statically).
[ -f /usr/include/seccomp.h ] || missing+=(libseccomp-dev)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# etcd 3.5, not the distribution's 3.4 (why: scripts/install-etcd.sh).
bash "$(dirname "$0")/install-etcd.sh"
