"""Training code: procedural data, surface nets, contrastive loss, a short real training run,
checkpoint/resume, and the evaluation metric and baselines."""
import dataclasses
import json

import numpy as np
import pytest
import torch

from model_runtime.training import evaluation as ev
from model_runtime.training.loss import LossConfig, Temperature, part_contrastive_loss
from model_runtime.training.procedural import make_shape, sample_points
from model_runtime.training.shapes import CATEGORIES
from model_runtime.training.surface_nets import signed_volume, surface_nets
from model_runtime.training.trainer import Trainer, TrainOptions, make_batch


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _edge_counts(f):
    e = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), 1)
    return np.unique(np.unique(e, axis=0, return_counts=True)[1])


def test_surface_nets_sphere_is_closed_and_outward():
    g = np.linspace(-1.3, 1.3, 41)
    x = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1)
    v, f = surface_nets(np.linalg.norm(x, axis=-1) - 1.0, np.full(3, -1.3), g[1] - g[0])
    assert _edge_counts(f).tolist() == [2]  # closed 2-manifold edges
    assert abs(signed_volume(v, f) - 4 / 3 * np.pi) < 0.05 * 4 / 3 * np.pi  # outward, right size
    assert np.abs(np.linalg.norm(v, axis=1) - 1).max() < 0.02


@pytest.mark.parametrize("category", sorted(CATEGORIES))
def test_every_category_is_deterministic_and_labelled(category):
    a = make_shape(123, category)
    b = make_shape(123, category)
    c = make_shape(124, category)
    assert np.array_equal(a.vertices, b.vertices) and np.array_equal(a.face_leaf, b.face_leaf)
    assert a.vertices.shape != c.vertices.shape or not np.allclose(a.vertices, c.vertices)
    assert np.isfinite(a.vertices).all() and len(a.faces) > 20
    assert a.faces.min() >= 0 and a.faces.max() < len(a.vertices)
    assert a.face_leaf.min() >= 0 and a.face_leaf.max() < a.n_leaves
    # Proposals: every leaf alone first, then groups; no proposal is the whole object.
    props = a.proposals
    assert props.shape[1] == a.n_leaves >= 2
    assert np.array_equal(props[: a.n_leaves], np.eye(a.n_leaves, dtype=bool))
    assert (props.sum(1) < a.n_leaves).all()
    pin, nin, q, lab = sample_points(a, 512, 256, np.random.default_rng(0))
    assert pin.shape == (512, 3) and q.shape == (256, 3) and lab.shape == (256,)
    assert nin.shape == (512, 3) and np.allclose(np.linalg.norm(nin, axis=1), 1.0, atol=1e-4)
    assert np.abs(pin).max() <= 0.9 + 1e-5  # the runtime's normalised frame
    lo, hi = pin.min(0), pin.max(0)
    assert np.isclose((hi - lo).max(), 1.8, atol=0.1)


def test_mix_has_welded_and_loose_meshes_with_hierarchy():
    shapes = [make_shape(s) for s in range(40)]
    welded = [s.welded for s in shapes]
    assert 0.2 < np.mean(welded) < 0.8
    assert len({s.category for s in shapes}) >= 10
    # Some shapes have at least three levels (leaf < group < bigger group).
    def depth(s):
        sizes = sorted(set(s.proposals.sum(1).tolist()))
        return len(sizes)
    assert max(depth(s) for s in shapes) >= 3
    # Welded organic shapes: one connected surface, several parts.
    org = make_shape(5, "character")
    assert org.welded and len(np.unique(org.face_leaf)) >= 5


def test_loss_prefers_part_aligned_features():
    torch.manual_seed(0)
    q = torch.rand(600, 3)
    labels = (q[:, 0] > 0.5).long() + 2 * (q[:, 1] > 0.5).long()  # 4 leaves
    props = torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [1, 1, 0, 0]], dtype=torch.bool)
    tau = Temperature(0.1)()
    good = torch.nn.functional.one_hot(labels, 4).float() + 0.05 * torch.randn(600, 4)
    bad = torch.randn(600, 4)
    g = torch.Generator().manual_seed(0)
    lg, st = part_contrastive_loss(good, q, labels, props, tau, LossConfig(), g)
    lb, _ = part_contrastive_loss(bad, q, labels, props, tau, LossConfig(), torch.Generator().manual_seed(0))
    assert st["proposals"] == 5 and lg < lb
    assert torch.isfinite(lg)


