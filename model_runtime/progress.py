"""One progress bar for a whole compute job: every stage of every mesh, weighted by its
expected cost, never going backwards.

    bar = JobProgress([p1, p2], model_loaded=False)   # polygon counts of the meshes
    bar.update(0, "encoding", 0.5)                     # -> overall fraction in [0, 1]

The weights are rough seconds on a 2-core CPU (see BENCHMARKS.md, "Interaction latency");
only their ratios matter. Stdlib only: the UI thread may read it.
"""
from __future__ import annotations

import threading

LOADING = "loading model"
# seconds = constant + per_polygon * P (measured on the bundled model, 2-core CPU)
STAGE_COSTS = {
    "checking mesh": (0.005, 2.0e-6),
    "sampling": (0.005, 2.0e-7),
    "encoding": (0.6, 0.0),  # 4 test-time views of 0.15 s each (the default since 2026-12-01)
    "features": (0.05, 4.0e-6),
    "connectivity": (0.005, 7.0e-7),
    "part tree": (0.05, 4.0e-5),
}
FIRST_TREE_IMPORTS = 0.8  # scipy + scikit-learn, the first time a tree is built
MODEL_LOAD_COLD = 1.5  # import torch + read the weights
MODEL_LOAD_WARM = 0.05


def stage_costs(num_polygons: int) -> dict[str, float]:
    """Expected seconds of each pipeline stage for a mesh of `num_polygons` polygons."""
    p = max(int(num_polygons), 1)
    return {stage: a + b * p for stage, (a, b) in STAGE_COSTS.items()}


class JobProgress:
    """Overall fraction of a job over several meshes, with the model load first.

    `update(item, stage, fraction)` takes the per-stage reports of `segment_mesh` (and
    `LOADING` for the model load) and returns the job's fraction; it never decreases, even
    when a stage's own fraction restarts or a report arrives out of order. Thread-safe."""

    def __init__(self, polygon_counts, model_loaded: bool = False, tree_imported: bool = False):
        self._lock = threading.Lock()
        load = MODEL_LOAD_WARM if model_loaded else MODEL_LOAD_COLD
        self._offsets: list[dict[str, tuple[float, float]]] = []  # per item: stage -> (start, cost)
        t = load
        for i, p in enumerate(polygon_counts):
            costs = stage_costs(p)
            if i == 0 and not tree_imported:
                costs["part tree"] += FIRST_TREE_IMPORTS
            spans = {}
            for stage, cost in costs.items():
                spans[stage] = (t, cost)
                t += cost
            self._offsets.append(spans)
        self._load = load
        self._total = max(t, 1e-9)
        self._best = 0.0

    @property
    def fraction(self) -> float:
        return self._best

    def position(self, item: int, stage: str, fraction: float) -> float:
        """Where (item, stage, fraction) lies on the bar, 0..1 (not clamped to the best so far)."""
        f = min(max(float(fraction), 0.0), 1.0)
        if stage == LOADING:
            return f * self._load / self._total
        if not 0 <= item < len(self._offsets):
            return 1.0 if item >= len(self._offsets) else 0.0
        span = self._offsets[item].get(stage)
        if span is None:  # an unknown stage name: the start of that item
            span = (min(s for s, _ in self._offsets[item].values()), 0.0)
        start, cost = span
        return min((start + f * cost) / self._total, 1.0)

    def update(self, item: int, stage: str, fraction: float) -> float:
        with self._lock:
            self._best = max(self._best, self.position(item, stage, fraction))
            return self._best

    def finish_item(self, item: int) -> float:
        """Mark an item done (also when it failed or was skipped)."""
        with self._lock:
            if 0 <= item < len(self._offsets):
                start, cost = self._offsets[item]["part tree"]
                self._best = max(self._best, (start + cost) / self._total)
            return self._best
