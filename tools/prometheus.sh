#!/usr/bin/env bash
# Unpacks Debian's prometheus package (prometheus and promtool) into the directory given, never
# installing it: the installed package starts a server on every interface (its init script).
set -euo pipefail

dest=$(realpath -m "$1")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
if ! apt-get download prometheus >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq
    apt-get download prometheus >/dev/null 2>&1
  else
    echo "error: cannot download Debian's prometheus package; run 'sudo apt-get update'" >&2
    exit 1
  fi
fi
rm -rf "$dest"
mkdir -p "$dest"
dpkg-deb -x prometheus_*.deb "$dest"
echo "unpacked $(ls prometheus_*.deb) into $dest"
