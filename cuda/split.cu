// Split (confnet/layers/split.py): the tops share the bottom's data, so only backward computes:
// dx = dy_0 + dy_1 + ..., summed in top order (the CPU path's order, hence the same bits).

#include "common.cuh"

// dx = a + b (the first two tops).
extern "C" __global__ void split_backward(int n, const float* a, const float* b, float* dx) {
    CUDA_KERNEL_LOOP(i, n)
        dx[i] = a[i] + b[i];
}

// dx += a (each further top).
extern "C" __global__ void split_backward_add(int n, const float* a, float* dx) {
    CUDA_KERNEL_LOOP(i, n)
        dx[i] += a[i];
}
