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

# Optional second environment: Blender 4.2 LTS as a module, for tests/test_bpy42.py (the oldest
# Blender the manifest allows). Made under CI=true or with PARTFIELD_BPY42=1; only bpy and numpy
# are installed, torch & co. come from .venv through a .pth file (same CPython 3.11, same numpy).
if [ "${CI:-}" = "true" ] || [ "${PARTFIELD_BPY42:-0}" = "1" ]; then
  SP42=.venv-bpy42/lib/python3.11/site-packages
  if [ ! -d "$SP42/bpy-4.2.0.dist-info" ]; then
    rm -rf .venv-bpy42
    "$PY" -m venv .venv-bpy42
    .venv-bpy42/bin/python -m pip install -q "bpy==4.2.0" "numpy==1.26.4"
  fi
  .venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' > "$SP42/partfield_shared_venv.pth"
fi
