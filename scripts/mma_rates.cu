// mma_rates.cu: sustained tensor-core throughput on Hopper (sm_90a) for the
// instruction forms that low-bit Q.K^T estimation could use (issue 7):
//   mma.sync  m16n8k64 s4, m16n8k32 s8, m16n8k32 e4m3, m16n8k16 bf16 (baseline)
//   wgmma     m64n128 / m64n256 with both operands from shared-memory
//             descriptors: bf16 (k16), e4m3 (k32), s8 (k32)
// Build and run: bash scripts/mma_rates.sh   (nvcc -O3 -arch=sm_90a)
//
// Method. Every kernel keeps its operands in registers (mma.sync) or in one
// shared-memory tile (wgmma) and issues the instruction in a loop whose trip
// count is a kernel argument, so nothing is constant-folded; the accumulators
// are written to global memory only when a runtime flag is set (it never is in
// the timed runs, but the compiler cannot know that). mma.sync kernels keep
// CHAINS independent accumulators per warp so the loop is throughput-bound,
// not latency-bound. Grids are one wave (blocks per SM capped by the
// occupancy API) so the cycle count of block 0 (clock64) over the event time
// gives the SM clock actually sustained during the run. Each configuration
// is warmed up, its trip count scaled so one launch takes ~TARGET_MS, then
// timed RUNS times with CUDA events; the median is reported.
// ops = 2*M*N*K per instruction * instructions issued.
//
// What ptxas 13.0.88 emits for sm_90a (cuobjdump -sass of this file, checked
// without a GPU; scripts/mma_rates.sh prints the same counts as "sass" lines):
//   mma.sync bf16 m16n8k16 -> HMMA.16816.F32.BF16 (native)
//   mma.sync s8 m16n8k32   -> IMMA.16832.S8.S8 (native)
//   mma.sync s4 m16n8k64   -> CALL to a ~190-instruction subroutine per mma that
//                             sign-extends both operands' nibbles to s8 and runs
//                             2 x IMMA.16832.S8.S8 (emulated; no 4-bit tensor path)
//   mma.sync e4m3 m16n8k32 -> F2FP.F16.E4M3.UNPACK_B conversions + 2 x
//                             HMMA.16816.F32 (f16) per mma (emulated via f16)
//   wgmma bf16 / e4m3 / s8 -> HGMMA / QGMMA / IGMMA (native)
//
// Output: one JSON object per line. {"type":"device",...} first, then one
// {"type":"measurement",...} per (instruction, launch configuration), then one
// {"type":"summary",...} with the best configuration of each instruction.
#include <cuda_runtime.h>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include <algorithm>
#include <string>

#define CK(x)                                                                     \
  do {                                                                            \
    cudaError_t e_ = (x);                                                         \
    if (e_ != cudaSuccess) {                                                      \
      fprintf(stderr, "CUDA error %s at %s:%d: %s\n", cudaGetErrorName(e_),       \
              __FILE__, __LINE__, cudaGetErrorString(e_));                        \
      printf("{\"type\":\"error\",\"where\":\"%s:%d\",\"error\":\"%s\"}\n",       \
             __FILE__, __LINE__, cudaGetErrorName(e_));                           \
      exit(1);                                                                    \
    }                                                                             \
  } while (0)

static const int RUNS = 7;           // timed launches per configuration (median)
static const double TARGET_MS = 40;  // one launch lasts about this long

// ---------------------------------------------------------------------------
// Operand kinds
// ---------------------------------------------------------------------------
enum Op { BF16 = 0, S8 = 1, S4 = 2, E4M3 = 3 };

// ---------------------------------------------------------------------------
// mma.sync
// ---------------------------------------------------------------------------
template <int OP> struct MmaSync;

// One specialization per operand type; C/D are the same four registers ("+f" or "+r").
#define MMA_SYNC_SPEC(OP, KSTEP, ACC, C, INSTR)                                                 \
  template <> struct MmaSync<OP> {                                                               \
    typedef ACC acc_t;                                                                           \
    static constexpr int M = 16, N = 8, K = KSTEP;                                               \
    static constexpr const char* name = INSTR;                                                   \
    static __device__ __forceinline__ void run(ACC* c, const uint32_t* a, const uint32_t* b) {   \
      asm volatile(INSTR " {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"              \
                   : C(c[0]), C(c[1]), C(c[2]), C(c[3])                                          \
                   : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));          \
    }                                                                                            \
  };

