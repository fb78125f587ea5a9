#!/usr/bin/env python3
"""SDPA flash and cuDNN timings for the dense table, in one process (torch starts once).

Uses torch_anchors.py's own timing and output (do_bench median, one JSON line per case), so the
numbers are the anchor's; it only loops over the table's shapes and skips FlexAttention, whose
per-shape compile would not fit one device call. Run beside torch_anchors.py:
    python3 anchors_dense.py [SEQ ...]
"""
import sys

import torch
from torch.nn.attention import SDPBackend

import torch_anchors as ta

HEADS = 32


def main(seqs):
    print('{"device": "%s", "torch": "%s"}' % (torch.cuda.get_device_name(0), torch.__version__), flush=True)
    for seq in seqs:
        for causal in (False, True):
            for dt in (torch.bfloat16, torch.float16):
                for d in (64, 128):
                    q, k, v = (ta.rand(1, HEADS, seq, d, dtype=dt) for _ in range(3))
                    flops = 4 * HEADS * seq * seq * d * (0.5 if causal else 1.0)
                    case = f"dense B1 H{HEADS} S{seq} D{d} causal={int(causal)} {dt}"
                    for be in (SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION):
                        try:
                            ms = ta.bench(lambda: ta.sdpa(q, k, v, be, is_causal=causal))
                            ta.emit(case, be.name.lower(), ms, flops=flops)
                        except RuntimeError as e:
                            print('{"case": "%s", "impl": "%s", "error": "%s"}' % (case, be.name.lower(), str(e)[:100]), flush=True)
                    del q, k, v


if __name__ == "__main__":
    torch.manual_seed(0)
    main([int(a) for a in sys.argv[1:]] or [1024, 4096, 16384, 65536])
