// The loss family (confnet/layers/): SigmoidCrossEntropyLoss, EuclideanLoss, HingeLoss,
// InfogainLoss, MultinomialLogisticLoss, ContrastiveLoss.
//
// A forward kernel writes one term per element, row, position or pair into a layer-owned buffer
// (and, for the losses with an ignore_label, whether it counts); loss_reduce then adds the terms
// in one block in a fixed order into the scalar top (no atomics: the same inputs give the same
// bits). Backward kernels read the loss weight w from the top's diff and, where the normalizer is
// counted on the device, that normalizer from norm[0], so nothing goes back to the host.
//
// A counted label outside 0..classes-1 cannot be reported from the device: its term (and its
// gradient) is NaN, so the loss reads NaN and the solver stops on it.
#include "common.cuh"

// Caffe's kLOG_THRESHOLD: probabilities are clamped here before the log.
#define CONFNET_LOG_THRESHOLD 1e-20f

// top[0] = scale * sum(loss) / normalizer, normalizer = max(1, fixed > 0 ? fixed : sum(counted))
// (VALID counts the targets on the device; FULL, BATCH_SIZE, NONE and the per-batch losses are
// known on the host). norm[0] (when given) receives the normalizer backward divides by; counted
// may be null when fixed > 0. One block, blockDim.x a multiple of 32.
extern "C" __global__ void loss_reduce(int n, const float* loss, const float* counted,
                                       float* top, float* norm, float fixed, float scale) {
    __shared__ float scratch[32];
    float total = 0.0f, count = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        total += loss[i];
        if (counted) count += counted[i];
    }
    total = block_reduce_sum(total, scratch);
    count = block_reduce_sum(count, scratch);
    if (threadIdx.x == 0) {
        const float normalizer = fmaxf(1.0f, fixed > 0.0f ? fixed : count);
        top[0] = scale * total / normalizer;
        if (norm) norm[0] = normalizer;
    }
}

// Whether a target counts: its integer part (C's cast, as the CPU path) is not the ignore label.
__device__ inline bool target_counts(float target, int has_ignore, int ignore_label) {
    return !(has_ignore && (int)target == ignore_label);
}

// loss[i] = max(x, 0) - x t + log(1 + exp(-|x|)) (the stable form of the logistic loss of
// sigmoid(x) against t) where t counts, else 0; counted[i] = 1 or 0.
extern "C" __global__ void sigmoid_cross_entropy_loss_forward(int n, const float* x,
                                                              const float* t, float* loss,
                                                              float* counted, int has_ignore,
                                                              int ignore_label) {
    CUDA_KERNEL_LOOP(i, n) {
        const bool counts = target_counts(t[i], has_ignore, ignore_label);
        const float v = x[i];
        loss[i] = counts ? fmaxf(v, 0.0f) - v * t[i] + log1pf(expf(-fabsf(v))) : 0.0f;
        counted[i] = counts ? 1.0f : 0.0f;
    }
}

// dx = w / norm * (sigmoid(x) - t) where t counts, else 0. sigmoid as 0.5 tanh(x / 2) + 0.5, the
// CPU path's form, which never overflows.
extern "C" __global__ void sigmoid_cross_entropy_loss_backward(int n, const float* x,
                                                               const float* t,
                                                               const float* top_diff,
                                                               const float* norm, float* dx,
                                                               int has_ignore, int ignore_label) {
    const float scale = top_diff[0] / norm[0];
    CUDA_KERNEL_LOOP(i, n) {
        const float p = 0.5f * tanhf(0.5f * x[i]) + 0.5f;
        dx[i] = target_counts(t[i], has_ignore, ignore_label) ? (p - t[i]) * scale : 0.0f;
    }
}

// delta = a - b (b read with a's flat index: the shapes may differ beyond the batch axis).
extern "C" __global__ void euclidean_loss_forward(int n, const float* a, const float* b,
                                                  float* delta) {
    CUDA_KERNEL_LOOP(i, n) delta[i] = a[i] - b[i];
}