MMA_SYNC_SPEC(BF16, 16, float, "+f", "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32")
MMA_SYNC_SPEC(S8, 32, int, "+r", "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32")
MMA_SYNC_SPEC(S4, 64, int, "+r", "mma.sync.aligned.m16n8k64.row.col.s32.s4.s4.s32")
MMA_SYNC_SPEC(E4M3, 32, float, "+f", "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32")

static const int MMA_THREADS = 256;  // 8 warps per block
static const int CHAINS = 8;         // independent accumulator chains per warp

// in: per lane 4 A words + CHAINS*2 B words (u32), 32 lanes.
// FRESH = false: the operand registers never change, so ptxas may hoist any
//   per-operand work out of the loop (it does for e4m3, see the notes below):
//   the pure issue rate of the instruction.
// FRESH = true: every iteration XORs a new pseudo-random mask into the low two
//   bits of every operand byte (A once per iteration, B of every chain), so
//   each mma sees new operands as in a real Q.K^T loop where the K fragments
//   change every step. Costs 23 integer ops per CHAINS mmas, for every dtype.
//   (Flipping only the low 2 bits of each byte keeps e4m3 away from NaN.)
template <int OP, bool FRESH>
__global__ void __launch_bounds__(MMA_THREADS)
mma_sync_kernel(const uint32_t* __restrict__ in, uint32_t* __restrict__ out, long long iters,
                int flag, long long* __restrict__ cycles) {
  typedef MmaSync<OP> I;
  typedef typename I::acc_t acc_t;
  const int lane = threadIdx.x & 31;
  const uint32_t* src = in + lane * (4 + 2 * CHAINS);
  uint32_t a[4], b[CHAINS][2];
#pragma unroll
  for (int i = 0; i < 4; i++) a[i] = src[i];
#pragma unroll
  for (int c = 0; c < CHAINS; c++) {
    b[c][0] = src[4 + 2 * c];
    b[c][1] = src[5 + 2 * c];
  }
  acc_t acc[CHAINS][4];
#pragma unroll
  for (int c = 0; c < CHAINS; c++)
#pragma unroll
    for (int j = 0; j < 4; j++) acc[c][j] = 0;

  uint32_t lcg = src[0] ^ (blockIdx.x * 0x9E3779B9u) ^ threadIdx.x;

  long long t0 = clock64();
#pragma unroll 2
  for (long long it = 0; it < iters; it++) {
    if (FRESH) {
      lcg = lcg * 1664525u + 1013904223u;
      const uint32_t msk = lcg & 0x03030303u;
#pragma unroll
      for (int i = 0; i < 4; i++) a[i] ^= msk;
#pragma unroll
      for (int c = 0; c < CHAINS; c++) {
        b[c][0] ^= msk;
        b[c][1] ^= msk;
      }
    }
#pragma unroll
    for (int c = 0; c < CHAINS; c++) I::run(acc[c], a, b[c]);
  }
  long long t1 = clock64();

  if (flag) {
    acc_t s = 0;
#pragma unroll
    for (int c = 0; c < CHAINS; c++)
#pragma unroll
      for (int j = 0; j < 4; j++) s += acc[c][j];
    uint32_t bits;
    memcpy(&bits, &s, 4);
    out[blockIdx.x * blockDim.x + threadIdx.x] = bits;
  }
  if (blockIdx.x == 0 && threadIdx.x == 0) cycles[0] = t1 - t0;
}

// ---------------------------------------------------------------------------
// wgmma (sm_90a), A and B both from shared memory (SS)
// ---------------------------------------------------------------------------
#define WG_D64 "{" \
  "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
  "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
  "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63" \
  "}"
