#!/usr/bin/env bash
# Makes sure the system packages the project runs on are present: Python >= 3.11 with venv,
# RabbitMQ, Redis and PostgreSQL (their binaries only: tests and `make up` start private
# instances and never use or touch a server the machine may already run), Podman and
# debootstrap (the container tests), iptables and iproute2 (the partition test), Node.js and
# npm (the AsyncAPI document's validation), libfaketime (a service with a shifted clock). Installs what is missing with apt-get when running
# as root on Debian; otherwise says exactly what to install.
set -euo pipefail

python=${PYTHON:-python3}
missing=()

if ! command -v "$python" >/dev/null 2>&1; then
  echo "error: $python not found; install Python >= 3.11 (Debian: apt-get install python3)" >&2
  exit 1
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "error: $python is $("$python" --version 2>&1); this project needs Python >= 3.11" >&2
  exit 1
fi
"$python" -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || missing+=(rabbitmq-server)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
# The container tests: Podman with runc (crun fails here), and debootstrap for a base image
# made from Debian's packages (no image registry is reachable).
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || missing+=(runc)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
# npm tools: `make gen` composes the GraphQL supergraph, `make lint` validates the AsyncAPI
# document with AsyncAPI's own parser; npm installs the GraphQL gateway (with its own Node 20).
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# A service whose clock is shifted (the clock-skew test): libfaketime, preloaded.
compgen -G '/usr/lib/*/faketime/libfaketime.so.1' >/dev/null || missing+=(libfaketime)
# The partition test cuts connections with iptables in a network namespace of its own.
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "error: missing system packages: ${missing[*]}" >&2
  echo "install them with: sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
