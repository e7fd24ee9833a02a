// Device helpers shared by every kernel file in cuda/ (kernels themselves live in the family
// files). Append new helpers at the end; keep each one small and documented.
//
// Everything here sticks to the vocabulary the CUDA-on-CPU emulator understands (DESIGN.md §5):
// no inline PTX, no cooperative groups.
#pragma once

// Threads of a warp: the shuffle reductions below assume it, as every NVIDIA GPU does.
#define CONFNET_WARP_SIZE 32

// A grid-stride loop over [0, n): the shape of every elementwise kernel, launched by
// confnet/gpu/launch.py's launch_1d (which caps the grid, so one thread may cover several
// elements).
#define CUDA_KERNEL_LOOP(i, n)                                                   \
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < (n);                   \
       i += blockDim.x * gridDim.x)

// Sum of `v` over the 32 lanes of a warp, returned to every lane. The xor butterfly gives every
// lane the same result in the same order of additions, so the sum is bit-reproducible.
// All 32 lanes must call it (full mask).
__device__ __forceinline__ float warp_reduce_sum(float v) {
  for (int offset = CONFNET_WARP_SIZE / 2; offset > 0; offset /= 2)
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ __forceinline__ float warp_reduce_max(float v) {
  for (int offset = CONFNET_WARP_SIZE / 2; offset > 0; offset /= 2)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Sum of `v` over a 1-D block, returned to every thread. blockDim.x must be a multiple of 32
// (at most 1024). `scratch` is __shared__ float[32] owned by the caller. The order of additions
// depends only on the thread indices, never on timing, so the result is deterministic.
// Every thread of the block must call it (it holds two barriers).
__device__ __forceinline__ float block_reduce_sum(float v, float* scratch) {
  const int lane = threadIdx.x % CONFNET_WARP_SIZE;
  const int warp = threadIdx.x / CONFNET_WARP_SIZE;
  const int warps = blockDim.x / CONFNET_WARP_SIZE;
  v = warp_reduce_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();  // every warp's partial is in scratch before warp 0 reads them
  v = lane < warps ? scratch[lane] : 0.0f;
  v = warp_reduce_sum(v);
  __syncthreads();  // scratch may be reused by the caller right after this returns
  return v;
}

__device__ __forceinline__ float block_reduce_max(float v, float* scratch) {
  const int lane = threadIdx.x % CONFNET_WARP_SIZE;
  const int warp = threadIdx.x / CONFNET_WARP_SIZE;
  const int warps = blockDim.x / CONFNET_WARP_SIZE;
  v = warp_reduce_max(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();  // as in block_reduce_sum
  v = lane < warps ? scratch[lane] : -INFINITY;
  v = warp_reduce_max(v);
  __syncthreads();
  return v;
}

// One stage of a register-blocked product over k-major shared tiles, 4x4 outputs a thread:
// acc[i][j] += sum_{p < BK} As[p][ty 4 + i] Bs[p][tx 4 + j]. A thread's 4 rows (and 4 columns)
// are one float4 read, so rows of LDA (LDB) floats must keep 16-byte alignment. Used by
// sgemm_v2 and the implicit-GEMM convolution kernels (64x64 tiles, 256 threads).
template <int BK, int LDA, int LDB>
__device__ __forceinline__ void multiply_4x4(const float (*As)[LDA], const float (*Bs)[LDB],
                                             float (*acc)[4], int tx, int ty) {
#pragma unroll
  for (int p = 0; p < BK; ++p) {
    const float4 a = *reinterpret_cast<const float4*>(&As[p][ty * 4]);
    const float4 b = *reinterpret_cast<const float4*>(&Bs[p][tx * 4]);
    const float av[4] = {a.x, a.y, a.z, a.w};
    const float bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[i][j] += av[i] * bv[j];
  }
}
