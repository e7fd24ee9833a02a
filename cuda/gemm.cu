// SGEMM in the row-major (numpy) convention, a family of versions that keep their numbers:
//
//   C[m, n] = relu?(alpha * op(A)[m, k] @ op(B)[k, n] + beta * C[m, n] + bias)
//
// op(A) = A (stored m x k, A[i * lda + p]) or A^T (transa: stored k x m, A[p * lda + i]);
// op(B) = B (stored k x n, B[p * ldb + j]) or B^T (transb: stored n x k, B[j * ldb + p]);
// C[i * ldc + j]. beta == 0 writes C without reading it (it may hold NaN), as BLAS does.
// gridDim.z runs a batch of independent products, the z-th at A + z * stride_a (and so on for B
// and C): Convolution's per-image products in one launch. A stride of 0 reuses one matrix.
//
// The fused epilogue (every version, through gemm_store): bias_mode 0 adds nothing, 1 adds
// bias[i] to row i (a convolution's output channels), 2 adds bias[j] to column j (an
// InnerProduct's outputs); the same bias serves every product of a batch. relu != 0 then clamps
// negative values to 0 (NaN stays NaN, as in the ReLU layer: a diverging net still shows it).
//
//   sgemm_v1: shared-memory tiles, one output per thread. The baseline.
//   sgemm_v2: 64x64 block tiles, 4x4 outputs per thread held in registers, float4 loads.
//   sgemm_v3: TF32 tensor cores through WMMA (m16n16k8), float accumulation.
//   sgemm_v4: 128x128 block tiles, 8x8 outputs per thread, double-buffered shared memory.
//   sgemm_v5: 32x64 block tiles, 4x4 per thread, double-buffered: skinny products.
//
// Launch geometry (confnet/gpu/blas.py): grid (ceil(n / TILE_N), ceil(m / TILE_M), batch), the
// block size each version states. Every version handles any m, n, k >= 1, any ld >= the row
// length, both transposes, and pointers of any 4-byte alignment (float4 loads only where the
// caller says the layout allows them: `vec`).
#include "common.cuh"

// -- the epilogue, shared by the store phase of every version -----------------------------------
struct GemmEpilogue {
  float alpha, beta;
  const float* bias;  // length m (bias_mode 1) or n (bias_mode 2); unused when bias_mode is 0
  int bias_mode;      // 0 none, 1 per row, 2 per column
  int relu;
};

// Writes one output C[r, c] = relu?(alpha * acc + beta * C[r, c] + bias). C is read only when
// beta != 0, so a NaN-filled output with beta == 0 stays clean.
__device__ __forceinline__ void gemm_store(float* C, int ldc, int r, int c, float acc,
                                           const GemmEpilogue& ep) {
  float* out = C + (size_t)r * ldc + c;
  float v = ep.alpha * acc;
  if (ep.beta != 0.0f) v += ep.beta * *out;
  if (ep.bias_mode == 1) v += ep.bias[r];
  else if (ep.bias_mode == 2) v += ep.bias[c];
  if (ep.relu && v < 0.0f) v = 0.0f;
  *out = v;
}

// A batched product (grid z > 1) multiplies the z-th matrices of A, B and C, `stride_*` floats
// apart: every kernel's first step.
__device__ __forceinline__ void batch_item(const float*& A, int stride_a, const float*& B,
                                           int stride_b, float*& C, int stride_c) {
  A += (size_t)blockIdx.z * stride_a;
  B += (size_t)blockIdx.z * stride_b;
  C += (size_t)blockIdx.z * stride_c;
}

// -- v1: shared-memory tiles ------------------------------------------------------------------
// 16x16 threads, each computing one element of a 16x16 tile of C. Per step of 16 along k, the
// block stages a 16x16 tile of op(A) and of op(B) in shared memory, so each global value is
// read once per block instead of 16 times. 16 (not 32) keeps 256 threads a block and more blocks
// for the small products of LeNet-sized layers.
#define V1_TILE 16