def _naive_contrastive_loss(features, positions, labels, proposals, tau, cfg, generator):
    """The loss written the plain way: gather every negative's feature vector (R, M, F) and
    take dot products; the same draws from `generator` as `part_contrastive_loss`."""
    z = torch.nn.functional.normalize(features, dim=-1)
    member = proposals[:, labels]
    n_in = member.sum(1)
    idx = torch.nonzero((n_in >= 2) & (n_in <= member.shape[1] - 1)).flatten()
    pick = idx[torch.randperm(idx.numel(), generator=generator)[:min(cfg.proposals_per_shape, idx.numel())]]
    inside = member[pick]
    draw = lambda mask, n: torch.multinomial(mask.float(), n, replacement=True, generator=generator)  # noqa: E731
    anchors, positives = draw(inside, cfg.pairs_per_proposal), draw(inside, cfg.pairs_per_proposal)
    rows_a = torch.cat([anchors, positives], 1).reshape(-1)
    rows_p = torch.cat([positives, anchors], 1).reshape(-1)
    row_inside = inside.repeat_interleave(2 * cfg.pairs_per_proposal, dim=0)
    outside = ~row_inside
    uniform = draw(outside, cfg.uniform_negatives)
    d = torch.cdist(positions[rows_a], positions).masked_fill(row_inside, float("inf"))
    near = torch.topk(d, cfg.spatial_pool, dim=1, largest=False).indices
    ok = torch.gather(outside, 1, near)
    spatial = torch.gather(near, 1, draw(ok | ~ok.any(1, keepdim=True), cfg.spatial_negatives))
    sim = (z[rows_a] @ z.T).detach().masked_fill(row_inside, -float("inf"))
    hard = torch.topk(sim, min(cfg.feature_negatives, int(outside.sum(1).min())), dim=1).indices
    neg = torch.cat([uniform, spatial, hard], 1)
    za = z[rows_a]
    pos = (za * z[rows_p]).sum(-1, keepdim=True)
    negl = torch.einsum("rf,rmf->rm", za, z[neg])
    logits = torch.cat([pos, negl], 1) / tau
    return torch.nn.functional.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long))


def test_loss_equals_the_plain_gather_formulation():
    """`part_contrastive_loss` reads every logit from one (R, Q) similarity matrix; loss and
    gradient must equal the plain per-negative gather on a real procedural shape."""
    pin, nin, q, lab = sample_points(make_shape(11), 2048, 1024, np.random.default_rng(0))
    props = torch.from_numpy(make_shape(11).proposals)
    q, lab = torch.from_numpy(q), torch.from_numpy(lab)
    cfg = LossConfig(proposals_per_shape=6, pairs_per_proposal=32, uniform_negatives=24, spatial_negatives=24,
                     feature_negatives=24, spatial_pool=64)
    tau = torch.tensor(0.08)
    feats = torch.randn(len(q), 16, generator=torch.Generator().manual_seed(3)).requires_grad_()
    fast, st = part_contrastive_loss(feats, q, lab, props, tau, cfg, torch.Generator().manual_seed(5))
    (g_fast,) = torch.autograd.grad(fast, feats)
    plain = _naive_contrastive_loss(feats, q, lab, props, tau, cfg, torch.Generator().manual_seed(5))
    (g_plain,) = torch.autograd.grad(plain, feats)
    fast, plain = float(fast.detach()), float(plain.detach())
    assert st["proposals"] == 6 and fast > 0.1
    assert abs(fast - plain) < 1e-5 * plain
    assert torch.allclose(g_fast, g_plain, rtol=1e-4, atol=1e-8) and g_plain.abs().max() > 0


def _tiny_opts(tmp_path, **kw):
    return TrainOptions(out=str(tmp_path), config="tiny", batch=2, n_input=1024, n_query=384, lr=3e-3,
                        warmup=1, checkpoint_minutes=1e9, log_every=1000,
                        loss=LossConfig(proposals_per_shape=4, pairs_per_proposal=16, uniform_negatives=16,
                                        spatial_negatives=16, feature_negatives=16, spatial_pool=32), **kw)


