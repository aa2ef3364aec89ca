"""`RandomTriplaneField`: a small, real stand-in for FieldModel used by the segmentation tests.

It is not a mock: features are decoded exactly like the released network decodes its
triplanes (bilinear `grid_sample(align_corners=True, padding_mode="border")`, plane 0 at
(x, y), plane 1 at (y, z), plane 2 at (x, z), summed), from smooth random planes. Its
`encode` makes planes that depend on the point cloud (a splat, blurred), so the
pipeline's data flow is exercised end to end. This module holds no tests.
"""
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class _Config:
    plane_resolution: int = 64
    feature_dim: int = 16


def smooth_planes(resolution=64, channels=16, seed=0, smoothness=6, noise=0.05):
    """(3, C, R, R) float32 random planes, low-pass filtered (features vary over a few texels)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(3, channels, max(2, resolution // smoothness), max(2, resolution // smoothness), generator=g)
    planes = F.interpolate(coarse, size=(resolution, resolution), mode="bicubic", align_corners=True)
    return planes + noise * torch.randn(3, channels, resolution, resolution, generator=g)


def decode_planes(planes, queries):
    """Sum of bilinear samples of the three planes at normalised `queries (Q,3)` -> (Q,C)."""
    q = torch.as_tensor(np.asarray(queries, dtype=np.float32))
    coords = torch.stack([q[:, [0, 1]], q[:, [1, 2]], q[:, [0, 2]]])  # (3,Q,2) as (W,H)
    out = F.grid_sample(planes, coords[:, None], mode="bilinear", padding_mode="border", align_corners=True)
    return out[:, :, 0, :].sum(0).T.contiguous()  # (Q,C)


def decode_fn_for(planes):
    return lambda q: decode_planes(planes, q).numpy()


class RandomTriplaneField:
    """Duck-typed like FieldModel: `encode`, `decode`, `config.plane_resolution`, `describe`."""

    def __init__(self, resolution=64, channels=16, seed=0):
        self.config = _Config(resolution, channels)
        self.base = smooth_planes(resolution, channels, seed)
        self.encode_calls = 0
        self.decoded_points = 0

    def encode(self, points):
        """Base planes plus a blurred density splat of the points (depends on the input)."""
        self.encode_calls += 1
        r = self.config.plane_resolution
        p = torch.as_tensor(np.asarray(points, np.float32))
        cell = ((p.clamp(-1, 1) + 1) / 2 * (r - 1)).round().long()
        dens = torch.zeros(3, r * r)
        for i, (a, b) in enumerate([(0, 1), (1, 2), (0, 2)]):
            dens[i].index_add_(0, cell[:, b] * r + cell[:, a], torch.ones(len(p)))
        dens = dens.view(3, 1, r, r) / max(1, len(p)) * r
        dens = F.avg_pool2d(dens, 5, 1, 2)
        return self.base + dens * torch.linspace(-1, 1, self.config.feature_dim).view(1, -1, 1, 1)

    def decode(self, triplanes, queries, max_memory_mb=None):
        self.decoded_points += len(queries)
        return decode_planes(triplanes, queries).numpy()

    def describe(self):
        return {"name": "random-triplane-test-field", "licence": "test", "device": "cpu", "path": None}
