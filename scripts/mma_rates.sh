#!/usr/bin/env bash
# Tensor-core throughput microbenchmark for issue 7 (int4 / int8 / fp8 / bf16
# mma.sync and wgmma on Hopper). Run from the repo root on an H100:
#   bash scripts/mma_rates.sh [FILTER]
# FILTER (optional) keeps only instructions whose PTX name contains it, e.g. "s4".
# Needs nvcc (CUDA 12.4+; written against 13.0); no network, no Rust.
# Prints one JSON object per line on stdout (device, nvidia-smi, sass,
# measurement..., summary) and a table on stderr. If $OUT is set, copies of the
# JSON lines, the SASS and the ptxas log are written there too.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$here/mma_rates.cu"
build="${MMA_RATES_BUILD:-${TMPDIR:-/tmp}/mma_rates_build}"
mkdir -p "$build"

nvcc_bin="${NVCC:-}"
if [ -z "$nvcc_bin" ]; then
  for c in nvcc /usr/local/cuda/bin/nvcc /usr/local/cuda-13.0/bin/nvcc; do
    if command -v "$c" >/dev/null 2>&1; then nvcc_bin="$(command -v "$c")"; break; fi
  done
fi
if [ -z "$nvcc_bin" ]; then
  echo '{"type":"error","error":"nvcc not found (set NVCC=/path/to/nvcc)"}'
  exit 1
fi
"$nvcc_bin" --version | tail -n 2 >&2

# -arch=sm_90a: sm_90a SASS (what runs) plus compute_90 PTX, where the wgmma
# kernels compile to a trap (guarded by __CUDA_ARCH_FEAT_SM90_ALL).
"$nvcc_bin" -O3 -arch=sm_90a -std=c++17 -Xptxas -v -o "$build/mma_rates" "$src" \
  >"$build/ptxas.log" 2>&1 || { cat "$build/ptxas.log" >&2; exit 1; }
grep -i 'warning\|Potential Performance Loss' "$build/ptxas.log" >&2 || true

emit() {  # echo a JSON line to stdout and to $OUT/mma_rates.jsonl when $OUT is set
  printf '%s\n' "$1"
  if [ -n "${OUT:-}" ]; then printf '%s\n' "$1" >>"$OUT/mma_rates.jsonl"; fi
}
if [ -n "${OUT:-}" ]; then mkdir -p "$OUT"; : >"$OUT/mma_rates.jsonl"; cp "$build/ptxas.log" "$OUT/"; fi

smi() {
  command -v nvidia-smi >/dev/null 2>&1 || return 0
  local q="name,clocks.sm,clocks.max.sm,clocks.applications.graphics,power.draw,power.limit,temperature.gpu,clocks_event_reasons.active"
  local v
  v="$(nvidia-smi --query-gpu="$q" --format=csv,noheader 2>/dev/null | head -n 1)" ||
    v="$(nvidia-smi --query-gpu="${q%,*}" --format=csv,noheader 2>/dev/null | head -n 1)" || v=""
  emit "{\"type\":\"nvidia-smi\",\"when\":\"$1\",\"query\":\"$q\",\"value\":\"${v//\"/}\"}"
}

# Static evidence: which SASS each mma.sync kernel became (native IMMA/HMMA, or
# an unpack + call sequence). Needs cuobjdump and python3; skipped otherwise.
cuobj="$(dirname "$nvcc_bin")/cuobjdump"
if [ -x "$cuobj" ] && command -v python3 >/dev/null 2>&1; then
  if "$cuobj" -sass "$build/mma_rates" >"$build/sass.txt" 2>/dev/null; then
    [ -n "${OUT:-}" ] && cp "$build/sass.txt" "$OUT/"
    python3 - "$build/sass.txt" <<'PY' | while IFS= read -r line; do emit "$line"; done
import collections, json, re, sys
fn, counts = None, collections.defaultdict(collections.Counter)
for line in open(sys.argv[1]):
    m = re.search(r"Function : (\S+)", line)
    if m:
        fn = m.group(1)
        continue
    m = re.match(r"\s*/\*[0-9a-f]{4}\*/\s+(@!?U?P\w+\s+)?([A-Z0-9_]+)(\.[A-Z0-9_.]+)?", line)
    if m and fn:
        counts[fn][m.group(2) + (m.group(3) or "")] += 1
for fn, c in sorted(counts.items()):
    keep = {k: v for k, v in c.items() if "MMA" in k or "F2FP" in k or "CALL" in k}
    print(json.dumps({"type": "sass", "kernel": fn, "instructions": sum(c.values()), "tensor_and_convert_ops": keep}))
PY
  fi
fi

smi before
"$build/mma_rates" "${1:-}" | while IFS= read -r line; do emit "$line"; done
smi after
