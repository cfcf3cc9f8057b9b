#!/usr/bin/env bash
# Runs the whole test suite (CPU only, nothing downloaded).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
exec .venv/bin/python -m pytest "$@"
