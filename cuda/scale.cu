// The scale family: Scale (confnet/layers/scale.py; Bias needs only blas.py's per-channel bias).
//
// x is viewed as (outer, dim, inner) with the operand s (dim values) lined up with the middle
// axis: y[o, c, i] = x[o, c, i] * s[c] (+ b[c]).
#include "channels.cuh"

// y = x * s[c] (+ b[c] with has_bias), n = outer * dim * inner. y may be x.
extern "C" __global__ void scale_forward(int n, const float* x, const float* s, const float* b,
                                         float* y, int dim, int inner, int has_bias) {
  CUDA_KERNEL_LOOP(i, n) {
    const int c = (i / inner) % dim;
    const float v = x[i] * s[c];
    y[i] = has_bias ? v + b[c] : v;
  }
}

// dx = dy * s[c]. dx may be dy.
extern "C" __global__ void scale_backward(int n, const float* dy, const float* s, float* dx,
                                          int dim, int inner) {
  CUDA_KERNEL_LOOP(i, n) dx[i] = dy[i] * s[(i / inner) % dim];
}

// ds[c] (+)= sum over o, i of dy[o, c, i] x[o, c, i]: one block per c (looping when the grid
// is smaller), so each sum has a fixed order. accumulate: add (a parameter's diff), else
// overwrite (the diff of a second bottom).
extern "C" __global__ void scale_backward_scale(int outer, int dim, int inner, const float* dy,
                                                const float* x, float* ds, int accumulate) {
  __shared__ float scratch[CONFNET_WARP_SIZE];
  for (int c = blockIdx.x; c < dim; c += gridDim.x) {
    const float sum = channel_sum(outer, dim, inner, c, [&](size_t k) { return dy[k] * x[k]; },
                                  scratch);
    if (threadIdx.x == 0) ds[c] = accumulate ? ds[c] + sum : sum;
  }
}