def test_short_training_lowers_the_loss(tmp_path):
    """A few real optimiser steps on a tiny network: the loss on a fixed batch falls."""
    trainer = Trainer(_tiny_opts(tmp_path, steps=30), log=lambda s: None)
    fixed = make_batch(999, 0, 2, 1024, 384)

    def fixed_loss():
        with torch.no_grad():
            trainer.net.eval()
            loss, _ = trainer.loss_on(fixed, torch.Generator().manual_seed(1))
        return float(loss)

    before = fixed_loss()
    # Train on the fixed batch and on fresh shapes alternately.
    for i in range(30):
        trainer.net.train()
        loss, _ = trainer.loss_on(fixed if i % 2 == 0 else make_batch(7, i, 2, 1024, 384),
                                  torch.Generator().manual_seed(i))
        trainer.optim.zero_grad()
        loss.backward()
        trainer.optim.step()
    after = fixed_loss()
    assert after < before - 0.1, (before, after)


def test_train_command_passes_proposals_and_refuses_bad_ones(tmp_path, capsys):
    from model_runtime.cli import main

    assert main(["train", "--out", str(tmp_path / "bad"), "--config", "tiny", "--steps", "1",
                 "--proposals", "0"]) == 2
    assert "--proposals must be at least 1" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "run"), "--config", "tiny", "--steps", "1", "--points", "1024",
                 "--queries", "256", "--proposals", "3", "--checkpoint-minutes", "100"]) == 0
    recipe = json.loads((tmp_path / "run" / "options.json").read_text())
    assert recipe["loss"]["proposals_per_shape"] == 3


def test_bf16_autocast_step_matches_fp32(tmp_path):
    """The bf16 encoder gives nearly the fp32 loss and gradients on the same weights and batch;
    bad modes are refused."""
    batch = make_batch(3, 0, 2, 1024, 384)
    results = []
    for mode in ("off", "bf16"):
        torch.manual_seed(0)
        trainer = Trainer(_tiny_opts(tmp_path / mode, steps=1, autocast=mode), log=lambda s: None)
        assert trainer.use_bf16 == (mode == "bf16")
        loss, _ = trainer.loss_on(batch, torch.Generator().manual_seed(0))
        loss.backward()
        grad = torch.cat([p.grad.flatten() for p in trainer.net.parameters() if p.grad is not None])
        results.append((float(loss.detach()), grad))
    (l32, g32), (l16, g16) = results
    assert abs(l16 - l32) < 0.02 * abs(l32), (l32, l16)
    assert torch.nn.functional.cosine_similarity(g32, g16, dim=0) > 0.95
    with pytest.raises(ValueError, match="autocast"):
        Trainer(_tiny_opts(tmp_path / "bad", steps=1, autocast="fp16"), log=lambda s: None)


def test_checkpoint_resume_continues_the_same_run(tmp_path):
    straight = Trainer(_tiny_opts(tmp_path / "a", steps=3), log=lambda s: None)
    straight.run()
    # Same planned run, interrupted after two steps (the last checkpoint is kept).
    first = Trainer(_tiny_opts(tmp_path / "b", steps=3), log=lambda s: None)
    first.train_step()
    first.train_step()
    first.save()
    del first
    assert (tmp_path / "b" / "checkpoint.pt").exists() and (tmp_path / "b" / "model.safetensors").exists()
    resumed = Trainer(_tiny_opts(tmp_path / "b", steps=3, resume=True), log=lambda s: None)
    assert resumed.step == 2
    resumed.run()
    assert resumed.step == 3
    for (k, a), (_, b) in zip(straight.net.state_dict().items(), resumed.net.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-5), k


def test_exported_model_loads_in_the_runtime(tmp_path):
    from model_runtime.field_model import FieldModel

    t = Trainer(_tiny_opts(tmp_path, steps=1), log=lambda s: None)
    t.run()
    m = FieldModel.load(tmp_path / "model.safetensors", device="cpu", precision="fp32")
    assert m.config.name == "partfield-tiny"
    assert "GPL-3.0-or-later" in m.describe()["licence"]
    pts = np.random.default_rng(0).uniform(-0.9, 0.9, (600, 3)).astype(np.float32)
    feats = m.decode(m.encode(pts), pts[:50])
    with torch.no_grad():
        ref = t.net.eval()(torch.from_numpy(pts)[None], torch.from_numpy(pts[:50])[None])[0].numpy()
    assert feats.shape == (50, m.config.feature_dim)
    assert np.allclose(feats, ref, atol=2e-2 * np.abs(ref).max())  # fp16 storage