// The accumulator operands, in C (a constraint, "+f" or "+r") and tied to d[0..n].
#define WG_OPS8(C, d, i) \
  C(d[i]), C(d[i + 1]), C(d[i + 2]), C(d[i + 3]), C(d[i + 4]), C(d[i + 5]), C(d[i + 6]), C(d[i + 7])
#define WG_OPS64(C, d) \
  WG_OPS8(C, d, 0), WG_OPS8(C, d, 8), WG_OPS8(C, d, 16), WG_OPS8(C, d, 24), \
  WG_OPS8(C, d, 32), WG_OPS8(C, d, 40), WG_OPS8(C, d, 48), WG_OPS8(C, d, 56)
#define WG_OPS64_F(d) WG_OPS64("+f", d)
#define WG_OPS64_R(d) WG_OPS64("+r", d)
#define WG_OPS128_F(d) WG_OPS64("+f", d), WG_OPS64("+f", (d + 64))
#define WG_OPS128_R(d) WG_OPS64("+r", d), WG_OPS64("+r", (d + 64))
#define WG_D128 "{" \
  "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
  "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
  "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, " \
  "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, " \
  "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, " \
  "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, " \
  "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127" \
  "}"


template <int OP, int N> struct Wgmma;

// scale-d = 1 (accumulate); imm-scale-a = imm-scale-b = 1; no transpose (K-major).
#define WG_PRED_BEGIN "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
#define WG_PRED_END "}\n"

// One specialization per (operand type, N): the instruction text must be a literal in the asm.
#define WGMMA_SPEC(OP, N, KSTEP, ACC, INSTR, DREGS, ARGS, OPERANDS)                   \
  template <> struct Wgmma<OP, N> {                                                    \
    typedef ACC acc_t;                                                                 \
    static constexpr int K = KSTEP;                                                    \
    static constexpr const char* name = INSTR;                                         \
    static __device__ __forceinline__ void run(ACC* d, uint64_t da, uint64_t db) {     \
      asm volatile(WG_PRED_BEGIN INSTR " " DREGS ARGS WG_PRED_END : OPERANDS(d) : "l"(da), "l"(db)); \
    }                                                                                  \
  };

// bf16 transposes neither operand (K-major); e4m3 and s8 have no transpose arguments, s8 no
// scale arguments either.
WGMMA_SPEC(BF16, 128, 16, float, "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16", WG_D64, ", %64, %65, p, 1, 1, 0, 0;\n", WG_OPS64_F)
WGMMA_SPEC(BF16, 256, 16, float, "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16", WG_D128, ", %128, %129, p, 1, 1, 0, 0;\n", WG_OPS128_F)
WGMMA_SPEC(E4M3, 128, 32, float, "wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3", WG_D64, ", %64, %65, p, 1, 1;\n", WG_OPS64_F)
WGMMA_SPEC(E4M3, 256, 32, float, "wgmma.mma_async.sync.aligned.m64n256k32.f32.e4m3.e4m3", WG_D128, ", %128, %129, p, 1, 1;\n", WG_OPS128_F)
WGMMA_SPEC(S8, 128, 32, int, "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8", WG_D64, ", %64, %65, p;\n", WG_OPS64_R)
WGMMA_SPEC(S8, 256, 32, int, "wgmma.mma_async.sync.aligned.m64n256k32.s32.s8.s8", WG_D128, ", %128, %129, p;\n", WG_OPS128_R)

// Shared-memory matrix descriptor, K-major, 128-byte swizzle: rows of 128 B,
// 8-row groups 1024 B apart (SBO = 1024), LBO unused for swizzled K-major
// (set to 1), base 1024-B aligned so the base-offset field is 0.
__device__ __forceinline__ uint64_t smem_desc(uint32_t saddr) {
  uint64_t d = 0;
  d |= (uint64_t)((saddr & 0x3FFFF) >> 4);
  d |= (uint64_t)1 << 16;               // LBO (encoded, 16 B)
  d |= (uint64_t)(1024 >> 4) << 32;     // SBO = 1024 B
  d |= (uint64_t)1 << 62;               // swizzle: 128B
  return d;
}

