#!/usr/bin/env bash
# Installs the distribution packages pkube needs, only those that are missing.
# Idempotent; needs root on Debian/Ubuntu.
set -euo pipefail
declare -A want=(
  [etcd]=etcd-server
  [etcdctl]=etcd-client
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
# the shim compiles the default seccomp profile with libseccomp (linked statically).
[ -f /usr/include/seccomp.h ] || missing+=(libseccomp-dev)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
