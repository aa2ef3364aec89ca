"""Rebuild `partfield_parity_subset.npz` from the full parity fixture (5.3 MB).

    python tests/data/make_parity_subset.py /path/to/partfield_reference/partfield_parity.npz

The network input (`points`, all 20,000) is kept whole, so every stored output is the
original implementation's own value, bit for bit: the subset keeps every 32nd query
(64 of 2,048; decoding is per query), every 8th probed texel (64 of 512) and the first
32 points of PVConv block 0. tests/test_reference_data.py checks the subset against the
full file whenever that file is present.
"""
import sys

import numpy as np

QUERY_STEP = 32
TEXEL_STEP = 8
PVCONV_POINTS = 32


def subset(full: dict) -> dict:
    q = np.arange(0, len(full["queries"]), QUERY_STEP)
    t = np.arange(0, len(full["texels"]), TEXEL_STEP)
    return {
        "points": full["points"],
        "queries": full["queries"][q],
        "features": full["features"][q],
        "query_index": q,
        "texels": full["texels"][t],
        "texel_index": t,
        "unet_texels": full["unet_texels"][t],
        "transformer_texels": full["transformer_texels"][t],
        "pvconv0_point_features": full["pvconv0_point_features"][:PVCONV_POINTS],
    }


def main(src: str, dst: str = "tests/data/partfield_parity_subset.npz") -> None:
    with np.load(src) as data:
        full = {k: data[k] for k in data.files}
    np.savez_compressed(dst, **subset(full))
    print(f"wrote {dst}")


if __name__ == "__main__":
    main(*sys.argv[1:])
