"""The network reproduces the released implementation on the parity fixture (tests/data/)."""
import numpy as np
import pytest
import torch

from model_runtime.checkpoint import LoadedWeights, build_network
from model_runtime.config import PartFieldConfig
from model_runtime.field_model import FieldModel, Triplanes
from model_runtime.network import PartFieldNet, decode_from_table, triplane_table
from tests.reference_model import manifest, parity_fixture, reference_state_dict, relative_error

TOL = 1e-4


@pytest.fixture(scope="module")
def reference_net(reference_dir):
    weights = LoadedWeights(reference_state_dict(), PartFieldConfig.released(), "state_dict")
    return build_network(weights, "reference weights")


def test_state_dict_matches_manifest_exactly(reference_dir):
    expected = manifest()
    own = PartFieldNet(PartFieldConfig.released()).state_dict()
    assert len(own) == len(expected) == 203
    assert set(own) == set(expected)
    assert {k: list(v.shape) for k, v in own.items()} == expected


def test_parity_with_released_implementation(reference_net):
    fx = parity_fixture()
    pts = torch.from_numpy(fx["points"])[None]
    queries = torch.from_numpy(fx["queries"])[None]
    net = reference_net
    torch.manual_seed(0)
    with torch.inference_mode():
        point_feats = net.pvcnn.pc_encoder(pts)  # (1, 256, N)
        assert relative_error(point_feats[0].T[:len(fx["pvconv0_point_features"])], fx["pvconv0_point_features"]) < TOL
        unet = net.pvcnn.unet_encoder(net.pvcnn.splat(point_feats, pts))
        plane, row, col = fx["texels"].T
        assert relative_error(unet[0].permute(0, 2, 3, 1)[plane, row, col], fx["unet_texels"]) < TOL
        full = net.triplane_transformer(unet, field_only=False)
        assert full.shape == (1, 3, 512, 128, 128)
        assert relative_error(full[0].permute(0, 2, 3, 1)[plane, row, col], fx["transformer_texels"]) < TOL
        # The inference path (SDF channels never computed) gives the same field.
        field = net.triplane_transformer(unet, field_only=True)
        assert field.shape == (1, 3, 448, 128, 128)
        assert relative_error(field, full[:, :, 64:]) < 1e-5
        feats = net.decode(field, queries)[0]
    assert relative_error(feats, fx["features"]) < TOL
    # The fast table decoder used by FieldModel equals grid_sample decoding.
    model = FieldModel(net, torch.device("cpu"), torch.float32, "reference")
    fast = model.decode(Triplanes(field), fx["queries"])
    assert relative_error(fast, fx["features"]) < TOL


def test_own_salt_is_deterministic_and_shaped(reference_net):
    weights = LoadedWeights(reference_state_dict(salt="partfield-blender"), PartFieldConfig.released(), "sd")
    net = build_network(weights, "salted weights")
    rng = np.random.default_rng(7)
    pts = rng.uniform(-0.9, 0.9, size=(3000, 3)).astype(np.float32)
    queries = rng.uniform(-0.9, 0.9, size=(500, 3)).astype(np.float32)
    model = FieldModel(net, torch.device("cpu"), torch.float32, "salted")
    first = model.decode(model.encode(pts), queries)
    second = model.decode(model.encode(pts), queries)
    assert first.shape == (500, 448) and first.dtype == np.float32
    assert np.isfinite(first).all()
    np.testing.assert_array_equal(first, second)
    # Different weights give a different field (the salt matters).
    unsalted = FieldModel(reference_net, torch.device("cpu"), torch.float32, "plain")
    other = unsalted.decode(unsalted.encode(pts), queries)
    assert relative_error(first, other) > 1e-2


def test_small_config_runs_and_has_no_dead_modules():
    cfg = PartFieldConfig.small()
    net = PartFieldNet(cfg).eval()
    keys = net.state_dict().keys()
    assert not any(k.startswith("sdf_decoder") or k == "logit_scale" for k in keys)
    assert not any(k.startswith("pvcnn.pc_encoder.encoder.1.") for k in keys)
    pts = torch.rand(1, 2000, 3) * 1.8 - 0.9
    with torch.inference_mode():
        planes = net.encode(pts)
    assert planes.shape == (1, 3, cfg.feature_dim, cfg.plane_resolution, cfg.plane_resolution)


def test_table_decoder_matches_grid_sample_at_borders():
    torch.manual_seed(1)
    planes = torch.randn(1, 3, 16, 8, 8)
    q = torch.cat([torch.rand(500, 3) * 2.4 - 1.2,  # includes points outside [-1, 1]: border padding
                   torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0], [0.0, 0.0, 0.0]])])
    ref = PartFieldNet.decode(planes, q[None])[0]
    fast = decode_from_table(triplane_table(planes), 8, q)
    assert relative_error(fast, ref) < 1e-5


def test_training_mode_is_differentiable():
    net = PartFieldNet(PartFieldConfig.small())
    pts = torch.rand(1, 500, 3) * 1.8 - 0.9
    feats = net(pts, pts[:, :50])
    feats.pow(2).mean().backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_a_network_that_reads_normals_ignores_their_sign_and_needs_them():
    import dataclasses

    from model_runtime.errors import InputError
    from model_runtime.training.trainer import tiny_config

    cfg = dataclasses.replace(tiny_config(), point_in_channels=9, point_normals=True)
    torch.manual_seed(0)
    net = PartFieldNet(cfg).eval()
    rng = np.random.default_rng(3)
    pts = rng.uniform(-0.9, 0.9, size=(1, 800, 3)).astype(np.float32)
    nrm = rng.normal(size=(1, 800, 3)).astype(np.float32)
    nrm /= np.linalg.norm(nrm, axis=-1, keepdims=True)
    flip = np.where(rng.random((1, 800, 1)) < 0.5, -1.0, 1.0).astype(np.float32)
    p, n = torch.from_numpy(pts), torch.from_numpy(nrm)
    with torch.inference_mode():
        a = net.encode(p, n)
        b = net.encode(p, n * torch.from_numpy(flip))  # inconsistent winding: same input
        c = net.encode(p, torch.roll(n, 1, dims=1))  # other normals: another field
    torch.testing.assert_close(a, b)
    assert (a - c).abs().max() > 1e-4
    with pytest.raises(ValueError, match="normal per input point"):
        net.encode(p)
    model = FieldModel(net, torch.device("cpu"), torch.float32, "tiny normals")
    assert model.reads_normals
    with pytest.raises(InputError, match="reads surface normals"):
        model.encode(pts[0])
    planes = model.encode(pts[0], nrm[0])
    assert np.isfinite(model.decode(planes, pts[0, :50])).all()
    with pytest.raises(ValueError, match="point_in_channels must be 9"):
        dataclasses.replace(cfg, point_in_channels=8).validate()
