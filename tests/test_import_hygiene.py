"""Nothing on Blender's main thread imports torch, scipy or scikit-learn: drawing the panel
and the preferences, moving the slider, opening a saved file and its first slider move,
undo, the preview toggle and Apply (issue 16). Real bpy, the add-on installed, fresh
processes (tests/blender_scripts/hygiene_scenarios.py); also checks that the slider keeps
the staleness fingerprint cached while a real edit still shows as stale."""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("bpy")

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "tests" / "blender_scripts" / "hygiene_scenarios.py"


def _run(args, tmp_path):
    env = dict(os.environ)
    env["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp(prefix="pf_hyg_", dir=tmp_path)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO_ROOT), env.get("PYTHONPATH", "")] if p)
    env.setdefault("OMP_NUM_THREADS", "2")
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True,
                          timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and f"HYGIENE OK {args[0]}" in out, out[-6000:]
    return out


def test_main_thread_never_imports_torch_scipy_sklearn(tmp_path):
    import torch

    from model_runtime.checkpoint import save_compact
    from model_runtime.config import PartFieldConfig
    from model_runtime.network import PartFieldNet

    torch.manual_seed(0)
    cfg = PartFieldConfig.small()
    weights = tmp_path / "w.safetensors"
    save_compact(weights, PartFieldNet(cfg).state_dict(), cfg, {"name": "hygiene"})
    blend = str(tmp_path / "segmented.blend")
    _run(["make", "--weights", str(weights), "--blend", blend], tmp_path)
    _run(["check", "--blend", blend], tmp_path)
