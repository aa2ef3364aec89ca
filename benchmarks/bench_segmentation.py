"""Segmentation benchmarks (CPU): connectivity + part tree growth, cut(k) time, peak memory,
and texel-aware vs the original 1000-random-point per-face features.

    python benchmarks/bench_segmentation.py tree [--sizes 10000 20000 50000 100000 200000 500000] [--dims 64 448]
    python benchmarks/bench_segmentation.py features [--meshes chairs/102 chairs/22]
    python benchmarks/bench_segmentation.py sklearn [--faces 200000 --dim 448]
    python benchmarks/bench_segmentation.py fused [--sizes 10000 50000 200000 500000] [--dim 64]

`tree` runs every (faces, feature dim) in a fresh subprocess so peak memory (max RSS) is per
case. Meshes are closed tori of the requested face count with a lumpy profile; features are
a smooth random triplane field decoded at face centres (the tree's cost does not depend
on where features come from). `features` uses the released network with the shared
stand-in weights (tests/reference_model.py) on COSEG meshes: one encode of 100k points, then
both feature methods from the same triplanes. `fused` times the default clustering space
(`part_embedding`, "fused") against features alone, embedding and tree, on the same tori.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
COSEG = Path(os.environ.get("PARTFIELD_COSEG_DIR") or ROOT.parent / "shared" / "datasets" / "coseg_subset")
sys.path.insert(0, str(ROOT))


def torus(faces):
    """Closed triangulated torus with about `faces` triangles (lumpy, so parts exist)."""
    n = max(3, int(round(np.sqrt(faces / 2 * 3))))
    m = max(3, int(round(faces / 2 / n)))
    u, w = np.meshgrid(np.linspace(0, 2 * np.pi, n, endpoint=False), np.linspace(0, 2 * np.pi, m, endpoint=False),
                       indexing="ij")
    r = 1 + 0.3 * np.sin(3 * u)
    tube = 0.35 * (1 + 0.4 * np.cos(5 * u))
    v = np.stack([(r + tube * np.cos(w)) * np.cos(u), (r + tube * np.cos(w)) * np.sin(u), tube * np.sin(w)], -1)
    i, j = np.meshgrid(np.arange(n), np.arange(m), indexing="ij")
    a = i * m + j
    b = ((i + 1) % n) * m + j
    c = ((i + 1) % n) * m + (j + 1) % m
    d = i * m + (j + 1) % m
    f = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return v.reshape(-1, 3), f


def field_features(points, dim, seed=0, chunk=20000):
    """Smooth random triplane field (R=128, bilinear, 3 planes summed) at `points`."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    planes = F.interpolate(torch.randn(3, dim, 16, 16, generator=g), size=(128, 128), mode="bicubic",
                           align_corners=True) + 0.05 * torch.randn(3, dim, 128, 128, generator=g)
    out = np.empty((len(points), dim), np.float32)
    for s in range(0, len(points), chunk):
        q = torch.as_tensor(points[s:s + chunk], dtype=torch.float32)
        grid = torch.stack([q[:, [0, 1]], q[:, [1, 2]], q[:, [0, 2]]])[:, None]
        out[s:s + chunk] = F.grid_sample(planes, grid, align_corners=True, padding_mode="border")[:, :, 0].sum(0).T
    return out


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def torus_case(faces, dim):
    """(mesh, normalised vertices, features (P, dim)) of one benchmark torus, one thread."""
    import torch

    torch.set_num_threads(1)
    from model_runtime.mesh import MeshArrays
    from model_runtime.normalization import Normalization

    v, f = torus(faces)
    mesh = MeshArrays.from_triangles(v, f)
    vn = Normalization.from_mesh(mesh).apply(mesh.vertices)
    return mesh, vn, field_features(mesh.polygon_centers(vn), dim)