extern "C" __global__ void sgemm_v1(int transa, int transb, int m, int n, int k, float alpha,
                                    const float* A, int lda, int stride_a, const float* B, int ldb,
                                    int stride_b, float beta, float* C, int ldc, int stride_c,
                                    const float* bias, int bias_mode, int relu) {
  // +1 column: a transposed store walks a column, and 17 floats per row put the 16 values of a
  // column in 16 different banks.
  __shared__ float As[V1_TILE][V1_TILE + 1];  // As[i][p] = op(A)[row0 + i, p0 + p]
  __shared__ float Bs[V1_TILE][V1_TILE + 1];  // Bs[p][j] = op(B)[p0 + p, col0 + j]
  batch_item(A, stride_a, B, stride_b, C, stride_c);
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int row0 = blockIdx.y * V1_TILE, col0 = blockIdx.x * V1_TILE;
  float acc = 0.0f;
  for (int p0 = 0; p0 < k; p0 += V1_TILE) {
    // Consecutive tx read consecutive addresses in either storage order (coalesced): for a
    // transposed operand the thread roles swap and the value lands transposed in the tile.
    if (!transa) {
      const int i = row0 + ty, p = p0 + tx;
      As[ty][tx] = (i < m && p < k) ? A[(size_t)i * lda + p] : 0.0f;
    } else {
      const int i = row0 + tx, p = p0 + ty;
      As[tx][ty] = (i < m && p < k) ? A[(size_t)p * lda + i] : 0.0f;
    }
    if (!transb) {
      const int p = p0 + ty, j = col0 + tx;
      Bs[ty][tx] = (p < k && j < n) ? B[(size_t)p * ldb + j] : 0.0f;
    } else {
      const int p = p0 + tx, j = col0 + ty;
      Bs[tx][ty] = (p < k && j < n) ? B[(size_t)j * ldb + p] : 0.0f;
    }
    __syncthreads();  // both tiles complete before anyone multiplies
#pragma unroll
    for (int p = 0; p < V1_TILE; ++p) acc += As[ty][p] * Bs[p][tx];
    __syncthreads();  // everyone done reading before the next step overwrites the tiles
  }
  const int i = row0 + ty, j = col0 + tx;
  if (i < m && j < n) gemm_store(C, ldc, i, j, acc, {alpha, beta, bias, bias_mode, relu});
}

// -- moving a tile of op(X) into shared memory (v2..v5) ---------------------------------------
// A tile is the R x S block of op(X) at (r0, s0) (op(X): rows x cols, X stored untransposed as
// X[r * ld + s] or, with `trans`, as X[s * ld + r]), copied into shared memory as dst[r * dld + s],
// or dst[s * dld + r] with `dst_transposed`. Cells outside op(X) become 0, so the multiply loops
// need no bounds checks. The NT threads of the block (linear id `tid`) walk the tile in groups
// of 4 values that are consecutive in memory, group tid + q * NT being thread tid's q-th; a group
// is one float4 load when `vec` (the caller checked that X and ld keep every group 16-byte
// aligned) and the group lies inside the matrix, else 4 guarded scalar loads (matrix edges, odd
// ld, offset pointers). The copy is two halves, load_tile (global -> registers) and store_tile
// (registers -> shared), so that double-buffered versions can issue the global loads of the next
// tile before computing on the current one.
template <int R, int S, int NT>
struct TileCopy {
  static_assert(R % 4 == 0 && S % 4 == 0, "groups of 4 along either storage order");
  static_assert((R * S / 4) % NT == 0, "every thread moves the same number of groups");
  static constexpr int kGroups = R * S / 4 / NT;  // groups per thread

  // Memory order: `inner` indexes the values contiguous in memory (s, or r when transposed).
  static __device__ __forceinline__ void origin(int trans, int q, int tid, int& outer,
                                                int& inner) {
    const int per_outer = (trans ? R : S) / 4;
    const int g = tid + q * NT;
    outer = g / per_outer;
    inner = (g % per_outer) * 4;
  }

  static __device__ __forceinline__ void load(const float* X, int ld, int trans, int vec,
                                              int rows, int cols, int r0, int s0, int tid,
                                              float (&v)[kGroups][4]) {
    const int outer_limit = trans ? cols : rows, inner_limit = trans ? rows : cols;
    const int outer0 = trans ? s0 : r0, inner0 = trans ? r0 : s0;
#pragma unroll
    for (int q = 0; q < kGroups; ++q) {
      int outer, inner;
      origin(trans, q, tid, outer, inner);
      const int go = outer0 + outer, gi = inner0 + inner;
      if (go < outer_limit && vec && gi + 3 < inner_limit) {
        const float4 w = *reinterpret_cast<const float4*>(X + (size_t)go * ld + gi);
        v[q][0] = w.x; v[q][1] = w.y; v[q][2] = w.z; v[q][3] = w.w;
      } else {
#pragma unroll
        for (int e = 0; e < 4; ++e)
          v[q][e] = (go < outer_limit && gi + e < inner_limit) ? X[(size_t)go * ld + gi + e] : 0.0f;
      }
    }
  }

