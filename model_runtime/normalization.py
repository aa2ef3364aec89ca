"""The frame the network expects: bounding-box centre at 0, longest side spanning [-0.9, 0.9]."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError

HALF_SPAN = 0.9  # the longest bbox side maps to [-HALF_SPAN, HALF_SPAN]


@dataclass(frozen=True)
class Normalization:
    """`normalised = (p - center) * scale`; `invert` maps back to the user's coordinates."""

    center: tuple  # (3,) floats
    scale: float

    @classmethod
    def from_points(cls, points) -> "Normalization":
        """Bounding box of `points (N,3)` (only finite rows count)."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        p = p[np.isfinite(p).all(axis=1)]
        if p.shape[0] == 0:
            raise InputError("no finite points to normalise")
        lo, hi = p.min(axis=0), p.max(axis=0)
        extent = float((hi - lo).max())
        if not extent > 0:
            raise InputError("the points have no extent (all at one position)")
        return cls(center=tuple(float(c) for c in (lo + hi) / 2), scale=2 * HALF_SPAN / extent)

    @classmethod
    def from_mesh(cls, mesh) -> "Normalization":
        """Bounding box of the vertices a `MeshArrays` actually uses."""
        return cls.from_points(mesh.vertices[mesh.referenced_vertices()])

    def apply(self, points) -> np.ndarray:
        """User coordinates -> normalised frame (float64)."""
        return (np.asarray(points, dtype=np.float64) - np.asarray(self.center)) * self.scale

    def invert(self, points) -> np.ndarray:
        """Normalised frame -> user coordinates (float64)."""
        return np.asarray(points, dtype=np.float64) / self.scale + np.asarray(self.center)

    def to_array(self) -> np.ndarray:
        """(4,) [cx, cy, cz, scale], for npz storage."""
        return np.array([*self.center, self.scale], dtype=np.float64)

    @classmethod
    def from_array(cls, arr) -> "Normalization":
        arr = np.asarray(arr, dtype=np.float64).reshape(4)
        return cls(center=tuple(float(c) for c in arr[:3]), scale=float(arr[3]))
