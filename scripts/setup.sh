#!/usr/bin/env bash
# Creates .venv and installs kinema with its test tools, from the project's own files.
# torch is installed first from the CPU wheel these machines carry, so no CUDA build is pulled;
# on a GPU machine, install the torch build for your CUDA first and this step keeps it.
# For the tests it also makes .venv-openai (the real OpenAI SDK, kept apart from the AI/ML API
# SDK's vendored `openai`) and installs Debian's chromium for the playground's browser test and
# Debian's wrk, the load generator of benchmarks/load.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    .venv/bin/python -m pip install --quiet "torch==2.13.0"
fi
.venv/bin/python -m pip install --quiet -e ".[test]"

[ -x .venv-openai/bin/python ] || "$PYTHON" -m venv .venv-openai
.venv-openai/bin/python -m pip install --quiet -r requirements/openai-sdk.txt

MISSING=""
command -v chromium >/dev/null 2>&1 || MISSING="$MISSING chromium"
command -v wrk >/dev/null 2>&1 || MISSING="$MISSING wrk"
if [ -n "$MISSING" ]; then
    SUDO=$([ "$(id -u)" -eq 0 ] && echo "" || echo "sudo")
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $MISSING >/dev/null
fi