  static __device__ __forceinline__ void store(const float (&v)[kGroups][4], int trans,
                                               float* dst, int dld, bool dst_transposed,
                                               int tid) {
#pragma unroll
    for (int q = 0; q < kGroups; ++q) {
      int outer, inner;
      origin(trans, q, tid, outer, inner);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = trans ? inner + e : outer, s = trans ? outer : inner + e;
        dst[dst_transposed ? s * dld + r : r * dld + s] = v[q][e];
      }
    }
  }
};

// Both halves at once, for the single-buffered versions (v2, v3).
template <int R, int S, int NT>
__device__ __forceinline__ void stage_tile(const float* X, int ld, int trans, int vec, int rows,
                                           int cols, int r0, int s0, float* dst, int dld,
                                           bool dst_transposed, int tid) {
  float v[TileCopy<R, S, NT>::kGroups][4];
  TileCopy<R, S, NT>::load(X, ld, trans, vec, rows, cols, r0, s0, tid, v);
  TileCopy<R, S, NT>::store(v, trans, dst, dld, dst_transposed, tid);
}

// -- v2: register blocking ----------------------------------------------------------------------
// A 64x64 tile of C per block of 256 threads (16x16), each thread computing a 4x4 sub-tile in
// registers: per step of 16 along k, a thread reads 4 values of op(A) and 4 of op(B) from shared
// memory and does 16 multiply-adds with them (v1 does 1 per 2 shared reads). 64x64x16 tiles
// cost 2 x 64 x 16 floats of staging = 8.5 KiB shared with the padding, ~40 registers a thread,
// so several blocks fit per SM. Staging loads one float4 per thread per operand.
#define V2_BM 64
#define V2_BN 64
#define V2_BK 16
#define V2_TM 4
#define V2_TN 4
#define V2_THREADS 256
// Row padding of the staged tiles: +4 keeps every row 16-byte aligned (float4 reads in the
// multiply loop) while shifting banks for the transposed stores of op(A).
#define V2_PAD 4

extern "C" __global__ void sgemm_v2(int transa, int transb, int m, int n, int k, float alpha,
                                    const float* A, int lda, int stride_a, const float* B, int ldb,
                                    int stride_b, float beta, float* C, int ldc, int stride_c,
                                    int vec_a, int vec_b, const float* bias, int bias_mode,
                                    int relu) {
  // As is op(A)'s tile stored k-major (As[p][i]) so that a thread's 4 rows are one float4.
  __shared__ alignas(16) float As[V2_BK][V2_BM + V2_PAD];
  __shared__ alignas(16) float Bs[V2_BK][V2_BN + V2_PAD];
  batch_item(A, stride_a, B, stride_b, C, stride_c);
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int row0 = blockIdx.y * V2_BM, col0 = blockIdx.x * V2_BN;
  float acc[V2_TM][V2_TN] = {};
  for (int p0 = 0; p0 < k; p0 += V2_BK) {
    stage_tile<V2_BM, V2_BK, V2_THREADS>(A, lda, transa, vec_a, m, k, row0, p0, &As[0][0],
                                         V2_BM + V2_PAD, true, threadIdx.x);
    stage_tile<V2_BK, V2_BN, V2_THREADS>(B, ldb, transb, vec_b, k, n, p0, col0, &Bs[0][0],
                                         V2_BN + V2_PAD, false, threadIdx.x);
    __syncthreads();  // both tiles complete before anyone multiplies
    multiply_4x4<V2_BK, V2_BM + V2_PAD, V2_BN + V2_PAD>(As, Bs, acc, tx, ty);
    __syncthreads();  // everyone done reading before the next step overwrites the tiles
  }
  const GemmEpilogue ep{alpha, beta, bias, bias_mode, relu};
#pragma unroll
  for (int i = 0; i < V2_TM; ++i) {
    const int r = row0 + ty * V2_TM + i;
    if (r >= m) break;
#pragma unroll
    for (int j = 0; j < V2_TN; ++j) {
      const int c = col0 + tx * V2_TN + j;
      if (c < n) gemm_store(C, ldc, r, c, acc[i][j], ep);
    }
  }
}

