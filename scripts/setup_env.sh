#!/usr/bin/env bash
# Create .venv with the pinned environment (idempotent). Usage: bash scripts/setup_env.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt
# This checkout as an editable package: the `partfield` command (.venv/bin/partfield) works from any folder.
.venv/bin/python -m pip install -q -e . --no-deps --no-build-isolation
