#!/usr/bin/env bash
# Creates the project's virtual environment (.venv) and installs, exactly as locked in
# requirements/dev.txt (every package pinned and checked against its sha256), Accord's dependencies
# and development tools; then Accord itself and its development harness (dev/, the accord-dev
# package), both editable. `scripts/lock.sh` rewrites the lock from the ranges in pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
command -v "$PYTHON" >/dev/null 2>&1 || { echo "$PYTHON not found: install Python 3.11 or newer" >&2; exit 1; }
if [ ! -x .venv/bin/python ] && ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  # Debian ships `python3 -m venv` (with ensurepip) in a package of its own.
  command -v apt-get >/dev/null 2>&1 || { echo "$PYTHON cannot create a virtual environment (no venv/ensurepip)" >&2; exit 1; }
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  version=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  echo "==> installing python${version}-venv (apt)"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "python${version}-venv" >/dev/null
fi
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(cat requirements/dev.txt pyproject.toml dev/pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "==> installing the locked dependencies (requirements/dev.txt), then accord and accord-dev (editable)"
  .venv/bin/python -m pip install --quiet --require-hashes -r requirements/dev.txt
  # Without build isolation, the build uses the locked setuptools instead of fetching one unchecked.
  .venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e . -e ./dev
  rm -f .venv/.installed-*
  touch "$stamp"
fi