// -- v3: TF32 tensor cores (WMMA) ---------------------------------------------------------------
// A 64x64 tile of C per block of 4 warps (128 threads) in a 2x2 arrangement, each warp owning a
// 32x32 quarter as 2x2 accumulator fragments of 16x16 (float). Per step of 16 along k (two
// m16n16k8 steps) the block stages op(A) row-major (As[i][p]) and op(B) row-major (Bs[p][j]),
// as the row_major fragments load them. Inputs are rounded to TF32 (10-bit mantissa) in the
// fragments, products are exact and accumulate in float32: the result differs from float32
// SGEMM by about k * 2^-11 relative, which is why it sits behind blas.set_tf32.
// WMMA needs sm_80+ for TF32, ldm a multiple of 4 floats and fragment pointers 32-byte aligned:
// the paddings below keep both. The code never assumes which lane holds which fragment element
// (elementwise conversion only), so it runs on the emulator's WMMA as on a GPU.
#include <mma.h>

#define V3_BM 64
#define V3_BN 64
#define V3_BK 16
#define V3_THREADS 128
#define V3_PAD 8  // rows of 24 / 72 floats: multiples of 8 floats keep fragments 32-byte aligned

extern "C" __global__ void sgemm_v3(int transa, int transb, int m, int n, int k, float alpha,
                                    const float* A, int lda, int stride_a, const float* B, int ldb,
                                    int stride_b, float beta, float* C, int ldc, int stride_c,
                                    int vec_a, int vec_b, const float* bias, int bias_mode,
                                    int relu) {
  using namespace nvcuda;
  __shared__ alignas(32) float As[V3_BM][V3_BK + V3_PAD];
  __shared__ alignas(32) float Bs[V3_BK][V3_BN + V3_PAD];
  // Each warp's 16x16 staging area for writing its accumulators out with bounds checks.
  __shared__ alignas(32) float Cs[V3_THREADS / CONFNET_WARP_SIZE][16 * 16];
  batch_item(A, stride_a, B, stride_b, C, stride_c);
  const int warp = threadIdx.x / CONFNET_WARP_SIZE, lane = threadIdx.x % CONFNET_WARP_SIZE;
  const int wy = warp / 2, wx = warp % 2;  // this warp's 32x32 quarter of the block tile
  const int row0 = blockIdx.y * V3_BM, col0 = blockIdx.x * V3_BN;

  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

  for (int p0 = 0; p0 < k; p0 += V3_BK) {
    stage_tile<V3_BM, V3_BK, V3_THREADS>(A, lda, transa, vec_a, m, k, row0, p0, &As[0][0],
                                         V3_BK + V3_PAD, false, threadIdx.x);
    stage_tile<V3_BK, V3_BN, V3_THREADS>(B, ldb, transb, vec_b, k, n, p0, col0, &Bs[0][0],
                                         V3_BN + V3_PAD, false, threadIdx.x);
    __syncthreads();  // both tiles complete before any warp loads fragments
#pragma unroll
    for (int kk = 0; kk < V3_BK; kk += 8) {
      wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> a[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> b[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        wmma::load_matrix_sync(a[i], &As[wy * 32 + i * 16][kk], V3_BK + V3_PAD);
        for (int t = 0; t < a[i].num_elements; ++t) a[i].x[t] = wmma::__float_to_tf32(a[i].x[t]);
      }
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        wmma::load_matrix_sync(b[j], &Bs[kk][wx * 32 + j * 16], V3_BN + V3_PAD);
        for (int t = 0; t < b[j].num_elements; ++t) b[j].x[t] = wmma::__float_to_tf32(b[j].x[t]);
      }
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
    }
    __syncthreads();  // every warp done reading before the next step overwrites the tiles
  }

  // Fragments hold elements in an unspecified lane order: store each one row-major into this
  // warp's staging area, then let lane l write rows of it to C with the edge checks.
  const GemmEpilogue ep{alpha, beta, bias, bias_mode, relu};
  float* cs = Cs[warp];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      wmma::store_matrix_sync(cs, acc[i][j], 16, wmma::mem_row_major);
      __syncwarp();  // the whole fragment is in cs before lanes read other lanes' elements
      for (int e = lane; e < 16 * 16; e += CONFNET_WARP_SIZE) {
        const int r = row0 + wy * 32 + i * 16 + e / 16, c = col0 + wx * 32 + j * 16 + e % 16;
        if (r < m && c < n) gemm_store(C, ldc, r, c, cs[e], ep);
      }
      __syncwarp();  // all lanes done reading cs before the next fragment is stored over it
    }
}

