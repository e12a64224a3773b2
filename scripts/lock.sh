#!/usr/bin/env bash
# Writes the lock files in requirements/ from the ranges in pyproject.toml, with uv
# (`uv pip compile`): every package pinned to one version, with the sha256 of each of its files.
#
#   requirements/dev.txt   Accord, its development tools and the build tools: scripts/setup-python.sh
#   requirements/prod.txt  Accord's run-time dependencies and the build tools: the Dockerfile
#
# Both are universal (any platform) for Python 3.11; prod.txt takes the same versions as dev.txt.
# Run it after changing a dependency in pyproject.toml or dev/pyproject.toml, or with --upgrade to
# move every pin to the newest version the ranges allow; commit the result. uv reads the package
# index from its own settings (UV_INDEX_URL, uv.toml), as pip does from pip.conf.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-.venv/bin/uv}
[ -x "$UV" ] || UV=$(command -v uv) || { echo "uv not found: run scripts/setup-python.sh first" >&2; exit 1; }
common=(--universal --python-version 3.11 --generate-hashes --quiet --custom-compile-command scripts/lock.sh "$@")
"$UV" pip compile "${common[@]}" --extra dev pyproject.toml dev/pyproject.toml requirements/build.in -o requirements/dev.txt
"$UV" pip compile "${common[@]}" --constraint requirements/dev.txt pyproject.toml requirements/build.in -o requirements/prod.txt
echo "requirements/dev.txt: $(grep -c '^[a-z]' requirements/dev.txt) packages; requirements/prod.txt: $(grep -c '^[a-z]' requirements/prod.txt)"