def test_part_miou_metric():
    gt = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    assert ev.part_miou(gt, gt + 5) == 1.0
    one = ev.part_miou(gt, np.zeros(8, int))
    assert np.isclose(one, np.mean([4 / 8, 2 / 8, 2 / 8]))
    # Over-segmentation: part 0 split in two halves -> its best IoU is 0.5.
    assert np.isclose(ev.part_miou(gt, np.array([0, 0, 3, 3, 1, 1, 2, 2])), np.mean([0.5, 1, 1]))


def test_baselines_on_a_procedural_table():
    shapes = ev.procedural_set(1, categories=["table", "robot"])
    res = ev.evaluate(shapes, ev.baseline_methods())
    summary = ev.summarise(shapes, res["scores"])
    assert set(summary) == {"one_part", "ward_posnormal", "spectral", "spectral_alike"}
    for name in ("ward_posnormal", "spectral", "spectral_alike"):
        assert summary[name]["best_of_k"] > summary["one_part"]["best_of_k"] + 0.2
    assert 2 <= summary["spectral"]["fixed_k"] <= 20
    kinds = {s.meshing for s in shapes}
    assert kinds <= {"welded", "loose"} and set(summary["spectral"]["meshing"]) == kinds
    table = ev.format_table(summary, "procedural")
    assert "By meshing" in table and "| spectral |" in table


def test_paired_bootstrap_errors_and_margins():
    rng = np.random.default_rng(0)
    base = rng.normal(0.6, 0.2, 400)
    shapes = [f"s{i}" for i in range(400)]
    best = {"model": dict(zip(shapes, base + 0.1)), "baseline": dict(zip(shapes, base)),
            "noisy": dict(zip(shapes, base + rng.normal(0, 0.1, 400)))}
    best["model"]["only_here"] = 1.0  # scored by one method only: left out
    st = ev.paired_bootstrap(best, "model", resamples=2000, seed=1)
    assert st["model"]["n"] == 400 and abs(st["model"]["mean"] - (base.mean() + 0.1)) < 1e-12
    assert st["model"]["se"] == pytest.approx(0.2 / np.sqrt(400), rel=0.15)
    m = st["model"]  # the interval of the mean: about 1.96 standard errors either side of it
    assert m["low"] < m["mean"] < m["high"]
    assert m["high"] - m["low"] == pytest.approx(2 * 1.96 * m["se"], rel=0.1)
    # a constant per-shape lead has no sampling error, however spread the scores are
    b = st["baseline"]
    assert b["margin"] == pytest.approx(0.1) and b["margin_se"] < 1e-9
    assert b["margin_low"] == pytest.approx(0.1) and b["margin_high"] == pytest.approx(0.1)
    n = st["noisy"]
    assert n["margin_se"] == pytest.approx(0.1 / np.sqrt(400), rel=0.15)
    assert n["margin_low"] < n["margin"] < n["margin_high"]
    table = ev.format_uncertainty(st, "model", "toy")
    assert "| baseline | 0.5" in table and "+10.0 pts | 0.0 | +10.0 .. +10.0 |" in table
    assert f"| model | {m['mean']:.3f} | {m['se']:.3f} | {m['low']:.3f} .. {m['high']:.3f} | | |" in table


