"""Test-time augmentation: the part field averaged over rigid views of the input.

The encoder is not rotation invariant, so the same shape seen in another orientation gives a
slightly different field. `AugmentedField` wraps a field model (the duck type `segment_mesh`
uses): `encode` encodes the input points once per view (points and normals mapped by the
view's orthogonal matrix; a general rotation is then renormalised to the network's frame),
and `decode` reads every view's field at the query points mapped the same way and averages
the features. With the identity as the only view it is the wrapped model, bit for bit.

Two view sets, both signed axis permutations (they map the normalised bounding box onto
itself, so nothing is renormalised and the per-face quadrature's texel spacing holds):
"mirror" (4 views: the identity and the mirror images across the three coordinate planes;
the runtime's set) and "axes" (the identity, the two cyclic axis permutations, then their
mirror images; it lost on COSEG).

The runtime's default (`SegmentOptions.test_time_views=None`, `default_views`): 4 mirror views
for our own models, whose forward pass is cheap and where they were measured to help
(BENCHMARKS.md, "Weak kinds of issue 20: test-time augmentation on by default"); 1 (off) for
NVIDIA's released network, which costs many times more per pass and was not measured with it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import Cancelled, InputError, accepts_cancel
from .normalization import HALF_SPAN

_CYCLE = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # (x, y, z) -> (z, x, y)
_MIRROR = np.diag([-1.0, 1.0, 1.0])
VIEWS = (
    np.eye(3),
    _CYCLE,
    _CYCLE @ _CYCLE,
    _MIRROR,
    _MIRROR @ _CYCLE,
    _MIRROR @ _CYCLE @ _CYCLE,
    np.diag([1.0, -1.0, -1.0]),  # upside down (a rotation)
    -np.eye(3),  # point reflection
)
MAX_VIEWS = len(VIEWS)
# Views that keep every axis on its line (a shape stays upright about two of them):
# the identity and the mirror images across the three coordinate planes.
MIRROR_VIEWS = (np.eye(3), np.diag([-1.0, 1.0, 1.0]), np.diag([1.0, -1.0, 1.0]), np.diag([1.0, 1.0, -1.0]))
VIEW_SETS = {"axes": VIEWS, "mirror": MIRROR_VIEWS}
OWN_MODEL_VIEWS = 4  # the default for a FieldModel of our own (`default_views`)
RELEASED_MODEL_NAME = "partfield-objaverse"


def default_views(model) -> int:
    """Test-time views the runtime uses for `model` when none are asked for: `OWN_MODEL_VIEWS`
    for a `FieldModel` of our own, 1 for NVIDIA's released network (its config name, or a
    Lightning checkpoint) and for any other field object (an `AugmentedField` already averages;
    other duck-typed fields are used as given)."""
    from .field_model import FieldModel  # the runtime's model class (imports torch: called at compute time)

    if not isinstance(model, FieldModel):
        return 1
    cfg = getattr(model, "config", None)
    released = getattr(cfg, "name", None) == RELEASED_MODEL_NAME or getattr(model, "kind", None) == "lightning"
    return 1 if released else OWN_MODEL_VIEWS


def _check(cancel):
    if cancel is not None and cancel():
        raise Cancelled("test-time views cancelled")


def _signed_permutation(r: np.ndarray) -> bool:
    """True when `r` maps the axes onto axes (it keeps a centred bounding box as it is)."""
    return bool(np.allclose(np.abs(r).sum(0), 1.0) and np.allclose(np.abs(r).max(0), 1.0))


def views(n: int, view_set: str = "axes") -> list:
    """The first `n` views of a set (1 = no augmentation): "axes" (`VIEWS`) or "mirror"
    (`MIRROR_VIEWS`)."""
    n = int(n)
    if view_set not in VIEW_SETS:
        raise InputError(f"unknown view set {view_set!r}; choose from {', '.join(VIEW_SETS)}")
    chosen = VIEW_SETS[view_set]
    if not 1 <= n <= len(chosen):
        raise InputError(f"test-time views of the {view_set!r} set must be 1..{len(chosen)}, got {n}")
    return [v.copy() for v in chosen[:n]]


@dataclass
class _View:
    rot: np.ndarray  # (3, 3) orthogonal
    centre: np.ndarray  # (3,) bbox centre of the rotated input points
    scale: float  # then scaled so the longest side spans 2 * HALF_SPAN
    triplanes: object
    identity: bool = False  # the input exactly as given (no mapping of the queries)

    def map(self, q: np.ndarray) -> np.ndarray:
        return ((np.asarray(q, np.float64) @ self.rot.T - self.centre) * self.scale).astype(np.float32)


class AugmentedField:
    """A field model whose features are the mean over `rotations` (orthogonal 3x3 matrices)."""

    def __init__(self, model, rotations):
        rots = [np.asarray(r, dtype=np.float64) for r in rotations]
        if not rots:
            raise InputError("test-time augmentation needs at least one view")
        for r in rots:
            if r.shape != (3, 3) or not np.allclose(r @ r.T, np.eye(3), atol=1e-6):
                raise InputError("test-time views must be orthogonal 3x3 matrices")
        self.model = model
        self.rotations = rots

    # the rest of the duck type passes through
    @property
    def config(self):
        return self.model.config

    @property
    def reads_normals(self) -> bool:
        return bool(getattr(self.model, "reads_normals", False))

    def describe(self) -> dict:
        out = dict(self.model.describe())
        out["test_time_views"] = len(self.rotations)
        return out

    def encode(self, points, normals=None, cancel=None) -> list:
        """One encoding per view; `cancel() -> bool` is polled between views and passed on to a
        wrapped model that polls it itself (`FieldModel`), so Esc stops within one block."""
        pts = np.asarray(points, dtype=np.float64)
        inner = {"cancel": cancel} if cancel is not None and accepts_cancel(self.model.encode) else {}
        out = []
        for r in self.rotations:
            _check(cancel)
            identity = bool(np.array_equal(r, np.eye(3)))
            centre, scale = np.zeros(3), 1.0
            if identity:
                p32 = np.asarray(points, dtype=np.float32)  # the input exactly as given
            else:
                p = pts @ r.T
                if not _signed_permutation(r):  # a general rotation: back into the network's frame
                    lo, hi = p.min(0), p.max(0)
                    centre = (lo + hi) / 2
                    scale = 2 * HALF_SPAN / max(float((hi - lo).max()), 1e-12)
                p32 = ((p - centre) * scale).astype(np.float32)
            if self.reads_normals:
                n = None if normals is None else (np.asarray(normals, np.float64) @ r.T).astype(np.float32)
                planes = self.model.encode(p32, n, **inner)
            else:
                planes = self.model.encode(p32, **inner)
            out.append(_View(r, centre, scale, planes, identity))
        return out

    def decode(self, encoded, queries, max_memory_mb=None, cancel=None) -> np.ndarray:
        """The mean of every view's field at `queries`; `cancel` polled as in `encode`."""
        q = np.asarray(queries, dtype=np.float32)
        inner = {"cancel": cancel} if cancel is not None and accepts_cancel(self.model.decode) else {}
        acc = None
        for view in encoded:
            _check(cancel)
            f = self.model.decode(view.triplanes, q if view.identity else view.map(q), max_memory_mb=max_memory_mb,
                                  **inner)
            if len(encoded) == 1:
                return f
            acc = f.astype(np.float64) if acc is None else acc + f
        return (acc / len(encoded)).astype(np.float32)


def augmented(model, n_views: int, view_set: str = "axes"):
    """`model` itself for 1 view, else an `AugmentedField` over the first `n_views` views of
    `view_set`."""
    if int(n_views) <= 1:
        return model
    return AugmentedField(model, views(n_views, view_set))
