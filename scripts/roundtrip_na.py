#!/usr/bin/env python3
"""`tessera run na` end to end on a GPU machine, over 1-, 2- and 3-D token grids, checked against
NATTEN's rule as the anchors write it (torch_anchors.na_allowed, the FlexAttention mask, per
axis over the row-major grid), in float64: an independent statement of the semantics, not
tessera's own reference.

    python3 roundtrip_na.py TESSERA

Needs roundtrip.py and torch_anchors.py beside it (scripts/gpu-bundle puts them in dist/).
"""
import math
import sys
import tempfile

import torch

from roundtrip import compare, run_tessera
from torch_anchors import na_allowed

# (grid, window, dilation, causal, dtype flag), one entry per axis: ragged and odd extents, odd
# and even windows, dilation and causality on some axes only.
CASES = [
    ([1000], [13], [2], [False], "bf16"),
    ([777], [64], [1], [True], "f16"),
    ([4097], [255], [3], [False], "bf16"),
    ([37, 45], [13, 12], [1, 1], [False, False], "bf16"),
    ([33, 29], [7, 9], [2, 1], [False, True], "f16"),
    ([9, 21, 19], [3, 7, 8], [1, 1, 1], [True, False, False], "bf16"),
]


def flag(name, values):
    return [f"--{name}", *map(str, values)]


def by_axis(values):
    return "x".join(str(int(v)) for v in values)


def check(tessera, workdir, grid, window, dilation, causal, dtype_name):
    dtype = {"bf16": torch.bfloat16, "f16": torch.float16}[dtype_name]
    batch, heads, kv_heads, head_dim = 1, 4, 2, 128
    seq = math.prod(grid)
    gen = torch.Generator().manual_seed(seq)
    q = torch.randn(batch, heads, seq, head_dim, generator=gen).to(dtype)
    k = torch.randn(batch, kv_heads, seq, head_dim, generator=gen).to(dtype)
    v = torch.randn(batch, kv_heads, seq, head_dim, generator=gen).to(dtype)
    # A 1-D grid is left to its default, the token count, so that path is exercised too.
    args = ["na", *(flag("grid", grid) if len(grid) > 1 else []), *flag("window", window),
            *flag("dilation", dilation), *flag("causal", map(int, causal)),
            "--dtype", dtype_name, "--head-dim", str(head_dim)]
    got = run_tessera(tessera, args, q, k, v, workdir)

    dev = "cuda"
    idx = torch.arange(seq, device=dev)
    allowed = na_allowed(grid, window, dilation, causal, None)(0, 0, idx[:, None], idx[None, :])
    group = heads // kv_heads
    q64, k64, v64 = (t.to(dev, torch.float64) for t in (q, k, v))
    k64, v64 = k64.repeat_interleave(group, dim=1), v64.repeat_interleave(group, dim=1)
    scores = (q64 @ k64.transpose(-1, -2)) / head_dim**0.5
    scores = scores.masked_fill(~allowed, float("-inf"))
    o_ref = scores.softmax(-1) @ v64
    lse_ref = scores.logsumexp(-1)
    label = (f"na{len(grid)}d grid={by_axis(grid)} w={by_axis(window)} d={by_axis(dilation)} "
             f"causal={by_axis(causal)} {dtype_name}")
    return compare(label, got, o_ref, lse_ref)


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    with tempfile.TemporaryDirectory() as workdir:
        results = [check(argv[1], workdir, *case) for case in CASES]
    if not all(results):
        sys.exit(f"{results.count(False)} of {len(results)} round trips failed")


if __name__ == "__main__":
    main(sys.argv)
