#!/usr/bin/env bash
# Unpacks Debian packages into a directory, never installing them (tools/prometheus.sh and
# tools/alertmanager.sh: the installed servers would start on every interface, by their init
# scripts). Usage: tools/debian-unpack.sh DEST PACKAGE... ; DEST is emptied first. Downloads
# with apt-get (refreshing the package lists first when they are stale and we are root).
set -euo pipefail

dest=$(realpath -m "$1")
shift
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
if ! apt-get download "$@" >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq
    apt-get download "$@" >/dev/null
  else
    echo "error: cannot download Debian's $*; run 'sudo apt-get update'" >&2
    exit 1
  fi
fi
rm -rf "$dest"
mkdir -p "$dest"
for deb in *.deb; do
  dpkg-deb -x "$deb" "$dest"
done
echo "unpacked $(ls ./*.deb | tr '\n' ' ')into $dest"
