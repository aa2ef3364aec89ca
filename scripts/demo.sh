#!/usr/bin/env bash
# Fresh machine: set up .venv, then segment demo meshes with the bundled default model.
# 1) model_runtime CLI: per-face labels (.npy/.json) and a coloured .ply per part count;
# 2) the Blender batch script (bpy module): .blend with vertex groups + .glb with one node per part.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export BLENDER_USER_RESOURCES="${BLENDER_USER_RESOURCES:-$(mktemp -d)}"
PY=.venv/bin/python
OUT=out/demo
$PY scripts/make_demo_meshes.py "$OUT/meshes"
$PY -m model_runtime segment "$OUT/meshes/chair.obj" --parts 2..8 --out "$OUT/cli"
$PY partfield_blender/batch.py -- "$OUT/meshes" --output "$OUT/blender" --parts 4,8 --export blend,glb,labels
echo "demo outputs in $OUT/ (cli/: labels + coloured meshes, blender/: .blend and .glb per part count)"