static const int WG_THREADS = 256;  // two warpgroups per CTA, both on the same tiles
static const int WG_KSTEPS = 4;     // wgmmas per commit group: 4 x 32 B = one 128-B row

template <int N> struct WgSmem {
  // A: 64 rows x 128 B; B: N rows x 128 B; plus 1 KiB to align the base.
  static constexpr int bytes = (64 + N) * 128;
  static constexpr int alloc = bytes + 1024;
};

template <int OP, int N>
__global__ void __launch_bounds__(WG_THREADS, 1)
wgmma_kernel(const uint4* __restrict__ in, uint32_t* __restrict__ out, long long iters, int flag,
             long long* __restrict__ cycles) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  typedef Wgmma<OP, N> I;
  typedef typename I::acc_t acc_t;
  extern __shared__ __align__(1024) uint8_t smem_raw[];
  uint32_t raw = (uint32_t)__cvta_generic_to_shared(smem_raw);
  uint32_t base = (raw + 1023u) & ~1023u;
  uint8_t* p = smem_raw + (base - raw);
  for (int i = threadIdx.x; i < WgSmem<N>::bytes / 16; i += blockDim.x)
    reinterpret_cast<uint4*>(p)[i] = in[i];
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
  __syncthreads();

  const uint64_t da = smem_desc(base);
  const uint64_t db = smem_desc(base + 64 * 128);
  acc_t d[N / 2];
#pragma unroll
  for (int i = 0; i < N / 2; i++) d[i] = 0;

  long long t0 = clock64();
  for (long long it = 0; it < iters; it++) {
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
    for (int k = 0; k < WG_KSTEPS; k++)
      I::run(d, da + 2 * k, db + 2 * k);  // +32 B along K within the 128-B row
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
    asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
  }
  asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
  long long t1 = clock64();

  if (flag) {
    acc_t s = 0;
#pragma unroll
    for (int i = 0; i < N / 2; i++) s += d[i];
    uint32_t bits;
    memcpy(&bits, &s, 4);
    out[blockIdx.x * blockDim.x + threadIdx.x] = bits;
  }
  if (blockIdx.x == 0 && threadIdx.x == 0) cycles[0] = t1 - t0;
#else
  // nvcc -arch=sm_90a also embeds compute_90 PTX, where wgmma does not exist.
  // The sm_90a SASS is what runs on an H100; trap if this fallback ever does.
  __trap();
#endif
}

// ---------------------------------------------------------------------------
// Host
// ---------------------------------------------------------------------------
static uint32_t rng_state = 0x12345678u;
static uint32_t rnd() {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 17;
  rng_state ^= rng_state << 5;
  return rng_state;
}

// Random operand bytes of the given kind (values matter for power, so no
// zeros-only data; fp8 avoids NaN encodings; bf16 stays in [-1, 1]).
static std::vector<uint8_t> make_operands(int op, size_t bytes) {
  std::vector<uint8_t> v(bytes);
  if (op == BF16) {
    for (size_t i = 0; i + 1 < bytes; i += 2) {
      float f = ((rnd() & 0xFFFF) / 32768.0f) - 1.0f;
      uint32_t u;
      memcpy(&u, &f, 4);
      uint16_t h = (uint16_t)(u >> 16);
      v[i] = h & 0xFF;
      v[i + 1] = h >> 8;
    }
  } else if (op == E4M3) {
    for (size_t i = 0; i < bytes; i++) {
      uint32_t r = rnd();
      uint32_t sign = r & 1, exp = 5 + (r >> 1) % 5, man = (r >> 4) & 7;  // 2^-2 .. 2^2
      v[i] = (uint8_t)((sign << 7) | (exp << 3) | man);
    }
  } else {  // s8 bytes or packed s4 nibbles: any pattern is valid
    for (size_t i = 0; i < bytes; i++) v[i] = (uint8_t)rnd();
  }
  return v;
}

struct Meas {
  std::string api, instr, dtype, shape, operands;
  int blocks_per_sm, blocks, threads;
  long long iters;
  double ms_median, ms_min, tops, sm_mhz, ops_per_clk_sm, peak_ops_per_clk_sm;
};

