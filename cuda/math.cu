// Vector math on float32 device arrays: the kernels behind confnet/gpu/blas.py (fill, scale,
// axpy, axpby, copy, add, mul, reductions) and the per-channel bias add/sum that InnerProduct,
// Convolution and Deconvolution share.
//
// Elementwise kernels are grid-stride loops whose first parameter is `int n`, launched with
// launch_1d (256 threads a block, capped grid). Reductions run in two passes, both with a fixed
// geometry chosen by blas.py: pass 1 writes one partial per block, pass 2 (one block) sums the
// partials. No atomics: the order of every addition depends only on n and the geometry, so a
// reduction gives the same bits on every run, as the solver's display and tests need.
#include "common.cuh"

extern "C" __global__ void blas_fill(int n, float value, float* x) {
  CUDA_KERNEL_LOOP(i, n) x[i] = value;
}

extern "C" __global__ void blas_scale(int n, float alpha, float* x) {
  CUDA_KERNEL_LOOP(i, n) x[i] *= alpha;
}

// y = alpha x + y
extern "C" __global__ void blas_axpy(int n, float alpha, const float* x, float* y) {
  CUDA_KERNEL_LOOP(i, n) y[i] += alpha * x[i];
}

// y = alpha x + beta y; beta == 0 overwrites y without reading it (it may hold NaN), as BLAS does.
extern "C" __global__ void blas_axpby(int n, float alpha, const float* x, float beta, float* y) {
  CUDA_KERNEL_LOOP(i, n) y[i] = beta == 0.0f ? alpha * x[i] : alpha * x[i] + beta * y[i];
}

extern "C" __global__ void blas_copy(int n, const float* x, float* y) {
  CUDA_KERNEL_LOOP(i, n) y[i] = x[i];
}

// y = a + b (y may be a or b)
extern "C" __global__ void blas_add(int n, const float* a, const float* b, float* y) {
  CUDA_KERNEL_LOOP(i, n) y[i] = a[i] + b[i];
}

// y = a * b (y may be a or b)
extern "C" __global__ void blas_mul(int n, const float* a, const float* b, float* y) {
  CUDA_KERNEL_LOOP(i, n) y[i] = a[i] * b[i];
}

// y += alpha sign(x), sign(0) = 0: the L1 weight decay.
extern "C" __global__ void blas_add_sign(int n, float alpha, const float* x, float* y) {
  CUDA_KERNEL_LOOP(i, n) {
    const float v = x[i];
    y[i] += alpha * (float)((v > 0.0f) - (v < 0.0f));
  }
}

// -- reductions -------------------------------------------------------------------------------

// Pass 1: partial[blockIdx.x] = sum over this block's grid-stride share of term(i).
// blockDim.x: a multiple of 32 (block_reduce_sum).
template <typename Term>
__device__ void reduce_partial(int n, Term term, float* partial) {
  __shared__ float scratch[CONFNET_WARP_SIZE];
  float sum = 0.0f;
  CUDA_KERNEL_LOOP(i, n) sum += term(i);
  sum = block_reduce_sum(sum, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = sum;
}

struct DotTerm {
  const float* x;
  const float* y;
  __device__ float operator()(int i) const { return x[i] * y[i]; }
};

struct SumsqTerm {
  const float* x;
  __device__ float operator()(int i) const { return x[i] * x[i]; }
};

struct AsumTerm {
  const float* x;
  __device__ float operator()(int i) const { return fabsf(x[i]); }
};

extern "C" __global__ void blas_dot_partial(int n, const float* x, const float* y,
                                            float* partial) {
  reduce_partial(n, DotTerm{x, y}, partial);
}

extern "C" __global__ void blas_sumsq_partial(int n, const float* x, float* partial) {
  reduce_partial(n, SumsqTerm{x}, partial);
}

extern "C" __global__ void blas_asum_partial(int n, const float* x, float* partial) {
  reduce_partial(n, AsumTerm{x}, partial);
}

// Pass 2, launched as ONE block: *out = sum of the n partials of pass 1.
extern "C" __global__ void blas_sum_final(int n, const float* partial, float* out) {
  __shared__ float scratch[CONFNET_WARP_SIZE];
  float sum = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) sum += partial[i];
  sum = block_reduce_sum(sum, scratch);
  if (threadIdx.x == 0) *out = sum;
}

// -- per-channel bias -------------------------------------------------------------------------
// y is viewed as (outer, channels, inner): InnerProduct's (rows, N, 1), Convolution's (N, M, P).

// y[o, c, i] += bias[c]
extern "C" __global__ void blas_bias_forward(int n, int channels, int inner, const float* bias,
                                             float* y) {
  CUDA_KERNEL_LOOP(i, n) y[i] += bias[(i / inner) % channels];
}

// db[c] += sum over o, i of dy[o, c, i]. One block per channel (gridDim.x == channels), so every
// channel's sum is reduced in a fixed order with no atomics; blockDim.x: a multiple of 32.
extern "C" __global__ void blas_bias_backward(int outer, int channels, int inner,
                                              const float* dy, float* db) {
  __shared__ float scratch[CONFNET_WARP_SIZE];
  const int c = blockIdx.x;
  const int count = outer * inner;
  float sum = 0.0f;
  for (int j = threadIdx.x; j < count; j += blockDim.x) {
    const int o = j / inner, i = j - o * inner;
    sum += dy[(o * channels + c) * inner + i];
  }
  sum = block_reduce_sum(sum, scratch);
  if (threadIdx.x == 0) db[c] += sum;
}
