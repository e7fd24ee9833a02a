// Element-wise layers (confnet/layers/: neuron.py's family: relu.py, prelu.py, dropout.py and
// the Elementwise types of elementwise.py). One logical thread per element in a grid-stride loop;
// the launcher (confnet/gpu/launch.py) picks the geometry. Each kernel computes the formula of
// its layer's host path, in the same order of operations, with the same parameters.
//
// In place, x and y (and dy and dx) are the same array, so no pointer here is __restrict__: each
// thread reads element i before it writes element i, and touches no other element. A backward
// that needs x is given the copy the layer kept before forward overwrote it.

#include "common.cuh"

// -- ReLU (relu.py) ------------------------------------------------------------------------------

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

// -- Elementwise pairs (elementwise.py) --------------------------------------------------------
// <type>_forward(n, x, y, scalars...) and <type>_backward(n, dy, x, y, dx, scalars...) with
// dx = dy * f'(x); both take the same trailing scalars (the layer's kernel_args()), so a backward
// may receive one that only forward uses, and x or y that it does not read.

// ELU: y = x > 0 ? x : alpha * (exp(x) - 1); expm1 keeps the precision of small negative x.
extern "C" __global__ void elu_forward(int n, const float* x, float* y, float alpha) {
    CUDA_KERNEL_LOOP(i, n) {
        const float v = x[i];
        y[i] = v > 0.0f ? v : alpha * expm1f(fminf(v, 0.0f));
    }
}

// x = 0 takes the exponential branch (slope alpha), as Caffe.
extern "C" __global__ void elu_backward(int n, const float* dy, const float* x, const float* y,
                                        float* dx, float alpha) {
    CUDA_KERNEL_LOOP(i, n) {
        const float v = x[i];
        dx[i] = dy[i] * (v > 0.0f ? 1.0f : alpha * expf(fminf(v, 0.0f)));
    }
}

// AbsVal: y = |x|.
extern "C" __global__ void absval_forward(int n, const float* x, float* y) {
    CUDA_KERNEL_LOOP(i, n) y[i] = fabsf(x[i]);
}

// dx = sign(x) dy; sign(0) = 0 (and NaN stays NaN, as numpy's sign).
extern "C" __global__ void absval_backward(int n, const float* dy, const float* x, const float* y,
                                           float* dx) {
    CUDA_KERNEL_LOOP(i, n) {
        const float v = x[i];
        dx[i] = dy[i] * (v > 0.0f ? 1.0f : v < 0.0f ? -1.0f : v);
    }
}

// BNLL (softplus): y = log(1 + exp(x)) = max(x, 0) + log(1 + exp(-|x|)): exp never overflows.
extern "C" __global__ void bnll_forward(int n, const float* x, float* y) {
    CUDA_KERNEL_LOOP(i, n) {
        const float v = x[i];
        y[i] = fmaxf(v, 0.0f) + log1pf(expf(-fabsf(v)));
    }
}

// dx = dy * sigmoid(x), the sigmoid through tanh (no overflow).
extern "C" __global__ void bnll_backward(int n, const float* dy, const float* x, const float* y,
                                         float* dx) {
    CUDA_KERNEL_LOOP(i, n) dx[i] = dy[i] * (0.5f * tanhf(0.5f * x[i]) + 0.5f);
}

// Power: y = (scale * x + shift) ^ power; power 1 skips powf (exact, and defined for any sign).
extern "C" __global__ void power_forward(int n, const float* x, float* y, float power,
                                         float scale, float shift, float diff_scale) {
    CUDA_KERNEL_LOOP(i, n) {
        const float base = scale * x[i] + shift;
        y[i] = power == 1.0f ? base : powf(base, power);
    }
}

// dx = dy * diff_scale * (scale * x + shift) ^ (power - 1), diff_scale = power * scale; zero when
// diff_scale is (y is constant), diff_scale itself when power is 1.
extern "C" __global__ void power_backward(int n, const float* dy, const float* x, const float* y,
                                          float* dx, float power, float scale, float shift,
                                          float diff_scale) {
    CUDA_KERNEL_LOOP(i, n) {
        float d = 0.0f;
        if (diff_scale != 0.0f)
            d = power == 1.0f ? diff_scale : diff_scale * powf(scale * x[i] + shift, power - 1.0f);
        dx[i] = dy[i] * d;
    }
}

