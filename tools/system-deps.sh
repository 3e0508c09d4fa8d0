#!/usr/bin/env bash
# Makes sure the system packages are present, and installs what is missing with apt-get when
# running as root on Debian (otherwise says exactly what to install).
#
#   tools/system-deps.sh          what running the system needs (`make up`): Python >= 3.11
#                                 with venv, RabbitMQ, Redis and PostgreSQL (their binaries
#                                 only: `make up` and the tests start private instances and
#                                 never use or touch a server the machine may already run),
#                                 Node.js and npm (the GraphQL gateway's install; the npm tools
#                                 of `make gen` and `make lint`)
#   tools/system-deps.sh --test   that, and what only the tests need (`make test`): Podman,
#                                 runc and debootstrap (the container tests and `make images`),
#                                 libfaketime (a service with a shifted clock), iptables and
#                                 iproute2 (the broker partition test), Chromium (the browser
#                                 tests, driven by Playwright). Podman's package enables
#                                 its system services: a machine that only runs the system
#                                 never gets them.
set -euo pipefail

tests=false
case "${1:-}" in
  "") ;;
  --test) tests=true ;;
  *) echo "usage: $0 [--test]" >&2; exit 2 ;;
esac

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
# `make up STORE=postgres` runs a private PostgreSQL.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
# npm installs the GraphQL gateway (with its own Node 20); `make gen` composes the GraphQL
# supergraph and `make lint` validates the AsyncAPI document with npm tools on Debian's Node.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if $tests; then
  # The container tests: Podman with runc (crun fails here), and debootstrap for a base image
  # made from Debian's packages (no image registry is reachable).
  command -v podman >/dev/null 2>&1 || missing+=(podman)
  command -v runc >/dev/null 2>&1 || missing+=(runc)
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  # A service whose clock is shifted (the clock-skew test): libfaketime, preloaded.
  compgen -G '/usr/lib/*/faketime/libfaketime.so.1' >/dev/null || missing+=(libfaketime)
  # The partition test cuts connections with iptables in a network namespace of its own.
  command -v iptables >/dev/null 2>&1 || missing+=(iptables)
  command -v ip >/dev/null 2>&1 || missing+=(iproute2)
  # The browser tests (tests/browser): Playwright drives Debian's Chromium, /usr/bin/chromium
  # (`playwright install` downloads a browser of its own: it cannot here).
  [ -x /usr/bin/chromium ] || missing+=(chromium)
fi

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
