#!/usr/bin/env bash
# The whole test suite: static checks, unit tests, and the end-to-end suite on real parts
# (a local control plane, Prometheus, helm and kubectl, all installed and started by the project).
# Extra arguments go to pytest, e.g. `scripts/test.sh tests/` for the unit tests alone.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-python.sh
if [ -x scripts/install-tools.sh ] && [ "${ACCORD_SKIP_TOOLS:-}" != "1" ]; then
  scripts/install-tools.sh
fi
# shellcheck disable=SC1091
. .venv/bin/activate
# One command a line: under `set -e` a failure on the left of `&&` does not stop the script.
echo "==> ruff";          ruff check .
ruff format --check .
echo "==> mypy";          mypy
echo "==> import-linter"; lint-imports
echo "==> CRDs match the models"; accord crds --check
echo "==> pytest"
exec pytest "$@"