// dx = alpha w delta, alpha = +1/N for a and -1/N for b.
extern "C" __global__ void euclidean_loss_backward(int n, const float* delta,
                                                   const float* top_diff, float alpha,
                                                   float* dx) {
    const float scale = alpha * top_diff[0];
    CUDA_KERNEL_LOOP(i, n) dx[i] = scale * delta[i];
}

// The label of row `row` as an int (truncated), or -1 when it is outside 0..classes-1.
__device__ inline int row_label(const float* label, int row, int classes) {
    const int lab = (int)label[row];
    return lab >= 0 && lab < classes ? lab : -1;
}

// The margin max(0, 1 + s x) of element i of (N, classes) scores, s = -1 for the labelled class
// and +1 for the others; *sign receives s. NaN for an out-of-range label.
__device__ inline float hinge_margin(int i, const float* x, const float* label, int classes,
                                     float* sign) {
    const int lab = row_label(label, i / classes, classes);
    *sign = i % classes == lab ? -1.0f : 1.0f;
    return lab < 0 ? NAN : fmaxf(0.0f, 1.0f + *sign * x[i]);
}

// loss[i] = m (L1) or m^2 (L2, ``squared``) for element i of the (N, classes) scores.
extern "C" __global__ void hinge_loss_forward(int n, const float* x, const float* label,
                                              float* loss, int classes, int squared) {
    CUDA_KERNEL_LOOP(i, n) {
        float sign;
        const float m = hinge_margin(i, x, label, classes, &sign);
        loss[i] = squared ? m * m : m;
    }
}

// dx = w / N * s [m > 0] (L1) or w / N * 2 s m (L2).
extern "C" __global__ void hinge_loss_backward(int n, const float* x, const float* label,
                                               const float* top_diff, float* dx, int classes,
                                               int squared, float num) {
    const float scale = top_diff[0] / num;
    CUDA_KERNEL_LOOP(i, n) {
        float sign;
        const float m = hinge_margin(i, x, label, classes, &sign);
        float grad = squared ? 2.0f * sign * m : (m > 0.0f ? sign : 0.0f);
        if (m != m) grad = m;   // an out-of-range label: NaN, as its loss term
        dx[i] = scale * grad;
    }
}

// loss[row] = -log(max(p[row, label], 1e-20)) for the rows of (rows, classes) probabilities.
extern "C" __global__ void multinomial_logistic_loss_forward(int rows, const float* p,
                                                             const float* label, float* loss,
                                                             int classes) {
    CUDA_KERNEL_LOOP(row, rows) {
        const int lab = row_label(label, row, classes);
        loss[row] = lab < 0 ? NAN
                            : -logf(fmaxf(p[(size_t)row * classes + lab], CONFNET_LOG_THRESHOLD));
    }
}

// dp = -w / N / max(p, 1e-20) at the labelled class of each row, 0 elsewhere.
extern "C" __global__ void multinomial_logistic_loss_backward(int n, const float* p,
                                                              const float* label,
                                                              const float* top_diff, float* dp,
                                                              int classes, float num) {
    const float scale = -top_diff[0] / num;
    CUDA_KERNEL_LOOP(i, n) {
        const int lab = row_label(label, i / classes, classes);
        dp[i] = lab < 0 ? NAN
                        : (i % classes == lab ? scale / fmaxf(p[i], CONFNET_LOG_THRESHOLD) : 0.0f);
    }
}

// Per position i of the (outer, channels, inner) probabilities: loss[i] = -sum_l H[label, l]
// log(max(p_l, 1e-20)) and counted[i] = 1 where the label counts, both 0 where it is ignored.
extern "C" __global__ void infogain_loss_forward(int n, const float* prob, const float* label,
                                                 const float* h, float* loss, float* counted,
                                                 int channels, int inner, int has_ignore,
                                                 int ignore_label) {
    CUDA_KERNEL_LOOP(i, n) {
        const bool counts = target_counts(label[i], has_ignore, ignore_label);
        const int lab = row_label(label, i, channels);
        float value = 0.0f;
        if (counts && lab < 0) {
            value = NAN;
        } else if (counts) {
            const size_t base = (size_t)(i / inner) * channels * inner + i % inner;
            const float* row = h + (size_t)lab * channels;
            for (int l = 0; l < channels; ++l)
                value += row[l] * logf(fmaxf(prob[base + (size_t)l * inner],
                                             CONFNET_LOG_THRESHOLD));
            value = -value;
        }
        loss[i] = value;
        counted[i] = counts ? 1.0f : 0.0f;
    }
}

