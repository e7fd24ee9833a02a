// Element-wise activations (confnet/layers/neuron.py, dropout.py). One logical thread per
// element in a grid-stride loop; the launcher (confnet/gpu/launch.py) picks the geometry.

#include "common.cuh"

// y = x > 0 ? x : slope * x. ``mask`` (may be null) receives 1 where x > 0 and 0 elsewhere: an
// in-place ReLU with a negative slope keeps it, because y then no longer tells the sign of x.
extern "C" __global__ void relu_forward(int n, const float* x, float* y, float slope,
                                        float* mask) {
    CUDA_KERNEL_LOOP(i, n) {
        const float v = x[i];
        const bool positive = v > 0.0f;
        y[i] = positive ? v : v * slope;
        if (mask) mask[i] = positive ? 1.0f : 0.0f;
    }
}

// dx = dy where sign > 0, else slope * dy. ``sign`` is the input x, or the top y when computed in
// place with slope >= 0 (same sign), or the forward's mask.
extern "C" __global__ void relu_backward(int n, const float* dy, const float* sign, float* dx,
                                         float slope) {
    CUDA_KERNEL_LOOP(i, n)
        dx[i] = sign[i] > 0.0f ? dy[i] : dy[i] * slope;
}

// The dropout mask is a counter-based hash of (seed, element index), so backward recomputes it
// instead of keeping (or copying) a mask, and the CPU path (dropout.py, the same arithmetic in
// numpy uint32) draws the identical mask. Two rounds of a 32-bit finalizer (Wellons' lowbias32:
// full avalanche) keyed by the two halves of a 64-bit seed drawn once per forward on the host.
__device__ inline unsigned int dropout_mix(unsigned int h) {
    h ^= h >> 16;
    h *= 0x7feb352du;
    h ^= h >> 15;
    h *= 0x846ca68bu;
    h ^= h >> 16;
    return h;
}

// Kept when the hash is at least ``threshold`` = round(ratio * 2^32) (clamped to 2^32 - 1); the
// int arguments carry unsigned bit patterns.
__device__ inline bool dropout_keep(int i, int seed_lo, int seed_hi, int threshold) {
    const unsigned int h = dropout_mix(dropout_mix((unsigned int)i ^ (unsigned int)seed_lo)
                                       ^ (unsigned int)seed_hi);
    return h >= (unsigned int)threshold;
}

// y = x * scale where kept, else 0 (scale = 1 / (1 - ratio)).
extern "C" __global__ void dropout_forward(int n, const float* x, float* y, int seed_lo,
                                           int seed_hi, int threshold, float scale) {
    CUDA_KERNEL_LOOP(i, n)
        y[i] = dropout_keep(i, seed_lo, seed_hi, threshold) ? x[i] * scale : 0.0f;
}

// dx = dy * scale where the forward (same seed) kept the element, else 0.
extern "C" __global__ void dropout_backward(int n, const float* dy, float* dx, int seed_lo,
                                            int seed_hi, int threshold, float scale) {
    CUDA_KERNEL_LOOP(i, n)
        dx[i] = dropout_keep(i, seed_lo, seed_hi, threshold) ? dy[i] * scale : 0.0f;
}
