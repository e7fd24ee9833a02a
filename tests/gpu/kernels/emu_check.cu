// Kernels that exercise the emulator's device vocabulary (tests/gpu/test_emulator.py).

#include <mma.h>

#define TILE 16

// C (m x n) = A (m x k) * B (k x n), row-major; one 16x16 tile of C per block, with
// the k dimension staged through shared memory in 16-wide tiles.
extern "C" __global__ void sgemm_tiled(int m, int n, int k, const float* __restrict__ a,
                                       const float* __restrict__ b, float* __restrict__ c) {
    __shared__ float as[TILE][TILE + 1];
    __shared__ float bs[TILE][TILE + 1];
    int row = blockIdx.y * TILE + threadIdx.y, col = blockIdx.x * TILE + threadIdx.x;
    float acc = 0.0f;
    for (int t = 0; t < k; t += TILE) {
        as[threadIdx.y][threadIdx.x] =
            (row < m && t + threadIdx.x < k) ? a[row * k + t + threadIdx.x] : 0.0f;
        bs[threadIdx.y][threadIdx.x] =
            (col < n && t + threadIdx.y < k) ? b[(t + threadIdx.y) * n + col] : 0.0f;
        __syncthreads();
#pragma unroll
        for (int i = 0; i < TILE; ++i) acc += as[threadIdx.y][i] * bs[i][threadIdx.x];
        __syncthreads();
    }
    if (row < m && col < n) c[row * n + col] = acc;
}

// out[block] = sum of x over the block's span, with warp shuffles and a dynamic shared array
// holding one partial sum per warp (blockDim.x a multiple of 32; x is read up to n).
extern "C" __global__ void block_sum_shfl(int n, const float* x, float* out) {
    extern __shared__ float partial[];
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    float v = i < n ? x[i] : 0.0f;
    for (int off = 16; off > 0; off /= 2) v += __shfl_down_sync(0xffffffffu, v, off);
    int lane = threadIdx.x % warpSize, warp = threadIdx.x / warpSize;
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        float s = 0.0f;
        for (int w = 0; w < blockDim.x / warpSize; ++w) s += partial[w];
        out[blockIdx.x] = s;
    }
}

// Each thread writes its dynamic shared slot only when its index is even, then thread 0 copies
// the whole array out: odd slots show what the emulator left there (NaN).
extern "C" __global__ void dynamic_shared_probe(float* out) {
    extern __shared__ __align__(16) float slots[];
    if (threadIdx.x % 2 == 0) slots[threadIdx.x] = (float)threadIdx.x;
    __syncthreads();
    if (threadIdx.x == 0)
        for (int i = 0; i < blockDim.x; ++i) out[blockIdx.x * blockDim.x + i] = slots[i];
}

// A barrier inside a branch only some threads take: a deadlock on a GPU.
extern "C" __global__ void divergent_barrier(int n, float* x) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        x[i] *= 2.0f;
        __syncthreads();
    }
}