static int g_sms = 0;
static std::vector<Meas> g_all;
static uint32_t* g_out = nullptr;
static long long* g_cycles = nullptr;

static const char* op_dtype(int op) {
  return op == BF16 ? "bf16" : op == S8 ? "s8" : op == S4 ? "s4" : "e4m3";
}
// Nominal Hopper dense tensor-core rate per SM per clock (H100 SXM: 989 TFLOP/s bf16,
// 1979 TFLOP/s fp8 and TOPS int8 at 1830 MHz x 132 SMs). Hopper has no int4 rate;
// s4 is compared with the int8 rate.
static double op_peak(int op) { return op == BF16 ? 4096.0 : 8192.0; }

// Times launch(iters): warm-up, scale iters so one launch lasts ~TARGET_MS, then RUNS
// timed launches. Returns median ms, min ms, iters, cycles of block 0 in the median run.
template <class F>
static void time_it(F launch, long long& iters, double& med, double& mn, long long& cyc) {
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  float ms = 0;
  // warm-up + calibration
  for (int pass = 0; pass < 4; pass++) {
    CK(cudaEventRecord(e0));
    launch(iters);
    CK(cudaEventRecord(e1));
    CK(cudaEventSynchronize(e1));
    CK(cudaGetLastError());
    CK(cudaEventElapsedTime(&ms, e0, e1));
    if (ms < TARGET_MS * 0.7 || ms > TARGET_MS * 1.5) {
      double scale = TARGET_MS / std::max((double)ms, 1e-3);
      scale = std::min(scale, 64.0);
      iters = std::max(1LL, (long long)(iters * scale));
    } else if (pass >= 1) {
      break;
    }
  }
  // one more warm-up at the final size
  launch(iters);
  CK(cudaDeviceSynchronize());
  std::vector<std::pair<float, long long>> t;
  for (int r = 0; r < RUNS; r++) {
    CK(cudaEventRecord(e0));
    launch(iters);
    CK(cudaEventRecord(e1));
    CK(cudaEventSynchronize(e1));
    CK(cudaGetLastError());
    CK(cudaEventElapsedTime(&ms, e0, e1));
    long long c = 0;
    CK(cudaMemcpy(&c, g_cycles, sizeof(c), cudaMemcpyDeviceToHost));
    t.push_back({ms, c});
  }
  std::sort(t.begin(), t.end());
  med = t[RUNS / 2].first;
  cyc = t[RUNS / 2].second;
  mn = t[0].first;
  CK(cudaEventDestroy(e0));
  CK(cudaEventDestroy(e1));
}

static void report(const Meas& m) {
  printf("{\"type\":\"measurement\",\"api\":\"%s\",\"instr\":\"%s\",\"dtype\":\"%s\",\"shape\":\"%s\","
         "\"operands\":\"%s\",\"tops\":%.1f,\"ms_median\":%.3f,\"ms_min\":%.3f,\"iters\":%lld,\"blocks_per_sm\":%d,"
         "\"blocks\":%d,\"threads\":%d,\"sm_mhz\":%.0f,\"ops_per_clk_sm\":%.0f,"
         "\"pct_of_nominal\":%.1f}\n",
         m.api.c_str(), m.instr.c_str(), m.dtype.c_str(), m.shape.c_str(), m.operands.c_str(), m.tops, m.ms_median,
         m.ms_min, m.iters, m.blocks_per_sm, m.blocks, m.threads, m.sm_mhz, m.ops_per_clk_sm,
         100.0 * m.ops_per_clk_sm / m.peak_ops_per_clk_sm);
  fflush(stdout);
  g_all.push_back(m);
}

