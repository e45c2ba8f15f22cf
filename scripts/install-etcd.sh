#!/usr/bin/env bash
# Installs etcd 3.5 (etcd, etcdctl, etcdutl) unless `etcd` on PATH is 3.5 or newer already.
#
# Why not the distribution's package: Debian 12 ships etcd 3.4.23, whose ConcurrentReadTx copies
# the buffer of uncommitted writes on every read, so its memory grows under a steady load
# (docs/reliability.md); Kubernetes runs on etcd 3.5 or newer. Debian 13 (trixie) packages 3.5,
# built against a libc that Debian 12 has, so its binaries are taken from there, with apt's
# chain of trust done by hand: the suite's InRelease is checked with gpgv against the Debian
# archive keyring, the Packages index against InRelease's SHA256, each .deb against the index.
# They are unpacked into /opt/pkube/etcd-<version> and linked from /usr/local/bin, which comes
# before /usr/bin on PATH. Idempotent; needs root.
set -euo pipefail

SUITE=trixie
MIRROR=http://deb.debian.org/debian   # as apt reaches it: the signature, not TLS, vouches for the files
PREFIX=/opt/pkube
PACKAGES=(etcd-server etcd-client)
BINARIES=(etcd etcdctl etcdutl)

installed_version() {
  command -v etcd >/dev/null 2>&1 || return 0
  etcd --version 2>/dev/null | sed -n 's/^etcd Version: //p'
}

is_new_enough() {  # VERSION: 3.5 or newer, and etcdutl installed beside it
  local major minor
  IFS=. read -r major minor _ <<<"$1"
  [ -n "$major" ] && command -v etcdutl >/dev/null 2>&1 &&
    { [ "$major" -gt 3 ] || { [ "$major" -eq 3 ] && [ "$minor" -ge 5 ]; }; }
}

sha256_in() {  # FILE NAME: the SHA256 that FILE (InRelease) gives NAME
  awk -v name="$2" '/^SHA256:/ {on = 1; next} /^[^ ]/ {on = 0} on && $3 == name {print $1}' "$1"
}

stanza_field() {  # PACKAGES_FILE PACKAGE FIELD
  awk -v pkg="$2" -v field="$3:" '$1 == "Package:" {on = ($2 == pkg)} on && $1 == field {print $2; exit}' "$1"
}

fetch_verified() {  # URL DEST SHA256
  curl -fsSL --retry 3 -o "$2" "$1"
  echo "$3  $2" | sha256sum -c --quiet - || { echo "install-etcd: $1 does not match its checksum" >&2; exit 1; }
}

main() {
  local current
  current=$(installed_version)
  if is_new_enough "$current"; then
    return 0
  fi
  for tool in curl gpgv xz dpkg-deb; do
    command -v "$tool" >/dev/null || { echo "install-etcd: $tool is missing" >&2; exit 1; }
  done
  local arch index version
  arch=$(dpkg --print-architecture)
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
  local work=$WORK
  curl -fsSL --retry 3 -o "$work/InRelease" "$MIRROR/dists/$SUITE/InRelease"
  gpgv --keyring /usr/share/keyrings/debian-archive-keyring.gpg "$work/InRelease" 2>/dev/null ||
    { echo "install-etcd: $SUITE's InRelease has no good signature of the Debian archive" >&2; exit 1; }
  index="main/binary-$arch/Packages.xz"
  fetch_verified "$MIRROR/dists/$SUITE/$index" "$work/Packages.xz" "$(sha256_in "$work/InRelease" "$index")"
  xz -d "$work/Packages.xz"
  version=$(stanza_field "$work/Packages" etcd-server Version)
  echo "installing etcd $version from Debian $SUITE (found: ${current:-none})"
  local dest="$PREFIX/etcd-$version"
  mkdir -p "$work/root"
  for pkg in "${PACKAGES[@]}"; do
    fetch_verified "$MIRROR/$(stanza_field "$work/Packages" "$pkg" Filename)" "$work/$pkg.deb" \
      "$(stanza_field "$work/Packages" "$pkg" SHA256)"
    dpkg-deb -x "$work/$pkg.deb" "$work/root"
  done
  mkdir -p "$dest" /usr/local/bin
  for bin in "${BINARIES[@]}"; do
    install -m 0755 "$work/root/usr/bin/$bin" "$dest/$bin"
    ln -sfn "$dest/$bin" "/usr/local/bin/$bin"
  done
}

main "$@"
