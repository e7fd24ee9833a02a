// SGEMM in the row-major (numpy) convention, a family of versions that keep their numbers:
//
//   C[m, n] = alpha * op(A)[m, k] @ op(B)[k, n] + beta * C[m, n]
//
// op(A) = A (stored m x k, A[i * lda + p]) or A^T (transa: stored k x m, A[p * lda + i]);
// op(B) = B (stored k x n, B[p * ldb + j]) or B^T (transb: stored n x k, B[j * ldb + p]);
// C[i * ldc + j]. beta == 0 writes C without reading it (it may hold NaN), as BLAS does.
// gridDim.z runs a batch of independent products, the z-th at A + z * stride_a (and so on for B
// and C): Convolution's per-image products in one launch. A stride of 0 reuses one matrix.
//
//   sgemm_v1: shared-memory tiles, one output per thread. The baseline.
//   sgemm_v2: 64x64 block tiles, 4x4 outputs per thread held in registers, float4 loads.
//   sgemm_v3: TF32 tensor cores through WMMA (m16n16k8), float accumulation.
//
// Launch geometry (confnet/gpu/blas.py): grid (ceil(n / TILE_N), ceil(m / TILE_M), batch), the
// block size each version states. Every version handles any m, n, k >= 1, any ld >= the row
// length, both transposes, and pointers of any 4-byte alignment (float4 loads only where the
// caller says the layout allows them: `vec`).
#include "common.cuh"

// -- v1: shared-memory tiles ------------------------------------------------------------------
// 16x16 threads, each computing one element of a 16x16 tile of C. Per step of 16 along k, the
// block stages a 16x16 tile of op(A) and of op(B) in shared memory, so each global value is
// read once per block instead of 16 times. 16 (not 32) keeps 256 threads a block and more blocks
// for the small products of LeNet-sized layers.
#define V1_TILE 16

extern "C" __global__ void sgemm_v1(int transa, int transb, int m, int n, int k, float alpha,
                                    const float* A, int lda, int stride_a, const float* B, int ldb,
                                    int stride_b, float beta, float* C, int ldc, int stride_c) {
  // +1 column: a transposed store walks a column, and 17 floats per row put the 16 values of a
  // column in 16 different banks.
  __shared__ float As[V1_TILE][V1_TILE + 1];  // As[i][p] = op(A)[row0 + i, p0 + p]
  __shared__ float Bs[V1_TILE][V1_TILE + 1];  // Bs[p][j] = op(B)[p0 + p, col0 + j]
  A += (size_t)blockIdx.z * stride_a;
  B += (size_t)blockIdx.z * stride_b;
  C += (size_t)blockIdx.z * stride_c;
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
  if (i < m && j < n) {
    float* c = C + (size_t)i * ldc + j;
    *c = beta == 0.0f ? alpha * acc : alpha * acc + beta * *c;
  }
}