// One measurement from a timed run: `ops` operations in `med` ms over `cyc` SM cycles.
static void report_timing(const char* api, const char* operands, const char* instr, int op, const char* shape,
                          int bps, int blocks, int threads, long long iters, double med, double mn,
                          long long cyc, double ops) {
  Meas m;
  m.api = api;
  m.operands = operands;
  m.instr = instr;
  m.dtype = op_dtype(op);
  m.shape = shape;
  m.blocks_per_sm = bps;
  m.blocks = blocks;
  m.threads = threads;
  m.iters = iters;
  m.ms_median = med;
  m.ms_min = mn;
  m.tops = ops / (med * 1e-3) / 1e12;
  m.sm_mhz = cyc / (med * 1e3);
  m.ops_per_clk_sm = ops / ((double)cyc * g_sms);
  m.peak_ops_per_clk_sm = op_peak(op);
  report(m);
}

template <int OP, bool FRESH>
static void bench_mma_sync(const uint32_t* d_in) {
  typedef MmaSync<OP> I;
  int maxb = 0;
  CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&maxb, mma_sync_kernel<OP, FRESH>, MMA_THREADS, 0));
  const int bps_list[] = {1, 2, 4};  // 8, 16, 32 warps per SM
  for (int bps : bps_list) {
    if (bps > maxb) continue;
    int blocks = bps * g_sms;
    long long iters = 256;
    auto launch = [&](long long n) {
      mma_sync_kernel<OP, FRESH><<<blocks, MMA_THREADS>>>(d_in, g_out, n, 0, g_cycles);
    };
    double med, mn;
    long long cyc;
    time_it(launch, iters, med, mn, cyc);
    double ops = 2.0 * I::M * I::N * I::K * (double)CHAINS * (double)iters *
                 (double)blocks * (MMA_THREADS / 32);
    char shp[32];
    snprintf(shp, sizeof shp, "m%dn%dk%d", I::M, I::N, I::K);
    report_timing("mma.sync", FRESH ? "fresh" : "fixed", I::name, OP, shp, bps, blocks, MMA_THREADS, iters,
                  med, mn, cyc, ops);
  }
}

// Fixed operands (the issue rate) and fresh ones (as in a real Q.K^T loop).
template <int OP>
static void bench_mma_sync_both(const uint32_t* d_in) {
  bench_mma_sync<OP, false>(d_in);
  bench_mma_sync<OP, true>(d_in);
}

template <int OP, int N>
static void bench_wgmma() {
  typedef Wgmma<OP, N> I;
  std::vector<uint8_t> h = make_operands(OP, WgSmem<N>::bytes);
  uint4* d_in = nullptr;
  CK(cudaMalloc(&d_in, h.size()));
  CK(cudaMemcpy(d_in, h.data(), h.size(), cudaMemcpyHostToDevice));
  auto kern = wgmma_kernel<OP, N>;
  const int smem = WgSmem<N>::alloc;
  CK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  int maxb = 0;
  CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&maxb, kern, WG_THREADS, smem));
  // exercise the flag=1 store path once (and surface any fault before timing)
  kern<<<1, WG_THREADS, smem>>>(d_in, g_out, 4, 1, g_cycles);
  CK(cudaGetLastError());
  CK(cudaDeviceSynchronize());
  const int bps_list[] = {1, 2};  // 2 or 4 warpgroups per SM
  for (int bps : bps_list) {
    if (bps > maxb) continue;
    int blocks = bps * g_sms;
    long long iters = 64;
    auto launch = [&](long long n) {
      kern<<<blocks, WG_THREADS, smem>>>(d_in, g_out, n, 0, g_cycles);
    };
    double med, mn;
    long long cyc;
    time_it(launch, iters, med, mn, cyc);
    double ops = 2.0 * 64 * N * I::K * (double)WG_KSTEPS * (double)iters * (double)blocks *
                 (WG_THREADS / 128);
    char shp[32];
    snprintf(shp, sizeof shp, "m64n%dk%d", N, I::K);
    report_timing("wgmma", "smem", I::name, OP, shp, bps, blocks, WG_THREADS, iters, med, mn, cyc, ops);
  }
  CK(cudaFree(d_in));
}

// Runs the flag=1 path once per kernel so the stores are exercised (and any fault shows).
template <int OP>
static void check_mma_sync(const uint32_t* d_in) {
  mma_sync_kernel<OP, false><<<1, MMA_THREADS>>>(d_in, g_out, 4, 1, g_cycles);
  CK(cudaGetLastError());
  mma_sync_kernel<OP, true><<<1, MMA_THREADS>>>(d_in, g_out, 4, 1, g_cycles);
  CK(cudaGetLastError());
  CK(cudaDeviceSynchronize());
}