// -- v4 and v5: register blocking with double-buffered shared memory ----------------------------
// One body, two tile shapes. A block of NT threads computes a BM x BN tile of C; its threads form
// a (BM / TM) x (BN / TN) grid, each holding a TM x TN sub-tile in registers. A thread's rows are
// TM / 4 runs of 4 consecutive rows spaced BM / (TM / 4) apart (for v4: rows 4ty..4ty+3 and
// 64+4ty..64+4ty+3), its columns likewise: each run is one float4 read from shared memory, and
// the 16 threads of a half warp read 16 consecutive float4s of Bs (conflict-free) while the
// threads of a row share one float4 of As (a broadcast). Contiguous 8-wide runs would put
// neighbouring threads 32 bytes apart: two-way bank conflicts on every read.
//
// op(A) is staged transposed (As[p][i], k-major) so that a thread's rows are float4s too; op(B)
// as it is (Bs[p][j]). Rows are padded by 4 floats: still 16-byte aligned for the float4 reads,
// and a transposed store (4 values of one row of A going down a column of As) lands in 4
// different bank groups.
//
// Double buffering: two copies of As and Bs. While the block multiplies tile t out of buffer
// t % 2, each thread already holds tile t + 1's values in registers (issued from global memory
// before the multiply, so their latency hides behind it) and stores them into the other buffer
// afterwards. One __syncthreads per step of BK along k is enough: see the comments at the two
// barriers below.
template <int BM, int BN, int BK, int TM, int TN, int NT>
__device__ __forceinline__ void sgemm_pipelined(int transa, int transb, int m, int n, int k,
                                                const float* A, int lda, const float* B, int ldb,
                                                float* C, int ldc, int vec_a, int vec_b,
                                                const GemmEpilogue& ep) {
  static_assert((BM / TM) * (BN / TN) == NT, "one thread per TM x TN sub-tile");
  static_assert(TM % 4 == 0 && TN % 4 == 0, "sub-tiles are runs of float4s");
  constexpr int PAD = 4;
  constexpr int RUN_M = BM / (TM / 4), RUN_N = BN / (TN / 4);  // spacing of a thread's runs
  using CopyA = TileCopy<BM, BK, NT>;
  using CopyB = TileCopy<BK, BN, NT>;
  __shared__ alignas(16) float As[2][BK][BM + PAD];
  __shared__ alignas(16) float Bs[2][BK][BN + PAD];

  const int tid = threadIdx.x;
  const int tx = tid % (BN / TN), ty = tid / (BN / TN);
  const int row0 = blockIdx.y * BM, col0 = blockIdx.x * BN;
  const int tiles = (k + BK - 1) / BK;
  float ra[CopyA::kGroups][4], rb[CopyB::kGroups][4];  // the next tile, on its way
  float acc[TM][TN] = {};

  CopyA::load(A, lda, transa, vec_a, m, k, row0, 0, tid, ra);
  CopyB::load(B, ldb, transb, vec_b, k, n, 0, col0, tid, rb);
  CopyA::store(ra, transa, &As[0][0][0], BM + PAD, true, tid);
  CopyB::store(rb, transb, &Bs[0][0][0], BN + PAD, false, tid);
  __syncthreads();  // tile 0 complete in buffer 0 before anyone multiplies

  for (int t = 0; t < tiles; ++t) {
    const int cur = t & 1;
    const bool more = t + 1 < tiles;  // the same for every thread: the barrier below is uniform
    if (more) {
      CopyA::load(A, lda, transa, vec_a, m, k, row0, (t + 1) * BK, tid, ra);
      CopyB::load(B, ldb, transb, vec_b, k, n, (t + 1) * BK, col0, tid, rb);
    }
#pragma unroll
    for (int p = 0; p < BK; ++p) {
      float av[TM], bv[TN];
#pragma unroll
      for (int g = 0; g < TM / 4; ++g) {
        const float4 q = *reinterpret_cast<const float4*>(&As[cur][p][g * RUN_M + ty * 4]);
        av[g * 4] = q.x; av[g * 4 + 1] = q.y; av[g * 4 + 2] = q.z; av[g * 4 + 3] = q.w;
      }
#pragma unroll
      for (int g = 0; g < TN / 4; ++g) {
        const float4 q = *reinterpret_cast<const float4*>(&Bs[cur][p][g * RUN_N + tx * 4]);
        bv[g * 4] = q.x; bv[g * 4 + 1] = q.y; bv[g * 4 + 2] = q.z; bv[g * 4 + 3] = q.w;
      }
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] += av[i] * bv[j];
    }
    if (more) {
      // No barrier needed before these stores: buffer cur ^ 1 was last read while multiplying
      // tile t - 1, and every thread finished that before passing the barrier that ended step
      // t - 1. Threads still multiplying tile t read buffer cur, which nobody writes now.
      CopyA::store(ra, transa, &As[cur ^ 1][0][0], BM + PAD, true, tid);
      CopyB::store(rb, transb, &Bs[cur ^ 1][0][0], BN + PAD, false, tid);
      // Tile t + 1 complete in buffer cur ^ 1 before anyone multiplies it; and every thread
      // done reading buffer cur before step t + 1 stores tile t + 2 into it.
      __syncthreads();
    }
  }

