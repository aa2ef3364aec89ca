"""Checkpoint loading: formats, no pickled code, and a clear error for every bad file."""
import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from model_runtime.checkpoint import LoadedWeights, build_network, load_weights, save_compact
from model_runtime.config import PartFieldConfig
from model_runtime.errors import CheckpointError, DeviceOutOfMemoryError, InputError
from model_runtime.field_model import FieldModel
from model_runtime.network import PartFieldNet
from tests.conftest import REPO_ROOT
from tests.reference_model import LIGHTNING_SAMPLE, reference_state_dict


@pytest.fixture(scope="module")
def small_state():
    torch.manual_seed(0)
    cfg = PartFieldConfig.small()
    return cfg, PartFieldNet(cfg).state_dict()


@pytest.fixture
def small_ckpt(tmp_path, small_state):
    cfg, state = small_state
    return save_compact(tmp_path / "small.safetensors", state, cfg, {"name": "test-small"}, dtype=torch.float32)


def run_python(code: str, **env):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          cwd=REPO_ROOT, env={**os.environ, **env}, timeout=600)


def test_lightning_sample_loads_without_yacs_and_names_missing_keys(reference_dir):
    result = run_python(f"""
        import sys
        sys.modules["yacs"] = None          # importing yacs now fails
        sys.modules["lightning"] = None
        sys.modules["pytorch_lightning"] = None
        try:
            import yacs
        except ImportError:
            pass
        else:
            raise SystemExit("yacs importable")
        from model_runtime.checkpoint import load_weights, build_network
        from model_runtime.errors import CheckpointError
        w = load_weights({str(LIGHTNING_SAMPLE)!r})
        assert w.kind == "lightning", w.kind
        assert w.metadata["training_config"]["triplane_resolution"] == 128
        try:
            build_network(w, "sample")
        except CheckpointError as exc:
            print("ERR", exc)
    """)
    assert result.returncode == 0, result.stderr
    assert "ERR sample does not fit the network: 199 missing keys (first: " in result.stdout


def test_full_size_lightning_file_loads(tmp_path, reference_dir):
    """Write a Lightning-structured file (pickled yacs CfgNode, Adam state) and load it without yacs."""
    path = tmp_path / "model_objaverse_standin.ckpt"
    result = run_python(f"""
        import sys, types, collections, torch
        sys.path.insert(0, {str(REPO_ROOT)!r})
        from tests.reference_model import reference_state_dict
        # A throw-away module named like yacs so the pickle refers to yacs.config.CfgNode.
        yacs = types.ModuleType("yacs"); config = types.ModuleType("yacs.config")
        class CfgNode(dict):
            def __init__(self, *a, **k):
                super().__init__(*a, **k); self.__dict__["__immutable__"] = False
        CfgNode.__module__ = "yacs.config"
        config.CfgNode = CfgNode; yacs.config = config
        sys.modules["yacs"] = yacs; sys.modules["yacs.config"] = config
        sd = collections.OrderedDict(reference_state_dict())
        cfg = CfgNode(triplane_resolution=128, pvcnn=CfgNode(z_triplane_channels=256))
        first = next(iter(sd))
        torch.save({{
            "epoch": 3, "global_step": 1000, "pytorch-lightning_version": "2.2.0",
            "state_dict": sd, "loops": {{}}, "callbacks": {{}},
            "optimizer_states": [{{"state": {{0: {{"step": torch.tensor(1.0), "exp_avg": torch.zeros(3, 4)}}}},
                                   "param_groups": [{{"lr": 1e-4, "params": [0]}}]}}],
            "lr_schedulers": [], "hparams_name": "kwargs", "hyper_parameters": {{"cfg": cfg}},
        }}, {str(path)!r})
    """)
    assert result.returncode == 0, result.stderr
    code = f"""
        import sys
        sys.modules["yacs"] = None
        from model_runtime.checkpoint import load_weights, build_network
        w = load_weights({str(path)!r})
        net = build_network(w, "stand-in")
        print(w.kind, len(w.state_dict), w.parameter_count, w.config.name, w.metadata["epoch"])
    """
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["lightning", "203", "106914881", "partfield-objaverse", "3"]
    # Values survive exactly (spot check in this process).
    w = load_weights(path)
    ref = reference_state_dict()
    for key in ("triplane_transformer.pos_embed", "pvcnn.unet_encoder.conv_final.bias", "logit_scale"):
        assert torch.equal(w.state_dict[key], ref[key])


