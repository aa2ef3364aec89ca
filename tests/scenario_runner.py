"""Run one scenario of a bpy scenario script (tests/blender_scripts/*_scenarios.py) in its own
process, with its own Blender user folder and the repo importable; assert it said OK."""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = REPO_ROOT / "tests" / "blender_scripts"


def run_scenario_script(script: str, name: str, tmp_path, args=(), timeout: int = 600) -> str:
    """`script` is a file name under tests/blender_scripts; returns the process output."""
    env = dict(os.environ)
    env["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp(prefix=f"pf_{Path(script).stem}_", dir=tmp_path)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO_ROOT), env.get("PYTHONPATH", "")] if p)
    env.setdefault("OMP_NUM_THREADS", "2")
    cmd = [sys.executable, str(SCRIPTS / script), name, *map(str, args), "--workdir", str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and f"SCENARIO OK {name}" in out, out[-6000:]
    return out
