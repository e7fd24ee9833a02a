// Accuracy (confnet/layers/accuracy.py): per-position hits, then deterministic block sums.
// Scores are (outer, channels, inner) around the axis; there are n = outer * inner positions.
#include "common.cuh"

// hit[i] = 1 when fewer than top_k other classes score at least as high as the labelled one
// (ties count against it, as the CPU path), counted[i] = 0 for an ignored label. A counted
// label outside 0..channels-1 cannot be reported from the device: its hit is NaN, so the
// accuracy reads NaN.
extern "C" __global__ void accuracy_forward(int n, const float* x, const float* label,
                                            float* hit, float* counted, int channels, int inner,
                                            int top_k, int has_ignore, int ignore_label) {
    CUDA_KERNEL_LOOP(i, n) {
        const int lab = (int)label[i];
        const bool counts = !(has_ignore && lab == ignore_label);
        float value = 0.0f;
        if (counts && (lab < 0 || lab >= channels)) {
            value = NAN;
        } else if (counts) {
            const size_t base = (size_t)(i / inner) * channels * inner + i % inner;
            const float score = x[base + (size_t)lab * inner];
            int rivals = -1;   // the labelled class itself is counted once below
            for (int c = 0; c < channels; ++c) rivals += x[base + (size_t)c * inner] >= score;
            value = rivals < top_k ? 1.0f : 0.0f;
        }
        hit[i] = value;
        counted[i] = counts ? 1.0f : 0.0f;
    }
}

// Block 0: top[0] = sum(hit) / sum(counted) over all positions (0 when none counts).
// Block 1 + k (only launched with a per-class top): per_class[k], the same over the positions
// labelled k. blockDim.x a multiple of 32.
extern "C" __global__ void accuracy_reduce(int n, const float* hit, const float* counted,
                                           const float* label, float* top, float* per_class) {
    __shared__ float scratch[32];
    const int cls = (int)blockIdx.x - 1;   // -1: every class
    float hits = 0.0f, seen = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        if (cls < 0 || (int)label[i] == cls) {
            hits += hit[i];
            seen += counted[i];
        }
    }
    hits = block_reduce_sum(hits, scratch);
    seen = block_reduce_sum(seen, scratch);
    if (threadIdx.x == 0) {
        const float value = seen > 0.0f ? hits / seen : 0.0f;
        if (cls < 0) top[0] = value;
        else per_class[cls] = value;
    }
}
