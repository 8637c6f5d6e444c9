#!/usr/bin/env bash
# README command 2: set up everything the tests need, then run every test.
# Extra arguments go to pytest (e.g. `scripts/test.sh -k emulator`).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup.sh
scripts/setup-test-tools.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
export RAY_AUTH_MODE=disabled RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_USAGE_STATS_ENABLED=0
export KAITO_CACHE_DIR="${KAITO_CACHE_DIR:-$root/.cache/kaito}"
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
  echo "no test ran: that is a failure" >&2
  exit 1
fi
exit $rc
