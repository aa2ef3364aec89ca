"""Helpers for tests: the stand-in weights of the released network and the parity fixture.

Everything comes from tests/data/, so the parity tests run on a fresh clone. The full
reference folder (../shared/partfield_reference, or $PARTFIELD_REFERENCE_DIR) is only used
to check that the in-repo copies and this generator equal it (tests/test_reference_data.py).
"""
import json
import math
import os
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np

TESTS_DIR = Path(__file__).resolve().parent
DATA_DIR = TESTS_DIR / "data"
MANIFEST_FILE = DATA_DIR / "state_dict_manifest.json"
PARITY_FILE = DATA_DIR / "partfield_parity_subset.npz"
LIGHTNING_SAMPLE = DATA_DIR / "lightning_format_sample.ckpt"
# Where the full reference material lives when it is there (never needed by the tests).
FULL_REFERENCE_DIR = Path(os.environ.get("PARTFIELD_REFERENCE_DIR")
                          or TESTS_DIR.parent.parent / "shared" / "partfield_reference")


def manifest() -> dict:
    """The released checkpoint's 203 state_dict keys -> shapes."""
    return json.loads(MANIFEST_FILE.read_text())["state_dict"]


def standin_tensor(key: str, shape, salt: str = ""):
    """One stand-in tensor: standard normal draws from a generator seeded with
    crc32(salt + key); matrices scaled by 1/sqrt(fan-in), 1-d weights around 1, biases small."""
    import torch

    shape = tuple(int(s) for s in shape)
    seed = zlib.crc32(f"{salt}{key}".encode("utf-8"))
    values = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)
    if len(shape) > 1:
        return values / math.sqrt(math.prod(shape[1:]))
    if key.endswith("weight"):
        return values * 0.1 + 1.0
    return values * 0.1


def reference_state_dict(salt: str = "") -> dict:
    """Stand-in weights for every key of the released network (not a trained model: they
    only pin down the arithmetic the parity fixture was computed with)."""
    return {key: standin_tensor(key, shape, salt) for key, shape in manifest().items()}


@lru_cache(maxsize=1)
def parity_fixture() -> dict:
    """The original implementation's outputs for `reference_state_dict()` (a subset of the
    full fixture, see tests/data/make_parity_subset.py)."""
    with np.load(PARITY_FILE) as data:
        return {k: data[k] for k in data.files}


def relative_error(actual, expected) -> float:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.abs(actual - expected).max() / np.abs(expected).max())
