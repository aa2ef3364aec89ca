"""Area-weighted surface sampling: on the surface, proportional to area, seeded."""
import numpy as np
import pytest

from model_runtime.errors import InputError
from model_runtime.mesh import MeshArrays
from model_runtime.normalization import Normalization
from model_runtime.sampling import sample_mesh


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
