"""`pip install -e .` (what scripts/setup_env.sh does) gives a `partfield` command that works
from any folder. Checked in a throwaway venv that borrows this interpreter's packages (torch,
numpy, setuptools) through a .pth file, so the shared .venv is never modified."""
import os
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_partfield_console_command_from_any_folder(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    borrowed = [p for p in [*site.getsitepackages(), sysconfig.get_paths()["purelib"]] if Path(p).is_dir()]
    (purelib / "borrowed_packages.pth").write_text("\n".join(dict.fromkeys(borrowed)) + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # only the install may find the package
    env["OMP_NUM_THREADS"] = "1"
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "-e", str(REPO),
                        "--no-deps", "--no-build-isolation"], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    exe = venv / "bin" / "partfield"
    assert exe.is_file()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = subprocess.run([str(exe), "--help"], cwd=elsewhere, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and r.stdout.startswith("usage: partfield ") and "segment" in r.stdout, r.stderr
    mesh = elsewhere / "tet.obj"
    mesh.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 3 2\nf 1 2 4\nf 1 4 3\nf 2 3 4\n")
    r = subprocess.run([str(exe), "segment", "tet.obj", "--parts", "2", "--out", "out", "--points", "2000",
                        "--device", "cpu", "--quiet"], cwd=elsewhere, capture_output=True, text=True, env=env,
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "tet: 4 polygons -> parts 2 written to out" in r.stdout
    assert (elsewhere / "out" / "tet_k2.labels.npy").is_file()
