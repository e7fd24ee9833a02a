// Eltwise (confnet/layers/eltwise.py): SUM with coefficients, PROD and MAX over 2+ bottoms.
//
// A kernel takes a fixed number of inputs, so the layer folds its bottoms in one at a time in
// bottom order, the CPU path's order of operations: the first kernel combines x_0 and x_1, reading
// both before it writes y (so y may be either of them, in place), and each later bottom is folded
// into y (SUM's with blas.axpy, PROD's with blas.mul).
#include "common.cuh"

// SUM, first two bottoms: y = c0 x0 + c1 x1.
extern "C" __global__ void eltwise_forward_sum(int n, float c0, const float* x0, float c1,
                                               const float* x1, float* y) {
  CUDA_KERNEL_LOOP(i, n) y[i] = c0 * x0[i] + c1 * x1[i];
}

// MAX, first two bottoms: y = max(x0, x1), winner = the bottom it came from; x1 wins a tie
// (Caffe's order, kept by the CPU path).
extern "C" __global__ void eltwise_forward_max_first(int n, const float* x0, const float* x1,
                                                     float* y, int* winner) {
  CUDA_KERNEL_LOOP(i, n) {
    const float a = x0[i], b = x1[i];
    winner[i] = a > b ? 0 : 1;
    y[i] = a > b ? a : b;
  }
}

// MAX, each further bottom `index`: it wins only where strictly larger (earlier ones keep ties).
extern "C" __global__ void eltwise_forward_max(int n, const float* x, int index, float* y,
                                               int* winner) {
  CUDA_KERNEL_LOOP(i, n) {
    if (x[i] > y[i]) {
      y[i] = x[i];
      winner[i] = index;
    }
  }
}

// MAX backward for bottom `index`: dx = dy where it won, else 0.
extern "C" __global__ void eltwise_backward_max(int n, const float* dy, const int* winner,
                                                int index, float* dx) {
  CUDA_KERNEL_LOOP(i, n) dx[i] = winner[i] == index ? dy[i] : 0.0f;
}

// PROD backward without stable_prod_grad: dx = dy * (y / x) (inf or NaN where x is 0, as on the
// CPU).
extern "C" __global__ void eltwise_backward_prod(int n, const float* dy, const float* y,
                                                 const float* x, float* dx) {
  CUDA_KERNEL_LOOP(i, n) dx[i] = dy[i] * (y[i] / x[i]);
}