def one_tree(faces, dim):
    from model_runtime.connectivity import build_connectivity
    from model_runtime.part_tree import PartTree

    mesh, vn, feats = torus_case(faces, dim)
    before = rss_mb()
    t, c = time.perf_counter(), time.process_time()
    con = build_connectivity(mesh, vertices=vn)
    t_con, c_con = time.perf_counter() - t, time.process_time() - c
    t, c = time.perf_counter(), time.process_time()
    tree = PartTree.build(feats, con)
    t_tree, c_tree = time.perf_counter() - t, time.process_time() - c
    cut_ms = []
    for k in list(range(2, 21)) * 3:
        t = time.perf_counter()
        tree.cut(k)
        cut_ms.append(1000 * (time.perf_counter() - t))
    return {
        "faces": mesh.num_polygons, "dim": dim, "connectivity_s": t_con, "connectivity_cpu_s": c_con,
        "tree_s": t_tree, "tree_cpu_s": c_tree, "cut_ms_median": float(np.median(cut_ms)),
        "cut_ms_max": float(np.max(cut_ms)), "rss_before_mb": before, "peak_rss_mb": rss_mb(),
        "load1": os.getloadavg()[0],
    }


def in_subprocess(kind, faces, dim) -> dict:
    """One benchmark case in a fresh process (its peak RSS is that case's own)."""
    out = subprocess.run([sys.executable, __file__, kind, str(faces), str(dim)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_tree(args):
    rows = []
    print("| faces | F | connectivity s (cpu) | tree s (cpu) | conn + tree s | cut(k) ms median / max | "
          "peak RSS MB (before graph) | load avg |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for dim in args.dims:
        for n in args.sizes:
            r = in_subprocess("_one_tree", n, dim)
            rows.append(r)
            print(f"| {r['faces']:,} | {dim} | {r['connectivity_s']:.2f} ({r['connectivity_cpu_s']:.2f}) | "
                  f"{r['tree_s']:.2f} ({r['tree_cpu_s']:.2f}) | {r['connectivity_s'] + r['tree_s']:.2f} | "
                  f"{r['cut_ms_median']:.2f} / {r['cut_ms_max']:.2f} | {r['peak_rss_mb']:.0f} ({r['rss_before_mb']:.0f}) | "
                  f"{r.get('load1', 0):.1f} |",
                  flush=True)
    return rows


def one_fused(faces, dim):
    """The default "fused" clustering space against features alone, on one mesh."""
    from model_runtime.connectivity import build_connectivity
    from model_runtime.part_embedding import part_embedding
    from model_runtime.part_tree import PartTree

    mesh, vn, feats = torus_case(faces, dim)
    con = build_connectivity(mesh, vertices=vn)
    row = {"faces": mesh.num_polygons, "dim": dim}
    for method in ("features", "fused"):
        t = time.perf_counter()
        space = part_embedding(feats, mesh, con, vertices=vn, method=method)
        row[f"{method}_embed_s"] = time.perf_counter() - t
        t = time.perf_counter()
        PartTree.build(space, con, normalize=False)
        row[f"{method}_tree_s"] = time.perf_counter() - t
        row[f"{method}_dims"] = int(space.shape[1])
    row["peak_rss_mb"] = rss_mb()
    row["load1"] = os.getloadavg()[0]
    return row


def run_fused(args):
    rows = []
    print("| faces | F | features: tree s | fused: embedding s | fused: tree s | fused total / features | "
          "peak RSS MB | load avg |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in args.sizes:
        r = in_subprocess("_one_fused", n, args.dim)
        rows.append(r)
        plain = r["features_embed_s"] + r["features_tree_s"]
        fused = r["fused_embed_s"] + r["fused_tree_s"]
        print(f"| {r['faces']:,} | {args.dim} | {plain:.2f} | {r['fused_embed_s']:.2f} | {r['fused_tree_s']:.2f} | "
              f"{fused / plain:.2f}x | {r['peak_rss_mb']:.0f} | {r['load1']:.1f} |", flush=True)
    return rows


def run_sklearn(args):
    """scikit-learn's structured ward_tree on the same mesh and features, and partition equality."""
    from sklearn.cluster import ward_tree
    from sklearn.cluster._agglomerative import _hc_cut

    from model_runtime.connectivity import build_connectivity
    from model_runtime.part_tree import PartTree, normalize_rows

    mesh, vn, feats = torus_case(args.faces, args.dim)
    con = build_connectivity(mesh, vertices=vn)
    t = time.perf_counter()
    tree = PartTree.build(feats, con)
    ours = time.perf_counter() - t
    ours_rss = rss_mb()
    x = normalize_rows(feats)
    t = time.perf_counter()
    children = ward_tree(x, connectivity=con.matrix)[0]
    theirs = time.perf_counter() - t
    same = all(len(set(zip(_hc_cut(k, children, mesh.num_polygons).tolist(), tree.cut(k).tolist()))) == k
               for k in range(2, 21))
    row = {"faces": mesh.num_polygons, "dim": args.dim, "ours_s": ours, "ours_peak_rss_mb": ours_rss,
           "sklearn_s": theirs, "peak_rss_mb_after_sklearn": rss_mb(), "same_k2_20": same}
    print(json.dumps(row))
    return [row]


def stand_in_released():
    import torch

    from model_runtime.checkpoint import LoadedWeights, build_network
    from model_runtime.config import PartFieldConfig
    from model_runtime.field_model import FieldModel

    from tests.reference_model import reference_state_dict

    weights = LoadedWeights(reference_state_dict(), PartFieldConfig.released(), "state_dict")
    return FieldModel(build_network(weights), torch.device("cpu"), torch.float32, "stand-in released", weights)


def run_features(args):
    import torch

    torch.set_num_threads(args.threads)
    from model_runtime.face_features import polygon_features
    from model_runtime.meshio import read_mesh
    from model_runtime.normalization import Normalization
    from model_runtime.sampling import sample_mesh

    model = stand_in_released()
    rows = []
    print("| mesh | faces | fast points | fast s | 1000-random points | random s | speed-up | "
          "cosine min / p1 / median | share >= 0.999 |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|")
    for name in args.meshes:
        cat, ident = name.split("/")
        path = COSEG / cat / "shapes" / f"{ident}.off"
        if not path.is_file():
            print(f"skipped: {path} not found (set PARTFIELD_COSEG_DIR to the COSEG subset)", file=sys.stderr)
            continue
        mesh = read_mesh(path)
        norm = Normalization.from_mesh(mesh)
        vn = norm.apply(mesh.vertices)
        sample = sample_mesh(mesh, 100_000, seed=0, normalization=norm)
        tp = model.encode(sample.points, sample.normals)
        tp.table()  # built once per shape, outside both timings

        def fn(q):
            return model.decode(tp, q)

        s_fast, s_rand = {}, {}
        fast = polygon_features(mesh, fn, vn, plane_resolution=128, stats=s_fast)
        rand = polygon_features(mesh, fn, vn, method="random", samples=1000, plane_resolution=128, stats=s_rand)
        cos = (fast * rand).sum(1) / np.linalg.norm(fast, axis=1) / np.linalg.norm(rand, axis=1)
        r = {"mesh": name, "faces": mesh.num_polygons, "fast_points": s_fast["points"], "fast_s": s_fast["seconds"],
             "random_points": s_rand["points"], "random_s": s_rand["seconds"],
             "speedup": s_rand["seconds"] / s_fast["seconds"], "cos_min": float(cos.min()),
             "cos_p1": float(np.percentile(cos, 1)), "cos_median": float(np.median(cos)),
             "share_0999": float((cos >= 0.999).mean())}
        rows.append(r)
        print(f"| COSEG {name} | {r['faces']:,} | {r['fast_points']:,} | {r['fast_s']:.2f} | {r['random_points']:,} | "
              f"{r['random_s']:.1f} | {r['speedup']:.0f}x | {r['cos_min']:.5f} / {r['cos_p1']:.5f} / "
              f"{r['cos_median']:.6f} | {100 * r['share_0999']:.2f}% |", flush=True)
    return rows


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_one_tree":
        print(json.dumps(one_tree(int(argv[1]), int(argv[2]))))
        return 0
    if argv and argv[0] == "_one_fused":
        print(json.dumps(one_fused(int(argv[1]), int(argv[2]))))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    t = sub.add_parser("tree")
    t.add_argument("--sizes", type=int, nargs="+", default=[10_000, 20_000, 50_000, 100_000, 200_000, 500_000])
    t.add_argument("--dims", type=int, nargs="+", default=[64, 448])
    f = sub.add_parser("features")
    f.add_argument("--meshes", nargs="+", default=["chairs/102", "chairs/22"])
    f.add_argument("--threads", type=int, default=2)
    u = sub.add_parser("fused")
    u.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 200_000, 500_000])
    u.add_argument("--dim", type=int, default=64)
    c = sub.add_parser("sklearn")
    c.add_argument("--faces", type=int, default=200_000)
    c.add_argument("--dim", type=int, default=448)
    p.add_argument("--json", type=Path, help="also write the rows here")
    args = p.parse_args(argv)
    rows = {"tree": run_tree, "features": run_features, "sklearn": run_sklearn, "fused": run_fused}[args.what](args)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
