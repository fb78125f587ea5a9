#!/usr/bin/env python3
"""`tessera run` end to end on a GPU machine: random q, k, v into a safetensors file, the kernel
run by the CLI binary, its `o` compared with torch's SDPA and its `lse` with a logsumexp, both
in float64 on the same rounded inputs. Exits non-zero when a relative error (as
tessera_codegen::reference::rel_error: ||out - ref|| / ||ref||) is above its bound.

    python3 roundtrip.py TESSERA [KERNEL ...]    # default kernel: dense_bf16_d128

Uses the `safetensors` package when it is installed and a minimal reader and writer of the
format (8-byte little-endian header length, JSON header, raw bytes) when it is not.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

import torch
import torch.nn.functional as F

O_BOUND, LSE_BOUND = 1e-2, 1e-3
DTYPES = {"bf16": torch.bfloat16, "f16": torch.float16}
FILE_DTYPES = {torch.bfloat16: "BF16", torch.float16: "F16", torch.float32: "F32"}

try:
    from safetensors.torch import load_file, save_file

    WRITER = "safetensors"
except ImportError:
    WRITER = "built-in"

    def save_file(tensors, path):
        header, blobs, offset = {}, [], 0
        for name, t in tensors.items():
            blob = t.contiguous().cpu().view(torch.uint8).numpy().tobytes()
            header[name] = {
                "dtype": FILE_DTYPES[t.dtype],
                "shape": list(t.shape),
                "data_offsets": [offset, offset + len(blob)],
            }
            blobs.append(blob)
            offset += len(blob)
        text = json.dumps(header).encode()
        text += b" " * (-len(text) % 8)
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(text)))
            f.write(text)
            for blob in blobs:
                f.write(blob)

    def load_file(path):
        with open(path, "rb") as f:
            data = f.read()
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + n])
        by_name = {v: k for k, v in FILE_DTYPES.items()}
        out = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            start, end = info["data_offsets"]
            raw = torch.frombuffer(bytearray(data[8 + n + start : 8 + n + end]), dtype=torch.uint8)
            out[name] = raw.view(by_name[info["dtype"]]).reshape(info["shape"])
        return out


def rel_error(out, ref):
    out, ref = out.double(), ref.double()
    if out.shape != ref.shape or out.isnan().any():
        return float("inf")
    same = out == ref  # equal infinities (-inf lse of empty rows) are no error
    diff = torch.where(same, torch.zeros_like(ref), out - ref)
    if not diff.isfinite().all():
        return float("inf")
    norm = ref[ref.isfinite()].norm().item()
    return diff.norm().item() / norm if norm > 0 else diff.norm().item()


def check(tessera, kernel, workdir):
    visit, dtype_name, d = kernel.split("_")
    dtype, head_dim, causal = DTYPES[dtype_name], int(d[1:]), visit == "causal"
    # Ragged length and grouped-query heads, so tails and the head mapping are exercised.
    batch, heads, kv_heads, seq = 2, 8, 2, 1000
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(batch, heads, seq, head_dim, generator=gen).to(dtype)
    k = torch.randn(batch, kv_heads, seq, head_dim, generator=gen).to(dtype)
    v = torch.randn(batch, kv_heads, seq, head_dim, generator=gen).to(dtype)
    got = run_tessera(tessera, [kernel], q, k, v, workdir)
    if got["o"].dtype != dtype or list(got["o"].shape) != list(q.shape):
        print(f"{kernel}: o is {got['o'].dtype} {list(got['o'].shape)}, expected {dtype} {list(q.shape)}")
        return False

    dev = "cuda"
    group = heads // kv_heads
    q64, k64, v64 = (t.to(dev, torch.float64) for t in (q, k, v))
    k64, v64 = k64.repeat_interleave(group, dim=1), v64.repeat_interleave(group, dim=1)
    o_ref = F.scaled_dot_product_attention(q64, k64, v64, is_causal=causal)
    scores = (q64 @ k64.transpose(-1, -2)) / head_dim**0.5
    if causal:
        # Equal lengths: SDPA's top-left and tessera's bottom-right alignment agree.
        scores = scores.masked_fill(torch.ones(seq, seq, dtype=torch.bool, device=dev).triu(1), float("-inf"))
    lse_ref = scores.logsumexp(-1)

    return compare(f"{kernel} [{batch}, {heads}/{kv_heads}, {seq}, {head_dim}]", got, o_ref, lse_ref)


def run_tessera(tessera, args, q, k, v, workdir):
    """`tessera run ARGS --lse` on q, k, v through safetensors files; returns the output's tensors."""
    inputs, output = os.path.join(workdir, "in.safetensors"), os.path.join(workdir, "out.safetensors")
    save_file({"q": q, "k": k, "v": v}, inputs)
    cmd = [tessera, "run", *args, "--inputs", inputs, "--output", output, "--lse"]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return load_file(output)


def compare(label, got, o_ref, lse_ref):
    """Checks the file's `o` and `lse` against float64 references and prints one line."""
    o_err = rel_error(got["o"].to(o_ref.device), o_ref)
    lse_err = rel_error(got["lse"].to(lse_ref.device), lse_ref)
    ok = o_err <= O_BOUND and lse_err <= LSE_BOUND
    print(f"{label}: o rel err {o_err:.2e} (bound {O_BOUND:g}), "
          f"lse rel err {lse_err:.2e} (bound {LSE_BOUND:g}): {'ok' if ok else 'FAILED'}", flush=True)
    return ok


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    tessera, kernels = argv[1], argv[2:] or ["dense_bf16_d128"]
    print(f"safetensors files via the {WRITER} reader and writer")
    with tempfile.TemporaryDirectory() as workdir:
        results = [check(tessera, kernel, workdir) for kernel in kernels]
    if not all(results):
        sys.exit(f"{results.count(False)} of {len(results)} round trips failed")


if __name__ == "__main__":
    main(sys.argv)
