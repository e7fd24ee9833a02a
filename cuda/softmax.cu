// Softmax and SoftmaxWithLoss (confnet/layers/softmax.py, softmax_loss.py).
//
// A blob is seen as (outer, channels, inner) around the softmax axis, as in Caffe; position
// (o, j) owns the channels x[o, :, j] at stride ``inner``. Two shapes of kernel:
// - ``*_rows`` for inner == 1 (classifier outputs): one warp per row, the channels spread over
//   the lanes (coalesced reads) and combined with warp shuffles;
// - the plain ones for inner > 1: one thread per position, looping over the channels; adjacent
//   threads read adjacent addresses, and there are outer * inner threads to fill the device.
// Every reduction has a fixed order, so results are bit-reproducible.
#include "common.cuh"

// y = exp(x - max) / sum exp(x - max) over the channels of each position. y may be x.
extern "C" __global__ void softmax_forward(int n, const float* x, float* y, int channels,
                                           int inner) {
    CUDA_KERNEL_LOOP(i, n) {
        const size_t base = (size_t)(i / inner) * channels * inner + i % inner;
        float m = x[base];
        for (int c = 1; c < channels; ++c) m = fmaxf(m, x[base + (size_t)c * inner]);
        float sum = 0.0f;
        for (int c = 0; c < channels; ++c) {
            const float e = expf(x[base + (size_t)c * inner] - m);
            y[base + (size_t)c * inner] = e;
            sum += e;
        }
        for (int c = 0; c < channels; ++c) y[base + (size_t)c * inner] /= sum;
    }
}

// The same for inner == 1, a warp per row (blockDim.x a multiple of 32; the loop bound is the
// same for the 32 lanes of a warp, so every lane reaches every shuffle).
extern "C" __global__ void softmax_forward_rows(int rows, const float* x, float* y,
                                                int channels) {
    const int lane = threadIdx.x & 31, warps = blockDim.x >> 5;
    for (int row = blockIdx.x * warps + (threadIdx.x >> 5); row < rows; row += gridDim.x * warps) {
        const float* xr = x + (size_t)row * channels;
        float* yr = y + (size_t)row * channels;
        float m = -INFINITY;
        for (int c = lane; c < channels; c += 32) m = fmaxf(m, xr[c]);
        m = warp_reduce_max(m);
        float sum = 0.0f;
        for (int c = lane; c < channels; c += 32) {
            const float e = expf(xr[c] - m);
            yr[c] = e;
            sum += e;
        }
        sum = warp_reduce_sum(sum);
        for (int c = lane; c < channels; c += 32) yr[c] /= sum;
    }
}

// dx = (dy - sum_c dy * y) * y over the channels of each position. dx may be dy.
extern "C" __global__ void softmax_backward(int n, const float* y, const float* dy, float* dx,
                                            int channels, int inner) {
    CUDA_KERNEL_LOOP(i, n) {
        const size_t base = (size_t)(i / inner) * channels * inner + i % inner;
        float dot = 0.0f;
        for (int c = 0; c < channels; ++c) {
            const size_t k = base + (size_t)c * inner;
            dot += dy[k] * y[k];
        }
        for (int c = 0; c < channels; ++c) {
            const size_t k = base + (size_t)c * inner;
            dx[k] = (dy[k] - dot) * y[k];
        }
    }
}

extern "C" __global__ void softmax_backward_rows(int rows, const float* y, const float* dy,
                                                 float* dx, int channels) {
    const int lane = threadIdx.x & 31, warps = blockDim.x >> 5;
    for (int row = blockIdx.x * warps + (threadIdx.x >> 5); row < rows; row += gridDim.x * warps) {
        const size_t base = (size_t)row * channels;
        float dot = 0.0f;
        for (int c = lane; c < channels; c += 32) dot += dy[base + c] * y[base + c];
        dot = warp_reduce_sum(dot);
        for (int c = lane; c < channels; c += 32) dx[base + c] = (dy[base + c] - dot) * y[base + c];
    }
}

// The label of position i as an int (truncated, as C's cast and the CPU path), and whether it
// counts. A counted label outside 0..channels-1 cannot be reported from the device: it yields
// NaN (the solver stops on a non-finite loss and names the cause).
__device__ inline int read_label(const float* label, int i, int has_ignore, int ignore_label,
                                 bool* counted) {
    const int lab = (int)label[i];
    *counted = !(has_ignore && lab == ignore_label);
    return lab;
}

// Per position: loss[i] = -log(max(p[label], FLT_MIN)) and counted[i] = 1 where the label
// counts, both 0 where it is ignored. n = outer * inner; prob is (outer, channels, inner).
extern "C" __global__ void softmax_loss_forward(int n, const float* prob, const float* label,
                                                float* loss, float* counted, int channels,
                                                int inner, int has_ignore, int ignore_label) {
    CUDA_KERNEL_LOOP(i, n) {
        bool counts;
        const int lab = read_label(label, i, has_ignore, ignore_label, &counts);
        float value = 0.0f;
        if (counts && (lab < 0 || lab >= channels)) {
            value = NAN;
        } else if (counts) {
            const size_t k = ((size_t)(i / inner) * channels + lab) * inner + i % inner;
            value = -logf(fmaxf(prob[k], 1.17549435e-38f));   // FLT_MIN, as Caffe clamps
        }
        loss[i] = value;
        counted[i] = counts ? 1.0f : 0.0f;
    }
}

// One block (blockDim.x a multiple of 32) sums loss[] and counted[] over the n positions:
// top[0] = sum(loss) / normalizer, and norm[0] = the normalizer backward divides by. The
// normalizer is ``fixed`` (FULL, BATCH_SIZE, NONE: known on the host) or, when ``fixed`` <= 0
// (VALID), the number of counted positions; at least 1 either way.
extern "C" __global__ void softmax_loss_reduce(int n, const float* loss, const float* counted,
                                               float* top, float* norm, float fixed) {
    __shared__ float scratch[32];
    float total = 0.0f, count = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        total += loss[i];
        count += counted[i];
    }
    total = block_reduce_sum(total, scratch);
    count = block_reduce_sum(count, scratch);
    if (threadIdx.x == 0) {
        const float normalizer = fmaxf(1.0f, fixed > 0.0f ? fixed : count);
        top[0] = total / normalizer;
        norm[0] = normalizer;
    }
}

// dx = top_diff[0] / norm[0] * (p - onehot(label)) at counted positions, 0 at ignored ones
// (NaN for an out-of-range counted label). n = outer * channels * inner. With ``accumulate``
// the gradient is added to dx (the softmax backward of a probability top wrote it first).
extern "C" __global__ void softmax_loss_backward(int n, const float* prob, const float* label,
                                                 const float* top_diff, const float* norm,
                                                 float* dx, int channels, int inner,
                                                 int has_ignore, int ignore_label,
                                                 int accumulate) {
    const float scale = top_diff[0] / norm[0];
    CUDA_KERNEL_LOOP(i, n) {
        const int j = i % inner, c = (i / inner) % channels, o = i / (inner * channels);
        bool counts;
        const int lab = read_label(label, o * inner + j, has_ignore, ignore_label, &counts);
        float grad = 0.0f;
        if (counts && (lab < 0 || lab >= channels)) grad = NAN;
        else if (counts) grad = (prob[i] - (c == lab ? 1.0f : 0.0f)) * scale;
        dx[i] = accumulate ? dx[i] + grad : grad;
    }
}
