"""Shared test setup: repo root importable, test data located, bpy isolated per process.

The reference network's data (manifest, parity arrays, sample checkpoint) is in tests/data/,
so those tests run everywhere. The COSEG subset is not in the repository: it is found at
$PARTFIELD_COSEG_DIR (default ../shared/datasets/coseg_subset next to the checkout). Without
it the dataset tests skip with that reason; under CI=true they fail instead.
"""
import os
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_DATA = REPO_ROOT / "tests" / "data"
COSEG_ENV = "PARTFIELD_COSEG_DIR"
DEFAULT_COSEG_DIR = REPO_ROOT.parent / "shared" / "datasets" / "coseg_subset"
COSEG_DIR = Path(os.environ.get(COSEG_ENV) or DEFAULT_COSEG_DIR).expanduser()

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
# Subprocesses (bpy scripts, CLI runs) find the repo packages too.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")] if p
)
# bpy must never write to ~/.config, and parallel processes must not share a folder.
os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="pf_blender_user_"))


def running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing_data(message: str):
    """Skip with the reason (printed in the summary: -rs), or fail under CI=true."""
    if running_in_ci():
        pytest.fail(f"{message} (CI=true: a missing dataset is an error)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def reference_dir():
    """The reference network's data in the repository (tests/data/)."""
    return TEST_DATA


@pytest.fixture(scope="session")
def coseg_dir():
    if not (COSEG_DIR / "chairs" / "shapes").is_dir():
        missing_data(f"COSEG subset not found at {COSEG_DIR}: set {COSEG_ENV} to the folder holding "
                     f"chairs/ and tele-aliens/ to run the dataset tests")
    return COSEG_DIR


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    """A small real PartField network (random init, seed 0) saved as fp32 compact weights."""
    import torch

    from model_runtime.checkpoint import save_compact
    from model_runtime.config import PartFieldConfig
    from model_runtime.network import PartFieldNet

    torch.manual_seed(0)
    cfg = PartFieldConfig.small()
    path = tmp_path_factory.mktemp("ckpt") / "small.safetensors"
    save_compact(path, PartFieldNet(cfg).state_dict(), cfg, {"name": "test-small"}, dtype=torch.float32)
    return path
