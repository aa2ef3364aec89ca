"""Shared test setup: repo root importable, shared/ located, bpy isolated per process."""
import os
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"
REFERENCE_DIR = SHARED / "partfield_reference"
COSEG_DIR = SHARED / "datasets" / "coseg_subset"

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
# Subprocesses (bpy scripts, CLI runs) find the repo packages too.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")] if p
)
# bpy must never write to ~/.config, and parallel processes must not share a folder.
os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="pf_blender_user_"))


@pytest.fixture(scope="session")
def reference_dir():
    if not REFERENCE_DIR.is_dir():
        pytest.skip(f"shared reference folder not found at {REFERENCE_DIR}")
    return REFERENCE_DIR


@pytest.fixture(scope="session")
def coseg_dir():
    if not COSEG_DIR.is_dir():
        pytest.skip(f"COSEG subset not found at {COSEG_DIR}")
    return COSEG_DIR