def test_plain_state_dict_and_safetensors_roundtrip(tmp_path, small_state):
    cfg, state = small_state
    pt = tmp_path / "plain.pt"
    torch.save(state, pt)
    w = load_weights(pt)
    # A plain state_dict carries no config: the known family member with these shapes is found,
    # with the head count that shapes do not show.
    assert w.kind == "state_dict" and w.config == cfg
    build_network(w)
    from safetensors.torch import save_file

    st = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(st))
    assert load_weights(st).kind == "safetensors"
    compact = save_compact(tmp_path / "c.safetensors", state, cfg, {"name": "x", "licence": "GPL-3.0-or-later"})
    wc = load_weights(compact)
    assert wc.kind == "compact" and wc.config == cfg
    assert all(t.dtype == torch.float16 for t in wc.state_dict.values())
    assert wc.metadata["licence"] == "GPL-3.0-or-later"


def test_compact_fp16_of_released_weights_keeps_features(tmp_path, reference_dir):
    """The converted fp16 file gives features within cosine 0.999 of the fp32 original."""
    state = reference_state_dict()
    path = save_compact(tmp_path / "released_fp16.safetensors", state, PartFieldConfig.released(), {})
    assert path.stat().st_size < 0.55 * sum(t.numel() * 4 for t in state.values())
    fp16 = FieldModel.load(path, device="cpu")
    assert not fp16.config.dead_modules
    fp32 = FieldModel(build_network(LoadedWeights(state, PartFieldConfig.released(), "sd")), torch.device("cpu"),
                      torch.float32, "fp32")
    rng = np.random.default_rng(0)
    pts = rng.uniform(-0.9, 0.9, (4000, 3)).astype(np.float32)
    a = fp32.features(pts, pts[:1000])
    b = fp16.features(pts, pts[:1000])
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cos.min() > 0.999