int main(int argc, char** argv) {
  // optional filter: run only measurements whose instr contains argv[1]
  const char* filter = argc > 1 ? argv[1] : "";
  int dev = 0;
  CK(cudaSetDevice(dev));
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, dev));
  g_sms = prop.multiProcessorCount;
  int clk_khz = 0, memclk_khz = 0, drv = 0, rt = 0;
  cudaDeviceGetAttribute(&clk_khz, cudaDevAttrClockRate, dev);
  cudaDeviceGetAttribute(&memclk_khz, cudaDevAttrMemoryClockRate, dev);
  cudaDriverGetVersion(&drv);
  cudaRuntimeGetVersion(&rt);
  printf("{\"type\":\"device\",\"name\":\"%s\",\"cc\":\"%d.%d\",\"sms\":%d,\"max_sm_clock_mhz\":%d,"
         "\"mem_clock_mhz\":%d,\"driver\":%d,\"runtime\":%d,\"runs\":%d,\"target_ms\":%.0f,"
         "\"mma_sync_chains_per_warp\":%d,\"mma_sync_threads\":%d,\"wgmma_threads\":%d,"
         "\"wgmma_per_commit\":%d}\n",
         prop.name, prop.major, prop.minor, g_sms, clk_khz / 1000, memclk_khz / 1000, drv, rt, RUNS,
         TARGET_MS, CHAINS, MMA_THREADS, WG_THREADS, WG_KSTEPS);
  fflush(stdout);
  if (prop.major != 9) {
    printf("{\"type\":\"error\",\"error\":\"needs an sm_90 (Hopper) device\"}\n");
    return 1;
  }

  CK(cudaMalloc(&g_out, (size_t)g_sms * 8 * 1024 * sizeof(uint32_t)));
  CK(cudaMalloc(&g_cycles, sizeof(long long)));

  const size_t mma_in_words = 32 * (4 + 2 * CHAINS);
  uint32_t* d_mma_in[4];
  for (int op = 0; op < 4; op++) {
    std::vector<uint8_t> h = make_operands(op, mma_in_words * 4);
    CK(cudaMalloc(&d_mma_in[op], h.size()));
    CK(cudaMemcpy(d_mma_in[op], h.data(), h.size(), cudaMemcpyHostToDevice));
  }
  check_mma_sync<BF16>(d_mma_in[BF16]);
  check_mma_sync<S8>(d_mma_in[S8]);
  check_mma_sync<S4>(d_mma_in[S4]);
  check_mma_sync<E4M3>(d_mma_in[E4M3]);

  auto want = [&](const char* name) { return strstr(name, filter) != nullptr; };
  if (want(MmaSync<BF16>::name)) bench_mma_sync_both<BF16>(d_mma_in[BF16]);
  if (want(MmaSync<S8>::name)) bench_mma_sync_both<S8>(d_mma_in[S8]);
  if (want(MmaSync<S4>::name)) bench_mma_sync_both<S4>(d_mma_in[S4]);
  if (want(MmaSync<E4M3>::name)) bench_mma_sync_both<E4M3>(d_mma_in[E4M3]);
  if (want(Wgmma<BF16, 128>::name)) bench_wgmma<BF16, 128>();
  if (want(Wgmma<BF16, 256>::name)) bench_wgmma<BF16, 256>();
  if (want(Wgmma<E4M3, 128>::name)) bench_wgmma<E4M3, 128>();
  if (want(Wgmma<E4M3, 256>::name)) bench_wgmma<E4M3, 256>();
  if (want(Wgmma<S8, 128>::name)) bench_wgmma<S8, 128>();
  if (want(Wgmma<S8, 256>::name)) bench_wgmma<S8, 256>();

  // Summary: best launch configuration per (instruction, operands), and the
  // ratios issue 7 asks about (mma.sync ratios use fresh operands, the case of
  // a real estimation loop; wgmma reads its operands from shared memory).
  std::vector<Meas> best;
  for (const Meas& m : g_all) {
    bool found = false;
    for (Meas& b : best)
      if (b.instr == m.instr && b.operands == m.operands) {
        found = true;
        if (m.tops > b.tops) b = m;
      }
    if (!found) best.push_back(m);
  }
  auto tops_of = [&](const char* api, const char* dt, const char* operands) {
    double t = 0;
    for (const Meas& b : best)
      if (b.api == api && b.dtype == dt && b.operands == operands) t = std::max(t, b.tops);
    return t;
  };
  printf("{\"type\":\"summary\",\"device\":\"%s\",\"sms\":%d,\"best\":[", prop.name, g_sms);
  for (size_t i = 0; i < best.size(); i++)
    printf("%s{\"api\":\"%s\",\"dtype\":\"%s\",\"shape\":\"%s\",\"operands\":\"%s\","
           "\"tops\":%.1f,\"sm_mhz\":%.0f,\"ops_per_clk_sm\":%.0f,\"pct_of_nominal\":%.1f,"
           "\"blocks_per_sm\":%d}",
           i ? "," : "", best[i].api.c_str(), best[i].dtype.c_str(), best[i].shape.c_str(),
           best[i].operands.c_str(), best[i].tops, best[i].sm_mhz, best[i].ops_per_clk_sm,
           100.0 * best[i].ops_per_clk_sm / best[i].peak_ops_per_clk_sm, best[i].blocks_per_sm);
  const double ms_bf16 = tops_of("mma.sync", "bf16", "fresh"), ms_s8 = tops_of("mma.sync", "s8", "fresh"),
               ms_s4 = tops_of("mma.sync", "s4", "fresh"), ms_e4 = tops_of("mma.sync", "e4m3", "fresh"),
               wg_bf16 = tops_of("wgmma", "bf16", "smem"), wg_e4 = tops_of("wgmma", "e4m3", "smem"),
               wg_s8 = tops_of("wgmma", "s8", "smem");
  auto ratio = [](double a, double b) { return b > 0 ? a / b : 0.0; };
  printf("],\"ratios\":{\"mma_s4_over_mma_s8\":%.3f,\"mma_s4_over_mma_bf16\":%.3f,"
         "\"mma_s8_over_mma_bf16\":%.3f,\"mma_e4m3_over_mma_bf16\":%.3f,"
         "\"wgmma_bf16_over_mma_bf16\":%.3f,\"wgmma_e4m3_over_wgmma_bf16\":%.3f,"
         "\"wgmma_s8_over_wgmma_bf16\":%.3f,\"wgmma_e4m3_over_mma_s4\":%.3f,"
         "\"wgmma_s8_over_mma_s4\":%.3f,\"wgmma_s8_over_mma_s8\":%.3f}}\n",
         ratio(ms_s4, ms_s8), ratio(ms_s4, ms_bf16), ratio(ms_s8, ms_bf16), ratio(ms_e4, ms_bf16),
         ratio(wg_bf16, ms_bf16), ratio(wg_e4, wg_bf16), ratio(wg_s8, wg_bf16), ratio(wg_e4, ms_s4),
         ratio(wg_s8, ms_s4), ratio(wg_s8, ms_s8));
  fflush(stdout);
  // Human-readable table on stderr.
  fprintf(stderr, "\n%-58s %-6s %9s %7s %10s %6s\n", "instruction (best launch config)", "ops",
          "TOPS", "MHz", "ops/clk/SM", "%nom");
  for (const Meas& b : best)
    fprintf(stderr, "%-58s %-6s %9.1f %7.0f %10.0f %6.1f\n", b.instr.c_str(), b.operands.c_str(),
            b.tops, b.sm_mhz, b.ops_per_clk_sm, 100.0 * b.ops_per_clk_sm / b.peak_ops_per_clk_sm);
  for (int op = 0; op < 4; op++) CK(cudaFree(d_mma_in[op]));
  CK(cudaFree(g_out));
  CK(cudaFree(g_cycles));
  return 0;
}