// -- staging a tile of op(X) in shared memory (v2, v3) ----------------------------------------
// Copies the R x S block of op(X) at (r0, s0) (op(X): rows x cols, X stored untransposed as
// X[r * ld + s] or, with `trans`, as X[s * ld + r]) into shared memory: dst[r * dld + s], or
// dst[s * dld + r] with `dst_transposed`. Cells outside op(X) become 0, so the multiply loops
// need no bounds checks. The NT threads of the block (linear id `tid`) walk the block in groups
// of 4 values that are consecutive in memory; a group is one float4 load when `vec` (the caller
// checked that X and ld keep every group 16-byte aligned) and the group lies inside the matrix,
// else 4 guarded scalar loads (matrix edges, odd ld, offset pointers).
template <int R, int S, int NT>
__device__ __forceinline__ void stage_tile(const float* X, int ld, int trans, int vec, int rows,
                                           int cols, int r0, int s0, float* dst, int dld,
                                           bool dst_transposed, int tid) {
  static_assert((R * S / 4) % NT == 0, "every thread loads the same number of groups");
  // Memory order: `inner` is the index that is contiguous in memory (s, or r when transposed).
  const int inner_len = trans ? R : S;
  const int outer_limit = trans ? cols : rows, inner_limit = trans ? rows : cols;
  const int outer0 = trans ? s0 : r0, inner0 = trans ? r0 : s0;
#pragma unroll
  for (int g = tid; g < R * S / 4; g += NT) {
    const int outer = g / (inner_len / 4), inner = (g % (inner_len / 4)) * 4;
    const int go = outer0 + outer, gi = inner0 + inner;
    float v[4];
    if (go < outer_limit && vec && gi + 3 < inner_limit) {
      const float4 q = *reinterpret_cast<const float4*>(X + (size_t)go * ld + gi);
      v[0] = q.x; v[1] = q.y; v[2] = q.z; v[3] = q.w;
    } else {
#pragma unroll
      for (int e = 0; e < 4; ++e)
        v[e] = (go < outer_limit && gi + e < inner_limit) ? X[(size_t)go * ld + gi + e] : 0.0f;
    }
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int r = trans ? inner + e : outer, s = trans ? outer : inner + e;
      dst[dst_transposed ? s * dld + r : r * dld + s] = v[e];
    }
  }
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
                                    int vec_a, int vec_b) {
  // As is op(A)'s tile stored k-major (As[p][i]) so that a thread's 4 rows are one float4.
  __shared__ alignas(16) float As[V2_BK][V2_BM + V2_PAD];
  __shared__ alignas(16) float Bs[V2_BK][V2_BN + V2_PAD];
  A += (size_t)blockIdx.z * stride_a;
  B += (size_t)blockIdx.z * stride_b;
  C += (size_t)blockIdx.z * stride_c;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int row0 = blockIdx.y * V2_BM, col0 = blockIdx.x * V2_BN;
  float acc[V2_TM][V2_TN] = {};
  for (int p0 = 0; p0 < k; p0 += V2_BK) {
    stage_tile<V2_BM, V2_BK, V2_THREADS>(A, lda, transa, vec_a, m, k, row0, p0, &As[0][0],
                                         V2_BM + V2_PAD, true, threadIdx.x);
    stage_tile<V2_BK, V2_BN, V2_THREADS>(B, ldb, transb, vec_b, k, n, p0, col0, &Bs[0][0],
                                         V2_BN + V2_PAD, false, threadIdx.x);
    __syncthreads();  // both tiles complete before anyone multiplies
#pragma unroll
    for (int p = 0; p < V2_BK; ++p) {
      const float4 a = *reinterpret_cast<const float4*>(&As[p][ty * V2_TM]);
      const float4 b = *reinterpret_cast<const float4*>(&Bs[p][tx * V2_TN]);
      const float av[V2_TM] = {a.x, a.y, a.z, a.w};
      const float bv[V2_TN] = {b.x, b.y, b.z, b.w};
#pragma unroll
      for (int i = 0; i < V2_TM; ++i)
#pragma unroll
        for (int j = 0; j < V2_TN; ++j) acc[i][j] += av[i] * bv[j];
    }
    __syncthreads();  // everyone done reading before the next step overwrites the tiles
  }
#pragma unroll
  for (int i = 0; i < V2_TM; ++i) {
    const int r = row0 + ty * V2_TM + i;
    if (r >= m) break;
#pragma unroll
    for (int j = 0; j < V2_TN; ++j) {
      const int c = col0 + tx * V2_TN + j;
      if (c < n) {
        float* out = C + (size_t)r * ldc + c;
        *out = beta == 0.0f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * *out;
      }
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
                                    int vec_a, int vec_b) {
  using namespace nvcuda;
  __shared__ alignas(32) float As[V3_BM][V3_BK + V3_PAD];
  __shared__ alignas(32) float Bs[V3_BK][V3_BN + V3_PAD];
  // Each warp's 16x16 staging area for writing its accumulators out with bounds checks.
  __shared__ alignas(32) float Cs[V3_THREADS / CONFNET_WARP_SIZE][16 * 16];
  A += (size_t)blockIdx.z * stride_a;
  B += (size_t)blockIdx.z * stride_b;
  C += (size_t)blockIdx.z * stride_c;
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
  float* cs = Cs[warp];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      wmma::store_matrix_sync(cs, acc[i][j], 16, wmma::mem_row_major);
      __syncwarp();  // the whole fragment is in cs before lanes read other lanes' elements
      for (int e = lane; e < 16 * 16; e += CONFNET_WARP_SIZE) {
        const int r = row0 + wy * 32 + i * 16 + e / 16, c = col0 + wx * 32 + j * 16 + e % 16;
        if (r < m && c < n) {
          float* out = C + (size_t)r * ldc + c;
          *out = beta == 0.0f ? alpha * cs[e] : alpha * cs[e] + beta * *out;
        }
      }
      __syncwarp();  // all lanes done reading cs before the next fragment is stored over it
    }
}
