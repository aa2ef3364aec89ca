"""The demo's picture: scripts/render_demo.py renders a segmented mesh headless with the bpy
module, one copy per part count, and every part's colour shows in the PNG."""
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("bpy")

REPO = Path(__file__).resolve().parent.parent


def test_demo_picture_shows_every_part(tmp_path):
    from model_runtime.checkpoint import save_compact
    from model_runtime.config import PartFieldConfig
    from model_runtime.meshio import part_colors
    from model_runtime.network import PartFieldNet

    torch.manual_seed(0)
    cfg = PartFieldConfig.small()
    ckpt = save_compact(tmp_path / "small.safetensors", PartFieldNet(cfg).state_dict(), cfg, {"name": "t"},
                        dtype=torch.float32)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = lambda *a: subprocess.run([sys.executable, *map(str, a)], cwd=REPO, capture_output=True, text=True,
                                    env=env, timeout=600)
    r = run("scripts/make_demo_meshes.py", tmp_path / "meshes")
    assert r.returncode == 0, r.stderr
    r = run("-m", "model_runtime", "segment", tmp_path / "meshes" / "chair.obj", "--parts", "2,4", "--out",
            tmp_path / "cli", "--checkpoint", ckpt, "--points", "4000", "--quiet", "--no-mesh")
    assert r.returncode == 0, r.stderr
    png = tmp_path / "chair_parts.png"
    r = run("scripts/render_demo.py", tmp_path / "meshes" / "chair.obj", tmp_path / "cli", png, "--parts", "2,4",
            "--size", "480x200", "--engine", "auto")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"): {png}" in r.stdout
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24]) == (480, 200)
    # Decode the pixels with bpy and look for each part's colour (shading scales a colour, so
    # compare chromaticity: rgb / (r + g + b)).
    probe = textwrap.dedent(f"""
        import bpy, numpy as np
        img = bpy.data.images.load({str(png)!r})
        px = np.array(img.pixels[:], dtype=np.float32).reshape(-1, 4)[:, :3]
        np.save({str(tmp_path / 'px.npy')!r}, px)
    """)
    r = run("-c", probe)
    assert r.returncode == 0, r.stderr
    px = np.load(tmp_path / "px.npy")
    lit = px.sum(1) > 0.15
    chroma = px[lit] / px[lit].sum(1, keepdims=True)
    labels = np.load(tmp_path / "cli" / "chair_k4.labels.npy")
    palette = part_colors(4).astype(np.float32)
    for part in np.unique(labels):
        want = palette[part] / palette[part].sum()
        near = (np.abs(chroma - want).max(1) < 0.04).sum()
        assert near > 30, (part, near)
