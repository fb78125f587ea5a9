"""Cost of NATTEN-style token permutation on the GPU: the passes that reorder Q, K, V into
tile-major order (and O back) for a 1-D kernel over box tiles. tessera tiles boxes in the kernel
instead (each tile row is addressed by its grid coordinates), so this is the time a permuting
design adds on top of the same attention kernel.

Usage: python3 permute_cost.py  (prints one JSON line per case)
"""
import json

import torch
from triton.testing import do_bench

CASES = [  # grid, query tile (NATTEN's / our winner), heads
    ((256, 256), (16, 8), 24),
    ((30, 48, 80), (2, 8, 8), 24),
    ((16, 64, 64), (1, 8, 8), 24),
]


def permute(x, grid, tile):
    b, h, _, d = x.shape
    shape = [b, h]
    for g, t in zip(grid, tile):
        shape += [g // t, t]
    x = x.view(*shape, d)
    n = len(grid)
    outer = [2 + 2 * i for i in range(n)]
    inner = [3 + 2 * i for i in range(n)]
    return x.permute(0, 1, *outer, *inner, 2 + 2 * n).contiguous()


def main():
    print(json.dumps({"device": torch.cuda.get_device_name(0)}))
    for grid, tile, heads in CASES:
        grid = tuple(g - g % t for g, t in zip(grid, tile))  # whole tiles: permutation's best case
        tokens = 1
        for g in grid:
            tokens *= g
        q, k, v, o = (torch.randn(1, heads, tokens, 128, device="cuda", dtype=torch.float16) for _ in range(4))
        qkv = do_bench(lambda: [permute(t, grid, tile) for t in (q, k, v)])
        out = do_bench(lambda: permute(o, grid, tile))  # the inverse moves the same bytes
        moved = 4 * 2 * q.numel() * q.element_size()
        print(json.dumps({"grid": grid, "tile": tile, "heads": heads, "permute_qkv_ms": round(qkv, 4),
                          "unpermute_o_ms": round(out, 4), "total_ms": round(qkv + out, 4),
                          "TB_per_s": round(moved / ((qkv + out) * 1e-3) / 1e12, 2)}))


if __name__ == "__main__":
    main()
