#!/usr/bin/env python3
"""`tessera run na` end to end on a GPU machine, checked against NATTEN's rule as the anchors
write it (torch_anchors.na_allowed, the FlexAttention mask), in float64: an independent
statement of the semantics, not tessera's own reference.

    python3 roundtrip_na.py TESSERA

Needs roundtrip.py and torch_anchors.py beside it (scripts/gpu-bundle puts them in dist/).
"""
import sys
import tempfile

import torch

from roundtrip import compare, run_tessera
from torch_anchors import na_allowed

# (tokens, window, dilation, causal, dtype flag): ragged lengths, odd and even windows.
CASES = [(1000, 13, 2, False, "bf16"), (777, 64, 1, True, "f16"), (4097, 255, 3, False, "bf16")]


def check(tessera, workdir, seq, window, dilation, causal, dtype_name):
    dtype = {"bf16": torch.bfloat16, "f16": torch.float16}[dtype_name]
    batch, heads, kv_heads, head_dim = 1, 4, 2, 128
    gen = torch.Generator().manual_seed(seq)
    q = torch.randn(batch, heads, seq, head_dim, generator=gen).to(dtype)
    k = torch.randn(batch, kv_heads, seq, head_dim, generator=gen).to(dtype)
    v = torch.randn(batch, kv_heads, seq, head_dim, generator=gen).to(dtype)
    args = ["na", "--window", str(window), "--dilation", str(dilation), "--dtype", dtype_name,
            "--head-dim", str(head_dim)] + (["--causal"] if causal else [])
    got = run_tessera(tessera, args, q, k, v, workdir)

    dev = "cuda"
    idx = torch.arange(seq, device=dev)
    allowed = na_allowed([seq], [window], [dilation], [causal], None)(0, 0, idx[:, None], idx[None, :])
    group = heads // kv_heads
    q64, k64, v64 = (t.to(dev, torch.float64) for t in (q, k, v))
    k64, v64 = k64.repeat_interleave(group, dim=1), v64.repeat_interleave(group, dim=1)
    scores = (q64 @ k64.transpose(-1, -2)) / head_dim**0.5
    scores = scores.masked_fill(~allowed, float("-inf"))
    o_ref = scores.softmax(-1) @ v64
    lse_ref = scores.logsumexp(-1)
    return compare(f"na L={seq} w={window} d={dilation} causal={causal} {dtype_name}", got, o_ref, lse_ref)


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    with tempfile.TemporaryDirectory() as workdir:
        results = [check(argv[1], workdir, *case) for case in CASES]
    if not all(results):
        sys.exit(f"{results.count(False)} of {len(results)} round trips failed")


if __name__ == "__main__":
    main(sys.argv)
