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

// Atomics: a histogram of labels (int), the float sum, the max (int) and an unsigned long long
// count, plus a CAS-built float max, all over n elements.
extern "C" __global__ void atomics_probe(int n, const int* label, const float* x, int* hist,
                                         float* sum, int* max_label, unsigned long long* count,
                                         float* max_x) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        atomicAdd(&hist[label[i]], 1);
        atomicAdd(sum, x[i]);
        atomicMax(max_label, label[i]);
        atomicAdd(count, 1ull);
        int* bits = (int*)max_x;
        int old = *bits, assumed;
        do {
            assumed = old;
            if (__int_as_float(assumed) >= x[i]) break;
            old = atomicCAS(bits, assumed, __float_as_int(x[i]));
        } while (old != assumed);
    }
}

// Warp votes and the predicate barriers: per warp the ballot of (x > 0), any, all; per block
// the number of positive elements through __syncthreads_count.
extern "C" __global__ void votes_probe(int n, const float* x, unsigned* ballot, int* any, int* all,
                                       int* block_count) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    int pred = i < n && x[i] > 0.0f;
    unsigned b = __ballot_sync(0xffffffffu, pred);
    int a = __any_sync(0xffffffffu, pred), l = __all_sync(0xffffffffu, pred);
    int c = __syncthreads_count(pred);
    int warp = i / warpSize;
    if (threadIdx.x % warpSize == 0) {
        ballot[warp] = b;
        any[warp] = a;
        all[warp] = l;
    }
    if (threadIdx.x == 0) block_count[blockIdx.x] = c;
}

// One warp multiplies a 16x8 A (row-major, lda) by an 8x16 B (column-major, ldb) with TF32
// tensor-core fragments and adds C (row-major); D is stored column-major.
extern "C" __global__ void wmma_tf32_16x16x8(const float* a, int lda, const float* b, int ldb,
                                             const float* c, float* d) {
    using namespace nvcuda;
    wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major> fb;
    wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc;
    wmma::load_matrix_sync(fa, a, lda);
    wmma::load_matrix_sync(fb, b, ldb);
    wmma::load_matrix_sync(acc, c, 16, wmma::mem_row_major);
    for (int t = 0; t < fa.num_elements; ++t) fa.x[t] = wmma::__float_to_tf32(fa.x[t]);
    wmma::mma_sync(acc, fa, fb, acc);
    wmma::store_matrix_sync(d, acc, 16, wmma::mem_col_major);
}

// A kernel that reads fragment elements by position (as if lane 0 held row 0): its result
// depends on the emulator's element order, which changes with the thread order.
extern "C" __global__ void wmma_depends_on_layout(const float* a, float* out) {
    using namespace nvcuda;
    wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa;
    wmma::load_matrix_sync(fa, a, 8);
    out[threadIdx.x] = fa.x[0];
}

// Runtime errors: thread `who` of the grid calls __trap() (mode 0), writes through a null
// pointer (mode 1) or divides by zero (mode 2).
extern "C" __global__ void fault_probe(int who, int mode, int* p) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i != who) return;
    if (mode == 0) __trap();
    if (mode == 1) *(volatile int*)nullptr = 1;
    if (mode == 2) p[0] = p[1] / p[2];
}

// The math vocabulary, one output column per function, for x in rows of float4.
extern "C" __global__ void math_probe(int n4, const float* __restrict__ x, float* __restrict__ y) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n4) return;
    float4 v = reinterpret_cast<const float4*>(x)[i];
    float a = __ldg(&x[4 * i]);
    float r[12] = {expf(v.x), __expf(v.y), logf(fabsf(v.z) + 1.0f), __logf(fabsf(v.w) + 1.0f),
                   __fdividef(v.x, 3.0f), rsqrtf(fabsf(v.y) + 1.0f), fmaxf(v.z, v.w),
                   tanhf(a), __saturatef(v.x), fmaf(v.y, v.z, v.w),
                   __int_as_float(__float_as_int(v.w)), isfinite(v.x / 0.0f) ? 1.0f : 0.0f};
    for (int k = 0; k < 12; ++k) y[12 * i + k] = r[k];
    float4 back = make_float4(r[0], r[1], r[2], r[3]);
    static_assert(alignof(float4) == 16 && sizeof(float2) == 8, "CUDA's vector layout");
    (void)back;
}

// A shuffle that only half of warp 0 reaches, with a full mask: a deadlock. (Warp 1 has 8
// threads, all of which reach it: the mask covers only the lanes that exist.)
extern "C" __global__ void divergent_shuffle(float* x) {
    float v = x[threadIdx.x];
    if (threadIdx.x % 32 < 16) v = __shfl_xor_sync(0xffffffffu, v, 1);
    x[threadIdx.x] = v;
}