def test_bench_quality_merges_reports_and_prints_errors(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_quality.py"
    spec = importlib.util.spec_from_file_location("bench_quality", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    shapes = [ev.EvalShape(f"chair/{i}", "chair", None, None, None) for i in range(6)]
    scores = {"model": {s.name: {2: 0.5, 3: 0.7 + 0.01 * i} for i, s in enumerate(shapes)},
              "spectral": {s.name: {2: 0.6, 3: 0.62} for s in shapes}}
    for name, methods in (("a.json", ["model"]), ("b.json", ["spectral"])):
        part = {m: scores[m] for m in methods}
        report = {"command": f"evaluate {name}", "datasets": {"coseg": {
            "summary": ev.summarise(shapes, part), "scores": part}}}
        (tmp_path / name).write_text(json.dumps(report))
    assert bench.main([str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--resamples", "500"]) == 0
    out = capsys.readouterr().out
    assert "### coseg (6 shapes)" in out and "### coseg: bootstrap over shapes" in out
    assert "| spectral | 0.620 | 0.000 | 0.620 .. 0.620 | +10.5 pts |" in out


def test_read_coseg(coseg_dir):
    shapes = ev.load_coseg(coseg_dir)
    assert len(shapes) == 28
    assert {s.category for s in shapes} == {"chairs", "tele-aliens"}
    for s in shapes:
        assert len(s.labels) == len(s.faces) and s.labels.min() >= 1


def test_tiny_config_is_a_valid_family_member():
    from model_runtime.training.trainer import tiny_config

    cfg = tiny_config()
    cfg.validate()
    assert dataclasses.replace(cfg).feature_dim == 32


def test_evaluate_command_scores_the_bundled_model_fused_and_alone(tmp_path):
    """`python -m model_runtime evaluate` in-process on two procedural shapes: the default
    pipeline's clustering ("model", fused) and the features alone ("model_features")."""
    from model_runtime.cli import main

    out = tmp_path / "eval.json"
    rc = main(["evaluate", "--dataset", "procedural", "--per-category", "1", "--limit", "2",
               "--methods", "model,model_features,one_part", "--json", str(out), "--quiet"])
    assert rc == 0
    rep = json.loads(out.read_text())
    summary = rep["datasets"]["procedural"]["summary"]
    assert set(summary) == {"model", "model_features", "one_part"}
    for name in ("model", "model_features"):
        assert summary[name]["best_of_k"] > summary["one_part"]["best_of_k"]
    assert summary["model"]["meshing"]  # split by welded / loose
    assert "--touching-only" not in rep["command"]
    # the runtime's tree before look-alike merges, for comparison; the report says which it was
    rc = main(["evaluate", "--dataset", "procedural", "--per-category", "1", "--limit", "1", "--methods", "model",
               "--touching-only", "--json", str(out), "--quiet"])
    assert rc == 0 and "--touching-only" in json.loads(out.read_text())["command"]


def test_a_model_that_reads_normals_trains_exports_and_segments(tmp_path):
    """`--config small-normals`: one real step, the export keeps `point_normals`, and the
    runtime pipeline feeds it the sampled surface normals."""
    import dataclasses

    from model_runtime.field_model import FieldModel
    from model_runtime.mesh import MeshArrays
    from model_runtime.pipeline import SegmentOptions, segment_mesh

    t = Trainer(dataclasses.replace(_tiny_opts(tmp_path, steps=1), config="small-normals"), log=lambda s: None)
    t.run()
    m = FieldModel.load(tmp_path / "model.safetensors", device="cpu", precision="fp32")
    assert m.reads_normals and m.config.point_in_channels == 9
    s = make_shape(5, "table")
    res = segment_mesh(MeshArrays.from_triangles(s.vertices, s.faces), m, SegmentOptions(num_points=2048))
    assert res.labels(3).shape == (len(s.faces),) and len(np.unique(res.labels(3))) == 3
    # The evaluation's untrained control takes the model file's architecture (normals too).
    from model_runtime.cli import main

    out = tmp_path / "eval.json"
    rc = main(["evaluate", "--checkpoint", str(tmp_path / "model.safetensors"), "--dataset", "procedural",
               "--per-category", "1", "--limit", "1", "--methods", "untrained", "--json", str(out), "--quiet"])
    assert rc == 0 and "untrained" in json.loads(out.read_text())["datasets"]["procedural"]["summary"]


def test_init_fine_tunes_from_a_model_file_and_records_it(tmp_path):
    """--init: the network starts from the file's weights (a zero-step export equals the file),
    the temperature from its metadata, with a fresh optimiser; training then moves it; the
    run's metadata names the init file and the mix."""
    from model_runtime.checkpoint import load_weights

    base = Trainer(_tiny_opts(tmp_path / "base", steps=1, seed=5), log=lambda s: None)
    base.run()
    init = tmp_path / "base" / "model.safetensors"
    start = load_weights(init)
    zero = Trainer(_tiny_opts(tmp_path / "zero", steps=0, seed=1000, init=str(init), mix="weak"), log=lambda s: None)
    assert abs(float(zero.temp().detach()) - start.metadata["temperature"]) < 1e-6
    zero.run()
    again = load_weights(tmp_path / "zero" / "model.safetensors")
    assert again.state_dict.keys() == start.state_dict.keys()
    assert all(torch.equal(again.state_dict[k], start.state_dict[k]) for k in start.state_dict)
    recipe = again.metadata["training_recipe"]
    assert recipe["mix"] == "weak" and recipe["init"]["path"] == str(init) and len(recipe["init"]["sha256"]) == 64
    assert json.loads((tmp_path / "zero" / "options.json").read_text())["init"] == str(init)
    # without --init the same seed gives other weights (so the equality above is the init's doing)
    fresh = Trainer(_tiny_opts(tmp_path / "fresh", steps=0, seed=1000), log=lambda s: None).net.state_dict()
    assert any(not torch.equal(fresh[k].to(start.state_dict[k].dtype), start.state_dict[k]) for k in start.state_dict)
    # two fine-tune steps on the weak mix train from there
    tune = Trainer(_tiny_opts(tmp_path / "tune", steps=2, seed=1000, init=str(init), mix="weak"), log=lambda s: None)
    assert tune.optim.state == {}  # fresh optimiser
    tune.run()
    assert tune.step == 2
    moved = load_weights(tmp_path / "tune" / "model.safetensors")
    assert any(not torch.equal(moved.state_dict[k], start.state_dict[k]) for k in start.state_dict)


def test_init_refuses_a_model_of_another_config(tmp_path, capsys):
    from model_runtime.cli import main
    from model_runtime.errors import CheckpointError
    from model_runtime.model_files import default_model_path

    with pytest.raises(CheckpointError, match="differs from --config tiny"):
        Trainer(_tiny_opts(tmp_path / "a", steps=1, init=str(default_model_path())), log=lambda s: None)
    assert main(["train", "--out", str(tmp_path / "b"), "--config", "tiny", "--steps", "1",
                 "--init", str(default_model_path())]) == 1
    assert "fine-tuning needs the same configuration" in capsys.readouterr().err
    with pytest.raises(ValueError, match="mix"):
        Trainer(_tiny_opts(tmp_path / "c", steps=1, mix="organic"), log=lambda s: None)


def test_weak_mix_adds_the_weak_kinds_and_default_is_unchanged():
    from model_runtime.training.procedural import mix_category
    from model_runtime.training.shapes_organic import WEAK_KINDS
    from model_runtime.training.trainer import shape_seed

    seeds = [shape_seed(1000, step, i, 4) for step in range(100) for i in range(4)]
    cats = [mix_category(s, "weak") for s in seeds]
    assert cats == [mix_category(s, "weak") for s in seeds]  # deterministic
    weak = [c for c in cats if c in WEAK_KINDS]
    assert set(weak) == set(WEAK_KINDS) and set(cats) - set(WEAK_KINDS) == set(CATEGORIES)
    assert 0.2 < len(weak) / len(cats) < 0.4  # 7.2 of 25 weight units
    assert all(mix_category(s, "default") is None for s in seeds[:20])  # make_shape draws, as before
    heavy = [mix_category(s, "weak-heavy") for s in seeds]
    assert 0.45 < sum(c in WEAK_KINDS for c in heavy) / len(heavy) < 0.65  # 21.6 of 39.4 weight units
    # the CLI lists the mixes itself (it imports no training code to build its parser)
    import argparse

    from model_runtime.cli import train as train_cli
    from model_runtime.training.procedural import MIXES

    sub = argparse.ArgumentParser().add_subparsers()
    train_cli.add_parser(sub, "train")
    mix_action = next(a for a in sub.choices["train"]._actions if a.dest == "mix")
    assert tuple(mix_action.choices) == MIXES
    with pytest.raises(ValueError):
        mix_category(1, "organic")
    # a batch of the weak mix holds the drawn kinds; the default batch is the one of before
    step = next(st for st in range(100) if mix_category(shape_seed(1000, st, 0, 1), "weak") in WEAK_KINDS)
    kind = mix_category(shape_seed(1000, step, 0, 1), "weak")
    pins, _, _, labs, props = make_batch(1000, step, 1, 256, 64, 0.5, mix="weak")
    shape = make_shape(shape_seed(1000, step, 0, 1), kind, welded_fraction=0.5)
    assert shape.category == kind and props[0].shape == shape.proposals.shape
    import hashlib

    d = make_batch(0, 0, 2, 256, 64, 0.5, mix="default")
    h = hashlib.sha256()
    for t in d[:4]:
        h.update(np.ascontiguousarray(t.numpy()).tobytes())
    # measured with main's make_batch before --mix existed (2026-12-01)
    assert (h.hexdigest()[:16], [tuple(p.shape) for p in d[4]]) == ("ad250d7a0831d062", [(10, 8), (7, 6)])