// Exp: y = base ^ (shift + scale x) = outer * exp(inner * x), with inner = ln(base) scale and
// outer = base ^ shift computed once on the host.
extern "C" __global__ void exp_forward(int n, const float* x, float* y, float inner,
                                       float outer) {
    CUDA_KERNEL_LOOP(i, n) y[i] = outer * expf(inner * x[i]);
}

// dx = dy * inner * y: from y alone, so in place keeps no copy of x.
extern "C" __global__ void exp_backward(int n, const float* dy, const float* x, const float* y,
                                        float* dx, float inner, float outer) {
    CUDA_KERNEL_LOOP(i, n) dx[i] = dy[i] * (inner * y[i]);
}

// Log: y = log_base(scale x + shift) = base_scale * ln(scale x + shift), base_scale = 1 / ln(base).
extern "C" __global__ void log_forward(int n, const float* x, float* y, float base_scale,
                                       float scale, float shift, float diff_scale) {
    CUDA_KERNEL_LOOP(i, n) y[i] = base_scale * logf(scale * x[i] + shift);
}

// dx = dy * diff_scale / (scale x + shift), diff_scale = base_scale * scale.
extern "C" __global__ void log_backward(int n, const float* dy, const float* x, const float* y,
                                        float* dx, float base_scale, float scale, float shift,
                                        float diff_scale) {
    CUDA_KERNEL_LOOP(i, n) dx[i] = dy[i] * (diff_scale / (scale * x[i] + shift));
}

// Clip: y = max(low, min(x, high)).
extern "C" __global__ void clip_forward(int n, const float* x, float* y, float low, float high) {
    CUDA_KERNEL_LOOP(i, n) y[i] = fmaxf(low, fminf(x[i], high));
}

// dx = dy where low <= x <= high (the bounds pass the gradient, as Caffe), else 0.
extern "C" __global__ void clip_backward(int n, const float* dy, const float* x, const float* y,
                                         float* dx, float low, float high) {
    CUDA_KERNEL_LOOP(i, n) {
        const float v = x[i];
        dx[i] = dy[i] * (v >= low && v <= high ? 1.0f : 0.0f);
    }
}

// Sigmoid: y = 1 / (1 + exp(-x)) computed as 0.5 tanh(0.5 x) + 0.5, which never overflows.
extern "C" __global__ void sigmoid_forward(int n, const float* x, float* y) {
    CUDA_KERNEL_LOOP(i, n) y[i] = 0.5f * tanhf(0.5f * x[i]) + 0.5f;
}

// dx = dy * y (1 - y): from y alone, so in place keeps no copy of x.
extern "C" __global__ void sigmoid_backward(int n, const float* dy, const float* x,
                                            const float* y, float* dx) {
    CUDA_KERNEL_LOOP(i, n) {
        const float v = y[i];
        dx[i] = dy[i] * (v * (1.0f - v));
    }
}

// TanH: y = tanh(x).
extern "C" __global__ void tanh_forward(int n, const float* x, float* y) {
    CUDA_KERNEL_LOOP(i, n) y[i] = tanhf(x[i]);
}

// dx = dy (1 - y^2): from y alone.
extern "C" __global__ void tanh_backward(int n, const float* dy, const float* x, const float* y,
                                         float* dx) {
    CUDA_KERNEL_LOOP(i, n) {
        const float v = y[i];
        dx[i] = dy[i] * (1.0f - v * v);
    }
}

// -- Swish (swish.py) ----------------------------------------------------------------------------

// y = x s, s = sigmoid(beta x) (through tanh), kept in ``s`` for backward: the gradient then
// needs neither x nor a second exponential.
extern "C" __global__ void swish_forward(int n, const float* x, float* y, float* s, float beta) {
    CUDA_KERNEL_LOOP(i, n) {
        const float v = x[i];
        const float sig = 0.5f * tanhf(0.5f * beta * v) + 0.5f;
        s[i] = sig;
        y[i] = v * sig;
    }
}

// dx = dy (beta y + s (1 - beta y)).
extern "C" __global__ void swish_backward(int n, const float* dy, const float* y, const float* s,
                                          float* dx, float beta) {
    CUDA_KERNEL_LOOP(i, n) {
        const float by = beta * y[i];
        dx[i] = dy[i] * (by + s[i] * (1.0f - by));
    }
}

// -- Threshold (threshold.py): forward only, as Caffe ---------------------------------------------

// y = 1 where x > threshold, else 0.
extern "C" __global__ void threshold_forward(int n, const float* x, float* y, float threshold) {
    CUDA_KERNEL_LOOP(i, n) y[i] = x[i] > threshold ? 1.0f : 0.0f;
}

