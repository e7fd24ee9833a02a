// The reduction family: Reduction and ArgMax (confnet/layers/reduction.py, argmax.py).
#include "channels.cuh"

// The term Reduction sums, by operation: 0 x (SUM, MEAN: the mean's 1 / D is in coeff),
// 1 |x| (ASUM), 2 x^2 (SUMSQ).
__device__ __forceinline__ float reduction_term(float x, int op) {
  return op == 1 ? fabsf(x) : op == 2 ? x * x : x;
}

// y[m] = coeff * sum_d term(x[m, d]) over the rows of x viewed as (rows, dim): one block per row
// (looping when the grid is smaller), so each sum has a fixed order.
extern "C" __global__ void reduction_forward(int rows, int dim, const float* x, float* y, int op,
                                             float coeff) {
  __shared__ float scratch[CONFNET_WARP_SIZE];
  for (int m = blockIdx.x; m < rows; m += gridDim.x) {
    const float sum = channel_sum(1, rows, dim, m, [&](size_t k) {
                        return reduction_term(x[k], op);
                      }, scratch);
    if (threadIdx.x == 0) y[m] = coeff * sum;
  }
}

// dx[m, d] = coeff dy[m] * (1 | sign(x) | 2 x) for op 0 | 1 | 2 (sign(0) = 0).
extern "C" __global__ void reduction_backward(int n, const float* x, const float* dy, float* dx,
                                              int dim, int op, float coeff) {
  CUDA_KERNEL_LOOP(i, n) {
    const float scale = coeff * dy[i / dim];
    const float v = x[i];
    dx[i] = op == 1 ? scale * (float)((v > 0.0f) - (v < 0.0f)) : op == 2 ? 2.0f * scale * v
                                                                          : scale;
  }
}

// Whether (a, ia) ranks before (b, ib): the larger value first, the higher index among equals
// (the CPU path's order, Caffe's sort of (value, index) pairs).
__device__ __forceinline__ bool ranks_before(float a, int ia, float b, int ib) {
  return a > b || (a == b && ia > ib);
}

// The top_k values of x[o, :, i] (x viewed as (outer, dim, inner)), one thread per position
// (o, i), n = outer * inner: the j-th pick is the best pair ranking after the (j-1)-th, so no
// per-thread list is needed (top_k scans of dim values; top_k is small). Written, as floats, to
// out[o, :, i] viewed as (outer, (with_index + with_value) * top_k, inner): the indices at rows
// 0..top_k-1 when with_index, the values in the next top_k rows when with_value.
extern "C" __global__ void argmax_forward(int n, const float* x, float* out, int dim, int inner,
                                          int top_k, int with_index, int with_value) {
  CUDA_KERNEL_LOOP(p, n) {
    const int o = p / inner, i = p - o * inner;
    const float* row = x + (size_t)o * dim * inner + i;
    float* dst = out + (size_t)o * (with_index + with_value) * top_k * inner + i;
    float last = 0.0f;
    int last_index = -1;  // no pick yet
    for (int j = 0; j < top_k; ++j) {
      float best = 0.0f;
      int best_index = -1;
      for (int d = 0; d < dim; ++d) {
        const float v = row[(size_t)d * inner];
        const bool after_last = last_index < 0 || ranks_before(last, last_index, v, d);
        if (after_last && (best_index < 0 || ranks_before(v, d, best, best_index))) {
          best = v;
          best_index = d;
        }
      }
      if (with_index) dst[(size_t)j * inner] = (float)best_index;
      if (with_value) dst[(size_t)(with_index * top_k + j) * inner] = best;
      last = best;
      last_index = best_index;
    }
  }
}
