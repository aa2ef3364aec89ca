"""Crafted stored results (npz bytes) for the bounds tests and the bpy scenarios: tampered
entries, deflate bombs that claim any size in a few KB, merge trees with a cycle."""
import io
import zipfile

import numpy as np


def arrays_of(res):
    """The entries `save` writes, as a dict to tamper with."""
    with np.load(io.BytesIO(res.to_bytes()), allow_pickle=False) as d:
        return {k: d[k] for k in d.files}


def npz(arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def npy_header(shape, dtype) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                               "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue()


def with_entry(arrays, name, header: bytes, body_bytes: int, deflate=True) -> bytes:
    """`arrays` as an npz plus entry `name` made of `header` and `body_bytes` zero bytes,
    streamed (never held in memory), deflated: a few KB claiming any size."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED) as zf:
        for key, value in arrays.items():
            if key == name:
                continue
            with zf.open(f"{key}.npy", "w") as f:
                np.lib.format.write_array(f, np.asanyarray(value), allow_pickle=False)
        with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
            f.write(header)
            chunk = bytes(1 << 20)
            left = body_bytes
            while left > 0:
                f.write(chunk[: min(left, len(chunk))])
                left -= len(chunk)
    return buf.getvalue()


def three_cycle(tree, nodes):
    """`tree.children` rewired so that each of the internal `nodes` becomes a child of the next
    one's merge (a cycle), by swapping child slots: every node is still merged exactly once, so
    only the order rule catches it. (This one hung the old loader's pointer jumping.)"""
    flat = tree.children.copy().ravel()
    p = tree.num_leaves
    for i, n in enumerate(nodes):
        t = nodes[(i + 1) % len(nodes)] - p
        a, b = 2 * t, 2 * t + 1
        slot = a if tree.size[flat[a]] >= tree.size[flat[b]] else b
        cur = int(np.flatnonzero(flat == n)[0])
        flat[cur], flat[slot] = flat[slot], flat[cur]
    return flat.reshape(-1, 2)
