#!/usr/bin/env bash
# Fresh machine: set up .venv, then segment demo meshes with the bundled default model.
# 1) model_runtime CLI: per-face labels (.npy/.json) and a coloured .ply per part count;
# 2) a picture of those parts (PNG, rendered headless with the bpy module);
# 3) the Blender batch script (bpy module): .blend with vertex groups + .glb with one node per part.
# PARTFIELD_SKIP_SETUP=1 skips the set-up step (an existing .venv is used as it is).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${PARTFIELD_SKIP_SETUP:-0}" != 1 ]; then
  bash scripts/setup_env.sh
fi
export BLENDER_USER_RESOURCES="${BLENDER_USER_RESOURCES:-$(mktemp -d)}"
PY=.venv/bin/python
OUT=out/demo
$PY scripts/make_demo_meshes.py "$OUT/meshes"
$PY -m model_runtime segment "$OUT/meshes/chair.obj" --parts 2..8 --out "$OUT/cli"
$PY scripts/render_demo.py "$OUT/meshes/chair.obj" "$OUT/cli" "$OUT/chair_parts.png" --parts 2,4,6,8 2> >(grep -v '^EGL Error' >&2)
$PY partfield_blender/batch.py -- "$OUT/meshes" --output "$OUT/blender" --parts 4,8 --export blend,glb,labels
echo "demo outputs in $OUT/ (cli/: labels + coloured meshes, blender/: .blend and .glb per part count)"
echo "picture of the parts: $OUT/chair_parts.png"
