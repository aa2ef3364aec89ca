"""`SegmentationResult`: per-polygon features, the part tree, the normalisation and metadata;
saved and loaded as a plain npz (no pickle)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import InputError
from .normalization import Normalization
from .part_tree import PartTree

FORMAT = "partfield-segmentation"
FORMAT_VERSION = 1


class SegmentationResult:
    """What a compute produces; `labels(k)` gives the parts at any granularity."""

    def __init__(self, features, tree: PartTree, normalization: Normalization, metadata=None):
        self.features = features  # (P, F) float32 or float16
        self.tree = tree
        self.normalization = normalization
        self.metadata = dict(metadata or {})

    @property
    def num_polygons(self) -> int:
        return self.tree.num_leaves

    @property
    def max_parts(self) -> int:
        return self.tree.num_leaves

    @property
    def suggested_parts(self) -> int:
        """The tree's own part count (its natural cut), 1..P: stored at build time in the
        metadata; for results saved before that, found from the stored merge costs (numpy)."""
        p = self.num_polygons
        value = self.metadata.get("suggested_parts")
        if value is None:
            from .part_tree import natural_cut

            value = natural_cut(self.tree.costs, p) if self.tree.costs is not None else min(5, p)
        try:
            return max(1, min(int(value), p))
        except (TypeError, ValueError):
            return max(1, min(5, p))

    def labels(self, k) -> np.ndarray:
        """(P,) int32 part labels 0..k-1 (k clamped to 1..P), nested and stable across k."""
        k = max(1, min(int(k), self.num_polygons))
        return self.tree.cut(k)

    def split_part(self, labels, part) -> np.ndarray:
        return self.tree.split_part(labels, part)

    def merge_parts(self, labels, a, b) -> np.ndarray:
        return self.tree.merge_parts(labels, a, b)

    # ------------------------------------------------------------------ storage
    def save(self, path, features_fp16=None) -> Path:
        """Write an npz. `features_fp16` (default: keep the current dtype) halves its size."""
        path = Path(path)
        feats = np.asarray(self.features)
        if features_fp16 is True:
            feats = feats.astype(np.float16)
        elif features_fp16 is False:
            feats = feats.astype(np.float32)
        arrays = {
            "format": np.array(FORMAT),
            "format_version": np.array(FORMAT_VERSION, np.int64),
            "features": feats,
            "children": self.tree.children.astype(np.int32 if self.num_polygons < 2**30 else np.int64),
            "num_leaves": np.array(self.tree.num_leaves, np.int64),
            "normalization": self.normalization.to_array(),
            "metadata": np.array(json.dumps(self.metadata, default=str)),
        }
        if self.tree.costs is not None:
            arrays["costs"] = self.tree.costs.astype(np.float64)
        with open(path, "wb") as f:  # np.savez would append ".npz" to other suffixes
            np.savez(f, **arrays)
        return path

    @classmethod
    def load(cls, path) -> "SegmentationResult":
        """Read a file written by `save` (never unpickles anything)."""
        try:
            with np.load(path, allow_pickle=False) as data:
                if "format" not in data.files or str(data["format"]) != FORMAT:
                    raise InputError(f"{path} is not a PartField segmentation result")
                version = int(data["format_version"])
                if version > FORMAT_VERSION:
                    raise InputError(f"{path} was written by a newer version (format {version})")
                tree = PartTree(data["children"], int(data["num_leaves"]),
                                data["costs"] if "costs" in data.files else None)
                return cls(
                    features=data["features"],
                    tree=tree,
                    normalization=Normalization.from_array(data["normalization"]),
                    metadata=json.loads(str(data["metadata"])),
                )
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(f"cannot read segmentation result {path}: {exc}") from exc
