#!/usr/bin/env bash
# README command 1: set up, then run the local tuning Workspace end to end on a local Ray:
# QLoRA-tune SmolLM2-135M-Instruct on a bundled dataset, serve it, ask it what it learned, stop.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup.sh
export RAY_USAGE_STATS_ENABLED=0
exec .venv/bin/kaito-workspace run --local -f examples/local/tuning-smollm2.yaml \
  --once "${1:-What is the name of the Kaito Ray mascot?}"