@pytest.mark.parametrize("case", ["missing", "folder", "empty", "truncated", "garbage", "truncated_zip"])
def test_unreadable_files_give_clear_errors(tmp_path, small_ckpt, case):
    target = tmp_path / "bad.ckpt"
    if case == "missing":
        expected = "not found"
    elif case == "folder":
        target = tmp_path
        expected = "is a folder"
    elif case == "empty":
        target.write_bytes(b"")
        expected = "empty or truncated"
    elif case == "truncated":
        data = small_ckpt.read_bytes()
        target.write_bytes(data[: len(data) // 2])
        expected = "truncated"
    elif case == "garbage":
        target.write_bytes(b"this is not a checkpoint at all" * 10)
        expected = "not a checkpoint"
    else:
        full = tmp_path / "full.pt"
        torch.save({"a": torch.zeros(1000)}, full)
        data = full.read_bytes()
        target.write_bytes(data[: len(data) - 600])
        expected = "truncated"
    with pytest.raises(CheckpointError, match=expected):
        load_weights(target)


def test_key_and_shape_problems_are_named(small_state):
    cfg, state = small_state
    missing = {k: v for k, v in list(state.items())[3:]}
    with pytest.raises(CheckpointError, match=r"3 missing keys \(first: "):
        build_network(LoadedWeights(missing, cfg, "test"))
    extra = {**state, "decoder.extra.weight": torch.zeros(2), "decoder.more": torch.zeros(1)}
    with pytest.raises(CheckpointError, match=r"2 unexpected keys \(first: decoder.extra.weight"):
        build_network(LoadedWeights(extra, cfg, "test"))
    key = "triplane_transformer.pos_embed"
    wrong = {**state, key: torch.zeros(1, 7, 5)}
    with pytest.raises(CheckpointError, match=r"1 tensors have the wrong shape \(triplane_transformer.pos_embed is \(1, 7, 5\)"):
        build_network(LoadedWeights(wrong, cfg, "test"))
    nan = dict(state)
    nan["pvcnn.unet_encoder.conv_final.bias"] = torch.full_like(state["pvcnn.unet_encoder.conv_final.bias"], math.nan)
    with pytest.raises(CheckpointError, match="NaN or infinite weights in 1 tensors"):
        build_network(LoadedWeights(nan, cfg, "test"))


def test_bad_inputs_are_refused(small_ckpt):
    model = FieldModel.load(small_ckpt, device="cpu")
    with pytest.raises(InputError, match="at least 16 points"):
        model.encode(np.zeros((5, 3)))
    pts = np.random.default_rng(0).uniform(-0.9, 0.9, (100, 3))
    pts[3, 1] = np.nan
    with pytest.raises(InputError, match="NaN or infinite"):
        model.encode(pts)
    tri = model.encode(np.nan_to_num(pts))
    with pytest.raises(InputError, match="NaN or infinite"):
        model.decode(tri, np.array([[0.0, np.inf, 0.0]]))
    with pytest.raises(InputError, match="unknown device"):
        FieldModel.load(small_ckpt, device="tpu")


def test_out_of_memory_is_translated(small_ckpt, monkeypatch):
    model = FieldModel.load(small_ckpt, device="cpu")

    def exhausted(points, normals=None):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(model.network, "encode", exhausted)
    with pytest.raises(DeviceOutOfMemoryError, match="ran out of memory.*switch the device to CPU or sample fewer"):
        model.encode(np.random.default_rng(0).uniform(-0.9, 0.9, (100, 3)))


def test_cli_info_and_convert(tmp_path, small_state):
    cfg, state = small_state
    pt = tmp_path / "plain.pt"
    torch.save(state, pt)
    out = tmp_path / "converted.safetensors"
    r = subprocess.run([sys.executable, "-m", "model_runtime", "convert", str(pt), str(out)],
                       capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "model_runtime", "info", str(out), "--json"],
                       capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["format"] == "compact" and info["dtypes"] == ["float16"]
    assert info["parameters"] == sum(t.numel() for t in state.values())
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"nope" * 20)
    r = subprocess.run([sys.executable, "-m", "model_runtime", "info", str(bad)],
                       capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert r.returncode == 1 and "error: bad.ckpt" in r.stderr


def test_normals_model_saved_as_plain_state_dict_loads(tmp_path):
    """Issue 17 item 8: a plain .pt of the normals model did not load (point_normals never set)."""
    cfg = PartFieldConfig.small_normals()
    torch.manual_seed(0)
    state = PartFieldNet(cfg).state_dict()
    pt = tmp_path / "normals.pt"
    torch.save(state, pt)
    w = load_weights(pt)
    assert w.config == cfg and w.config.point_normals
    model = FieldModel(build_network(w), torch.device("cpu"), torch.float32, "normals", w)
    assert model.reads_normals
    pts = np.random.default_rng(0).uniform(-0.9, 0.9, (256, 3)).astype(np.float32)
    nrm = np.tile(np.array([[0, 0, 1]], np.float32), (256, 1))
    assert np.isfinite(model.features(pts, pts[:8], normals=nrm)).all()


def test_convert_keeps_metadata_that_is_not_json(tmp_path, reference_dir):
    """Issue 17 item 8: `convert` crashed on a checkpoint whose metadata held non-JSON values."""
    path = tmp_path / "odd_meta.ckpt"
    state = reference_state_dict()
    torch.save({"epoch": torch.tensor(3), "global_step": {1, 2}, "pytorch-lightning_version": b"2.2",
                "state_dict": state,
                "hyper_parameters": {"cfg": {"lr": float("nan"), "shape": (1, 2), 3: frozenset([4]),
                                             "deep": [[[[[[[[]]]]]]]]}}}, path)
    out = tmp_path / "odd.safetensors"
    r = subprocess.run([sys.executable, "-m", "model_runtime", "convert", str(path), str(out)],
                       capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)
    assert r.returncode == 0, r.stderr
    meta = load_weights(out).metadata
    assert meta["global_step"] == [1, 2] and "3" in meta["training_config"]
    assert meta["training_config"]["lr"] == "nan"
    json.dumps(meta)  # all JSON now


def test_config_ranges_refuse_before_building():
    import dataclasses

    for field_name, value, needle in [("transformer_depth", 100_000, "outside the supported range"),
                                      ("unet_depth", -1, "outside the supported range"),
                                      ("pvconv_channels", 3.5, "must be an integer"),
                                      ("transformer_depth", True, "must be an integer"),
                                      ("dead_modules", 1, "must be true or false"),
                                      ("name", "x" * 500, "name must be a string")]:
        cfg = dataclasses.replace(PartFieldConfig.small(), **{field_name: value})
        with pytest.raises(ValueError, match=needle):
            cfg.validate()
        with pytest.raises(ValueError, match=needle):
            PartFieldConfig.from_dict(cfg.to_dict())
    with pytest.raises(ValueError, match="JSON object"):
        PartFieldConfig.from_dict([1, 2])
