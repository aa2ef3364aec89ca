"""The in-repo reference data (tests/data/) equals the full reference folder, and our stand-in
weight generator equals its rule's original. Runs only where that folder is present
(../shared/partfield_reference or $PARTFIELD_REFERENCE_DIR); the parity test itself
(test_network.py) needs only tests/data/."""
import importlib.util
import json

import numpy as np
import pytest
import torch

from tests.reference_model import (FULL_REFERENCE_DIR, LIGHTNING_SAMPLE, MANIFEST_FILE, manifest, parity_fixture,
                                   reference_state_dict)


@pytest.fixture(scope="module")
def full_reference():
    if not (FULL_REFERENCE_DIR / "reference_weights.py").is_file():
        pytest.skip(f"full reference folder not found at {FULL_REFERENCE_DIR} (set PARTFIELD_REFERENCE_DIR): "
                    "only the cross-check of tests/data/ against it is skipped")
    return FULL_REFERENCE_DIR


def test_copies_equal_the_reference_files(full_reference):
    assert MANIFEST_FILE.read_bytes() == (full_reference / "state_dict_manifest.json").read_bytes()
    assert LIGHTNING_SAMPLE.read_bytes() == (full_reference / "lightning_format_sample.ckpt").read_bytes()
    assert len(manifest()) == json.loads(MANIFEST_FILE.read_text())["num_keys"] == 203


def test_parity_subset_is_exactly_the_full_fixture(full_reference):
    sub = parity_fixture()
    with np.load(full_reference / "partfield_parity.npz") as data:
        full = {k: data[k] for k in data.files}
    q, t = sub["query_index"], sub["texel_index"]
    np.testing.assert_array_equal(sub["points"], full["points"])
    for key, index, src in (("queries", q, "queries"), ("features", q, "features"), ("texels", t, "texels"),
                            ("unet_texels", t, "unet_texels"), ("transformer_texels", t, "transformer_texels")):
        assert sub[key].dtype == full[src].dtype
        np.testing.assert_array_equal(sub[key], full[src][index])
    n = len(sub["pvconv0_point_features"])
    np.testing.assert_array_equal(sub["pvconv0_point_features"], full["pvconv0_point_features"][:n])


@pytest.mark.parametrize("salt", ["", "partfield-blender"])
def test_standin_generator_equals_the_reference_rule(full_reference, salt):
    spec = importlib.util.spec_from_file_location("shared_reference_weights", full_reference / "reference_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    theirs = module.reference_state_dict(manifest(), salt=salt)
    ours = reference_state_dict(salt=salt)
    assert list(ours) == list(theirs) and len(ours) == 203
    for key, tensor in ours.items():
        assert tensor.dtype == theirs[key].dtype and torch.equal(tensor, theirs[key]), key
