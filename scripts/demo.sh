#!/usr/bin/env bash
# The demo: a local cluster, Prometheus, the workload emulator replaying a bundled trace, and the
# operator with the examples; negotiations are printed as they happen. Ctrl-C stops everything.
# Arguments go to `accord-demo` (dev/, the development package; e.g. --cluster kind, --duration 300,
# --approve-after 0).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-python.sh
scripts/install-tools.sh
exec .venv/bin/accord-demo "$@"
