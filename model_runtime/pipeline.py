"""`segment_mesh`: mesh -> normalise -> sample -> encode -> per-polygon features ->
connectivity -> part tree, with progress reports and cancellation between chunks."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from . import __version__
from .augmentation import augmented, default_views
from .connectivity import DEFAULT_BRIDGE, DEFAULT_WELD_TOLERANCE, build_connectivity
from .errors import Cancelled, InputError, accepts_cancel
from .face_features import DEFAULT_MAX_MEMORY_MB, DEFAULT_RANDOM_SAMPLES, DEFAULT_SPACING, polygon_features
from .normalization import Normalization
from .part_embedding import DEFAULT_CLUSTERING, SPECTRAL_DIMS, feature_block, part_embedding
from .part_tree import PartTree, kmeans_labels, natural_cut
from .result import SegmentationResult
from .sampling import DEFAULT_NUM_POINTS, estimate_normals, sample_mesh

STAGES = ("checking mesh", "sampling", "encoding", "features", "connectivity", "part tree")


@dataclass
class SegmentOptions:
    """Parameters of one compute (all stored in the result's metadata)."""

    num_points: int | None = None  # input points for the network; None: the model's own count
    seed: int = 0
    feature_method: str = "quadrature"  # or "random" (the original's K random points per face)
    spacing: float = DEFAULT_SPACING  # quadrature: sub-triangle edge in texels
    samples_per_face: int = DEFAULT_RANDOM_SAMPLES  # "random" only
    max_memory_mb: int | None = DEFAULT_MAX_MEMORY_MB  # decode memory cap per chunk
    weld: bool = True
    weld_tolerance: float = DEFAULT_WELD_TOLERANCE
    bridge: str = DEFAULT_BRIDGE
    features_fp16: bool = False  # keep features as float16 in the result (half the size)
    clustering: str = DEFAULT_CLUSTERING  # "fused" (features + creases + loose pieces) or "features"
    spectral_dims: int = SPECTRAL_DIMS  # "fused": eigenvectors in the spectral block
    # Cuts coarser than the tree's natural one may join parts that do not touch but whose
    # features match (a chair's legs, a creature's arms); that cut and finer ones are unchanged.
    group_alike: bool = True
    # Test-time augmentation: the field averaged over this many rigid views (`augmentation`);
    # 1 is off; None (the default) is the model's own (`augmentation.default_views`: 4 for our
    # models, 1 for the released one). The result's metadata holds the number used.
    test_time_views: int | None = None
    test_time_view_set: str = "mirror"  # or "axes" (`augmentation.VIEW_SETS`)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _model_points(model, options) -> int:
    if options.num_points:
        return int(options.num_points)
    cfg = getattr(model, "config", None)
    return int(getattr(cfg, "num_points", None) or DEFAULT_NUM_POINTS)


def _describe(model) -> dict:
    try:
        return {k: v for k, v in dict(model.describe()).items() if isinstance(v, (str, int, float, bool, type(None)))}
    except Exception:  # describe is informative only
        return {}


class _Reporter:
    def __init__(self, progress, cancel):
        self.progress, self.cancel = progress, cancel

    def check(self):
        if self.cancel is not None and self.cancel():
            raise Cancelled("segmentation cancelled")

    def __call__(self, stage, fraction):
        if self.progress is not None:
            self.progress(stage, float(min(max(fraction, 0.0), 1.0)))

    def stage(self, stage):
        """A fraction callback for one stage that also polls for cancellation."""
        def report(fraction):
            self(stage, fraction)
            self.check()
        return report


def segment_mesh(mesh, model, options: SegmentOptions | None = None, progress=None, cancel=None) -> SegmentationResult:
    """Segment a `MeshArrays` with a field model (duck-typed: `encode(points (N,3)[, normals])`,
    `decode(triplanes, queries (Q,3), max_memory_mb=...)`, `config.plane_resolution`,
    `describe()`). `progress(stage, fraction)`; `cancel() -> bool` raises `Cancelled` at the
    next check. Returns a `SegmentationResult` whose `labels(k)` are per polygon."""
    options = options or SegmentOptions()
    if isinstance(options, dict):
        options = SegmentOptions(**options)
    if options.test_time_views is None:
        options = dataclasses.replace(options, test_time_views=default_views(model))
    model = augmented(model, options.test_time_views, options.test_time_view_set)  # the model itself for 1 view
    rep = _Reporter(progress, cancel)
    timings = {}
    t = time.perf_counter()

    rep("checking mesh", 0.0)
    rep.check()
    report = mesh.validate()
    norm = Normalization.from_mesh(mesh)
    v = norm.apply(mesh.vertices)
    rep("checking mesh", 1.0)
    timings["check_s"] = time.perf_counter() - t

    t = time.perf_counter()
    rep("sampling", 0.0)
    rep.check()
    sample = sample_mesh(mesh, _model_points(model, options), seed=options.seed, normalization=norm)
    rep("sampling", 1.0)
    timings["sampling_s"] = time.perf_counter() - t

    t = time.perf_counter()
    rep("encoding", 0.0)
    rep.check()
    triplanes = _encode(model, sample.points, sample.normals, cancel=cancel)
    del sample
    rep("encoding", 1.0)
    timings["encoding_s"] = time.perf_counter() - t

    t = time.perf_counter()
    rep("features", 0.0)
    rep.check()
    resolution = int(getattr(model.config, "plane_resolution", 128))
    stats = {}
    decode_kwargs = {"cancel": cancel} if cancel is not None and accepts_cancel(model.decode) else {}
    features = polygon_features(
        mesh,
        lambda q: model.decode(triplanes, q, max_memory_mb=options.max_memory_mb, **decode_kwargs),
        vertices=v,
        method=options.feature_method,
        plane_resolution=resolution,
        spacing=options.spacing,
        samples=options.samples_per_face,
        seed=options.seed,
        max_memory_mb=options.max_memory_mb,
        progress=rep.stage("features"),
        stats=stats,
    )
    del triplanes
    timings["features_s"] = time.perf_counter() - t

    t = time.perf_counter()
    rep("connectivity", 0.0)
    rep.check()
    con = build_connectivity(mesh, weld=options.weld, weld_tolerance=options.weld_tolerance,
                             bridge=options.bridge, vertices=v)
    rep("connectivity", 1.0)
    timings["connectivity_s"] = time.perf_counter() - t

    t = time.perf_counter()
    rep("part tree", 0.0)
    rep.check()
    cluster_stats = {}
    space = part_embedding(features, mesh, con, vertices=v, method=options.clustering, stats=cluster_stats,
                           cancel=cancel, spectral_dims=options.spectral_dims)
    rep.check()
    free = feature_block(space, features) if options.group_alike else None
    tree = PartTree.build(space, con, normalize=False, progress=rep.stage("part tree"), cancel=cancel,
                          free_space=free)
    del free
    del space
    rep("part tree", 1.0)
    timings["tree_s"] = time.perf_counter() - t

    metadata = {
        "runtime_version": __version__,
        "model": _describe(model),
        "options": options.to_dict(),
        "plane_resolution": resolution,
        "num_polygons": mesh.num_polygons,
        "num_vertices": mesh.num_vertices,
        "query_points": stats.get("points"),
        "suggested_parts": suggested_parts(tree),
        "pieces": con.num_components,
        "clustering": cluster_stats.get("clustering", options.clustering),
        "bridges": int(len(con.bridges)),
        "non_manifold_edges": con.non_manifold_edges,
        "welded_vertices": con.welded_vertices,
        "warnings": list(report.warnings),
        "timings": {k: round(s, 4) for k, s in timings.items()},
    }
    feats = features.astype(np.float16) if options.features_fp16 else features
    return SegmentationResult(feats, tree, norm, metadata)


def suggested_parts(tree) -> int:
    """The tree's own part count: its natural cut (`part_tree.natural_cut`), taken on the
    graph-constrained merges before any look-alike merges replaced the coarse ones."""
    natural = getattr(tree, "natural_parts", None)
    if natural is None:
        natural = natural_cut(tree.costs, tree.num_leaves) if tree.costs is not None else 5
    return int(max(1, min(int(natural), tree.num_leaves)))


def _encode(model, points, normals, cancel=None):
    """Encode `points`, with their normals when the model reads them; `cancel` is passed on
    to models whose `encode` polls it between blocks (`FieldModel`)."""
    reads = getattr(model, "reads_normals", False)
    if cancel is not None and accepts_cancel(model.encode):
        return model.encode(points, normals if reads else None, cancel=cancel)
    return model.encode(points, normals) if reads else model.encode(points)


def segment_points(points, model, ks=range(2, 21), options: SegmentOptions | None = None) -> dict:
    """KMeans alternative for point clouds (no faces): {k: labels (N,)} from the field at the
    points themselves. Points are in the user's frame; they are normalised here."""
    options = options or SegmentOptions()
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3 or pts.shape[0] < 2:
        raise InputError("a point cloud needs at least 2 points of shape (N, 3)")
    if not np.isfinite(pts).all():
        raise InputError("the point cloud has NaN or infinite coordinates")
    norm = Normalization.from_points(pts)
    q = norm.apply(pts).astype(np.float32)
    n = _model_points(model, options)
    rng = np.random.default_rng(options.seed)
    enc = q[rng.choice(len(q), n, replace=len(q) < n)]
    triplanes = _encode(model, enc, estimate_normals(enc) if getattr(model, "reads_normals", False) else None)
    feats = model.decode(triplanes, q, max_memory_mb=options.max_memory_mb)
    return {int(k): kmeans_labels(feats, min(int(k), len(q)), seed=options.seed) for k in ks}
