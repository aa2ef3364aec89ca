"""Helpers for tests: the shared reference weights and the parity fixture."""
import json
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np

REFERENCE_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "partfield_reference"


def manifest() -> dict:
    return json.loads((REFERENCE_DIR / "state_dict_manifest.json").read_text())["state_dict"]


def reference_state_dict(salt: str = ""):
    if str(REFERENCE_DIR) not in sys.path:
        sys.path.insert(0, str(REFERENCE_DIR))
    from reference_weights import reference_state_dict as build

    return build(manifest(), salt=salt)


@lru_cache(maxsize=1)
def parity_fixture() -> dict:
    with np.load(REFERENCE_DIR / "partfield_parity.npz") as data:
        return {k: data[k] for k in data.files}


def relative_error(actual, expected) -> float:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.abs(actual - expected).max() / np.abs(expected).max())