// -- PReLU (prelu.py) ----------------------------------------------------------------------------
// x viewed as (outer, channels, inner); element i has channel (i / inner) % channels. A shared
// slope is launched with channels = 1, so every element reads slope[0].

// y = x > 0 ? x : slope[c] x.
extern "C" __global__ void prelu_forward(int n, int channels, int inner, const float* x,
                                         float* y, const float* slope) {
    CUDA_KERNEL_LOOP(i, n) {
        const float v = x[i];
        y[i] = v > 0.0f ? v : v * slope[(i / inner) % channels];
    }
}

// dx = x <= 0 ? slope[c] dy : dy (x = 0 takes the slope, as the host path).
extern "C" __global__ void prelu_backward(int n, int channels, int inner, const float* dy,
                                          const float* x, const float* slope, float* dx) {
    CUDA_KERNEL_LOOP(i, n) dx[i] = x[i] <= 0.0f ? dy[i] * slope[(i / inner) % channels] : dy[i];
}

// da[c] += sum over o, k of dy x where x <= 0, for element (o, c, k). One block per channel
// (gridDim.x == channels) reduces it in an order fixed by the thread indices, so the gradient is
// bit-reproducible without atomics; blockDim.x: a multiple of 32.
extern "C" __global__ void prelu_backward_slope(int outer, int channels, int inner,
                                                const float* dy, const float* x, float* da) {
    __shared__ float scratch[CONFNET_WARP_SIZE];
    const int c = blockIdx.x;
    const int count = outer * inner;
    float sum = 0.0f;
    for (int j = threadIdx.x; j < count; j += blockDim.x) {
        const int o = j / inner;
        const int i = (o * channels + c) * inner + (j - o * inner);
        const float v = x[i];
        if (v <= 0.0f) sum += dy[i] * v;
    }
    sum = block_reduce_sum(sum, scratch);
    if (threadIdx.x == 0) da[c] += sum;
}

// *da += the sum of the per-channel sums (the shared slope's gradient), launched as ONE block:
// the second pass of a two-pass reduction, deterministic like the first.
extern "C" __global__ void prelu_backward_slope_shared(int channels, const float* sums,
                                                       float* da) {
    __shared__ float scratch[CONFNET_WARP_SIZE];
    float sum = 0.0f;
    for (int c = threadIdx.x; c < channels; c += blockDim.x) sum += sums[c];
    sum = block_reduce_sum(sum, scratch);
    if (threadIdx.x == 0) *da += sum;
}

// -- Dropout (dropout.py) ------------------------------------------------------------------------

// The dropout mask is a counter-based hash of (seed, element index), so backward recomputes it
// instead of keeping (or copying) a mask, and the CPU path (dropout.py, the same arithmetic in
// numpy uint32) draws the identical mask. Two rounds of a 32-bit finalizer (Wellons' lowbias32:
// full avalanche) keyed by the two halves of a 64-bit seed drawn once per forward on the host.
// The seed is read from device memory (seed[0]: low half, seed[1]: high half; a slot of the
// scalar table, confnet/gpu/graph.py), not passed by value: a CUDA graph replays the arguments
// it captured, and each replayed iteration must draw a new mask.
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
__device__ inline bool dropout_keep(int i, unsigned int seed_lo, unsigned int seed_hi,
                                    int threshold) {
    const unsigned int h = dropout_mix(dropout_mix((unsigned int)i ^ seed_lo) ^ seed_hi);
    return h >= (unsigned int)threshold;
}

// y = x * scale where kept, else 0 (scale = 1 / (1 - ratio)).
extern "C" __global__ void dropout_forward(int n, const float* x, float* y,
                                           const unsigned int* seed, int threshold,
                                           float scale) {
    const unsigned int seed_lo = seed[0], seed_hi = seed[1];
    CUDA_KERNEL_LOOP(i, n)
        y[i] = dropout_keep(i, seed_lo, seed_hi, threshold) ? x[i] * scale : 0.0f;
}

// dx = dy * scale where the forward (same seed) kept the element, else 0.
extern "C" __global__ void dropout_backward(int n, const float* dy, float* dx,
                                            const unsigned int* seed, int threshold,
                                            float scale) {
    const unsigned int seed_lo = seed[0], seed_hi = seed[1];
    CUDA_KERNEL_LOOP(i, n)
        dx[i] = dropout_keep(i, seed_lo, seed_hi, threshold) ? dy[i] * scale : 0.0f;
}