#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int r = row0 + (i / 4) * RUN_M + ty * 4 + i % 4;
    if (r >= m) continue;
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int c = col0 + (j / 4) * RUN_N + tx * 4 + j % 4;
      if (c < n) gemm_store(C, ldc, r, c, acc[i][j], ep);
    }
  }
}

// v4: 128x128 tiles, 256 threads of 8x8 outputs, steps of 8 along k. Per step a thread reads
// 2 + 2 float4s from shared memory for 64 multiply-adds (v2: 2 for 16), and each operand tile is
// one float4 load per thread. Shared memory: 2 buffers x 2 operands x 8 x 132 floats = 16.5 KiB.
// The 64 accumulators plus the staged next tile take ~125 registers a thread (the report in
// cuda/resource_usage.txt); __launch_bounds__(256, 2) holds them to 128 so that two blocks fit an
// SM's 64K registers (sm_80 took 129 without it: one block, no overlap between blocks). 128x128
// tiles want products with many of them (blas.choose_gemm): a 4096-square product has 1024.
#define V4_THREADS 256
extern "C" __global__ void __launch_bounds__(V4_THREADS, 2)
    sgemm_v4(int transa, int transb, int m, int n, int k, float alpha, const float* A, int lda,
             int stride_a, const float* B, int ldb, int stride_b, float beta, float* C, int ldc,
             int stride_c, int vec_a, int vec_b, const float* bias, int bias_mode, int relu) {
  batch_item(A, stride_a, B, stride_b, C, stride_c);
  sgemm_pipelined<128, 128, 8, 8, 8, V4_THREADS>(transa, transb, m, n, k, A, lda, B, ldb, C, ldc,
                                                 vec_a, vec_b,
                                                 {alpha, beta, bias, bias_mode, relu});
}

// v5: 32x64 tiles, 128 threads of 4x4 outputs, steps of 16 along k: for skinny products. A
// convolution's product has as many rows as output channels (32..96 in CIFAR-10-quick and
// CaffeNet's conv1) and one column per output pixel of the batch: 32 rows waste nothing there
// (a 128-row tile would compute 75% zeros on a 32-channel layer), and 64 columns make twice as
// many blocks as 128 would, so InnerProduct's batch x outputs products (256 x 4096: 64 tiles of
// 128x128, half an H200) fill the GPU too. 16-deep steps halve the barriers of 8-deep ones; the
// tiles take 2 x (16 x 36 + 16 x 68) floats = 13 KiB.
#define V5_THREADS 128
extern "C" __global__ void __launch_bounds__(V5_THREADS)
    sgemm_v5(int transa, int transb, int m, int n, int k, float alpha, const float* A, int lda,
             int stride_a, const float* B, int ldb, int stride_b, float beta, float* C, int ldc,
             int stride_c, int vec_a, int vec_b, const float* bias, int bias_mode, int relu) {
  batch_item(A, stride_a, B, stride_b, C, stride_c);
  sgemm_pipelined<32, 64, 16, 4, 4, V5_THREADS>(transa, transb, m, n, k, A, lda, B, ldb, C, ldc,
                                                vec_a, vec_b,
                                                {alpha, beta, bias, bias_mode, relu});
}
