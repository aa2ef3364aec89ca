"""Area-weighted surface sampling: on the surface, proportional to area, seeded."""
import numpy as np
import pytest

from model_runtime.errors import InputError
from model_runtime.mesh import MeshArrays
from model_runtime.normalization import Normalization
from model_runtime.sampling import estimate_normals, sample_mesh


def two_squares():
    # square A (1x1 at z=0) as two triangles, square B (3x3 at z=5) as one quad
    v = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 5], [3, 0, 5], [3, 3, 5], [0, 3, 5]], float)
    return MeshArrays.from_polygons(v, [[0, 1, 2], [0, 2, 3], [4, 5, 6, 7]])


def test_points_lie_on_their_polygon_and_follow_area():
    m = two_squares()
    s = sample_mesh(m, count=40_000, seed=3)
    assert s.points.shape == (40_000, 3) and s.points.dtype == np.float32
    on_b = s.polygon_ids == 2
    np.testing.assert_allclose(s.points[on_b, 2], 5)
    np.testing.assert_allclose(s.points[~on_b, 2], 0)
    assert (s.points[on_b, :2] >= 0).all() and (s.points[on_b, :2] <= 3).all()
    # areas 0.5, 0.5, 9 of 10
    frac = np.bincount(s.polygon_ids, minlength=3) / 40_000
    np.testing.assert_allclose(frac, [0.05, 0.05, 0.9], atol=0.01)
    # uniform inside square B: mean at its centre
    np.testing.assert_allclose(s.points[on_b, :2].mean(0), [1.5, 1.5], atol=0.03)


def test_seeded_reproducible_and_normalised_frame():
    m = two_squares()
    n = Normalization.from_mesh(m)
    a = sample_mesh(m, 1000, seed=7, normalization=n)
    b = sample_mesh(m, 1000, seed=7, normalization=n)
    c = sample_mesh(m, 1000, seed=8, normalization=n)
    np.testing.assert_array_equal(a.points, b.points)
    assert not np.array_equal(a.points, c.points)
    assert np.abs(a.points).max() <= 0.9 + 1e-6


def test_no_area_is_an_input_error():
    m = MeshArrays.from_triangles(np.zeros((3, 3)), [[0, 1, 2]])
    with pytest.raises(InputError, match="no area"):
        sample_mesh(m, 10)


def test_sample_normals_are_the_triangles_unit_normals():
    s = sample_mesh(two_squares(), count=2000, seed=1)
    assert s.normals.shape == (2000, 3) and s.normals.dtype == np.float32
    # both squares lie in z = const planes, wound counter-clockwise seen from +z
    np.testing.assert_allclose(s.normals, np.tile([0, 0, 1], (2000, 1)), atol=1e-6)


def test_estimated_normals_follow_the_surface_up_to_sign():
    rng = np.random.default_rng(0)
    # points on a unit sphere: the normal is the position, up to sign
    p = rng.normal(size=(3000, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    n = estimate_normals(p, neighbours=16)
    assert n.shape == (3000, 3)
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-5)
    assert np.median(np.abs(np.einsum("ij,ij->i", n, p))) > 0.99