// sums[r] = sum_m H[r, m] over the `channels` rows of H (backward needs each label's row sum).
extern "C" __global__ void infogain_loss_backward_row_sums(int channels, const float* h,
                                                           float* sums) {
    CUDA_KERNEL_LOOP(r, channels) {
        float sum = 0.0f;
        for (int m = 0; m < channels; ++m) sum += h[(size_t)r * channels + m];
        sums[r] = sum;
    }
}

// dx_l = w / norm * (p_l sums[label] - H[label, l]) at counted positions, 0 at ignored ones.
// n = outer * channels * inner. With ``accumulate`` the gradient is added to dx (the softmax
// backward of the probability top wrote it first).
extern "C" __global__ void infogain_loss_backward(int n, const float* prob, const float* label,
                                                  const float* h, const float* sums,
                                                  const float* top_diff, const float* norm,
                                                  float* dx, int channels, int inner,
                                                  int has_ignore, int ignore_label,
                                                  int accumulate) {
    const float scale = top_diff[0] / norm[0];
    CUDA_KERNEL_LOOP(i, n) {
        const int j = i % inner, c = (i / inner) % channels, o = i / (inner * channels);
        const int position = o * inner + j;
        const bool counts = target_counts(label[position], has_ignore, ignore_label);
        const int lab = row_label(label, position, channels);
        float grad = 0.0f;
        if (counts && lab < 0) grad = NAN;
        else if (counts) grad = (prob[i] * sums[lab] - h[(size_t)lab * channels + c]) * scale;
        dx[i] = accumulate ? dx[i] + grad : grad;
    }
}

// One thread per pair `row` of (rows, channels) features: delta = a - b, dist_sq = |delta|^2 and
// the pair's term: dist_sq for a similar pair (int(y) != 0), else max(margin - d, 0)^2 with
// d = sqrt(dist_sq), or max(margin - dist_sq, 0) with ``legacy``.
extern "C" __global__ void contrastive_loss_forward(int rows, const float* a, const float* b,
                                                    const float* y, float* delta,
                                                    float* dist_sq, float* loss, int channels,
                                                    float margin, int legacy) {
    CUDA_KERNEL_LOOP(row, rows) {
        const size_t base = (size_t)row * channels;
        float sum = 0.0f;
        for (int c = 0; c < channels; ++c) {
            const float d = a[base + c] - b[base + c];
            delta[base + c] = d;
            sum += d * d;
        }
        dist_sq[row] = sum;
        float term = sum;
        if ((int)y[row] == 0) {
            const float gap = legacy ? margin - sum : margin - sqrtf(sum);
            term = legacy ? fmaxf(gap, 0.0f) : fmaxf(gap, 0.0f) * fmaxf(gap, 0.0f);
        }
        loss[row] = term;
    }
}

// dx = alpha w k_row delta, alpha = +1/N for a and -1/N for b, with k = 1 for a similar pair;
// for a dissimilar one -(margin - d) / (d + 1e-4) where margin > d (Caffe's guard against
// d = 0), or -1 where margin > dist_sq with ``legacy``; 0 otherwise.
extern "C" __global__ void contrastive_loss_backward(int n, const float* delta,
                                                     const float* dist_sq, const float* y,
                                                     const float* top_diff, float* dx,
                                                     int channels, float margin, int legacy,
                                                     float alpha) {
    const float scale = alpha * top_diff[0];
    CUDA_KERNEL_LOOP(i, n) {
        const int row = i / channels;
        float k = 1.0f;
        if ((int)y[row] == 0) {
            if (legacy) {
                k = margin - dist_sq[row] > 0.0f ? -1.0f : 0.0f;
            } else {
                const float d = sqrtf(dist_sq[row]);
                const float gap = margin - d;
                k = gap > 0.0f ? -gap / (d + 1e-4f) : 0.0f;
            }
        }
        dx[i] = scale * k * delta[i];
    }
}
