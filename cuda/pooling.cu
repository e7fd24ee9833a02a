// Pooling (confnet/layers/pooling.py), Caffe's kernels: one thread per output element forward,
// one thread per input element backward. Backward gathers from the windows that cover its cell
// instead of scattering into them, so it needs no atomics and is deterministic.
//
// Geometry, as the layer computes it (ceil or floor rounding already applied to pooled_h/w):
// window (ph, pw) covers rows [ph * stride_h - pad_h, + kernel_h) and columns likewise.
// Tensors are (num, channels, height, width) and (num, channels, pooled_h, pooled_w).

#include "common.cuh"

// MAX: the first maximum in row-major window order wins (as Caffe and the CPU path); padding
// never wins. ``argmax`` gets h * width + w of the winner within its channel, for backward;
// ``top_mask`` (null unless the layer has a second top) the same index as a float.
extern "C" __global__ void pooling_forward_max(
        int n, const float* x, int height, int width, int pooled_h, int pooled_w,
        int kernel_h, int kernel_w, int stride_h, int stride_w, int pad_h, int pad_w,
        float* y, int* argmax, float* top_mask) {
    CUDA_KERNEL_LOOP(i, n) {
        const int pw = i % pooled_w, ph = (i / pooled_w) % pooled_h;
        const int plane = i / (pooled_w * pooled_h);   // image * channels + channel
        const int hstart = max(ph * stride_h - pad_h, 0);
        const int wstart = max(pw * stride_w - pad_w, 0);
        const int hend = min(ph * stride_h - pad_h + kernel_h, height);
        const int wend = min(pw * stride_w - pad_w + kernel_w, width);
        const float* xp = x + (size_t)plane * height * width;
        float best = 0.0f;     // replaced by the first cell: best_index < 0
        int best_index = -1;
        for (int h = hstart; h < hend; ++h)
            for (int w = wstart; w < wend; ++w)
                if (xp[h * width + w] > best || best_index < 0) {
                    best = xp[h * width + w];
                    best_index = h * width + w;
                }
        y[i] = best;
        argmax[i] = best_index;
        if (top_mask) top_mask[i] = (float)best_index;
    }
}

// AVE: the sum of the window's cells inside the input divided by Caffe's pool_size, which counts
// the padding but not the overhang past it (hend is clipped to height + pad_h first).
extern "C" __global__ void pooling_forward_ave(
        int n, const float* x, int height, int width, int pooled_h, int pooled_w,
        int kernel_h, int kernel_w, int stride_h, int stride_w, int pad_h, int pad_w, float* y) {
    CUDA_KERNEL_LOOP(i, n) {
        const int pw = i % pooled_w, ph = (i / pooled_w) % pooled_h;
        const int plane = i / (pooled_w * pooled_h);
        int hstart = ph * stride_h - pad_h, wstart = pw * stride_w - pad_w;
        int hend = min(hstart + kernel_h, height + pad_h);
        int wend = min(wstart + kernel_w, width + pad_w);
        const float pool_size = (float)((hend - hstart) * (wend - wstart));
        hstart = max(hstart, 0);
        wstart = max(wstart, 0);
        hend = min(hend, height);
        wend = min(wend, width);
        const float* xp = x + (size_t)plane * height * width;
        float sum = 0.0f;
        for (int h = hstart; h < hend; ++h)
            for (int w = wstart; w < wend; ++w) sum += xp[h * width + w];
        y[i] = sum / pool_size;
    }
}

// The windows covering input row h (unpadded): ph in [first, last).
__device__ inline int first_window(int h, int kernel, int stride, int pad) {
    return h + pad < kernel ? 0 : (h + pad - kernel) / stride + 1;
}

__device__ inline int last_window(int h, int stride, int pad, int pooled) {
    return min((h + pad) / stride + 1, pooled);
}

// dx at cell (h, w) = sum of dy over the windows that cover it and chose it as their maximum.
extern "C" __global__ void pooling_backward_max(
        int n, const float* dy, const int* argmax, int height, int width,
        int pooled_h, int pooled_w, int kernel_h, int kernel_w, int stride_h, int stride_w,
        int pad_h, int pad_w, float* dx) {
    CUDA_KERNEL_LOOP(i, n) {
        const int w = i % width, h = (i / width) % height;
        const int plane = i / (width * height);
        const int ph0 = first_window(h, kernel_h, stride_h, pad_h);
        const int ph1 = last_window(h, stride_h, pad_h, pooled_h);
        const int pw0 = first_window(w, kernel_w, stride_w, pad_w);
        const int pw1 = last_window(w, stride_w, pad_w, pooled_w);
        const size_t offset = (size_t)plane * pooled_h * pooled_w;
        const float* dyp = dy + offset;
        const int* arg = argmax + offset;
        const int cell = h * width + w;
        float grad = 0.0f;
        for (int ph = ph0; ph < ph1; ++ph)
            for (int pw = pw0; pw < pw1; ++pw)
                if (arg[ph * pooled_w + pw] == cell) grad += dyp[ph * pooled_w + pw];
        dx[i] = grad;
    }
}

// dx at cell (h, w) = sum over the windows covering it of dy / pool_size.
extern "C" __global__ void pooling_backward_ave(
        int n, const float* dy, int height, int width, int pooled_h, int pooled_w,
        int kernel_h, int kernel_w, int stride_h, int stride_w, int pad_h, int pad_w, float* dx) {
    CUDA_KERNEL_LOOP(i, n) {
        const int w = i % width, h = (i / width) % height;
        const int plane = i / (width * height);
        const int ph0 = first_window(h, kernel_h, stride_h, pad_h);
        const int ph1 = last_window(h, stride_h, pad_h, pooled_h);
        const int pw0 = first_window(w, kernel_w, stride_w, pad_w);
        const int pw1 = last_window(w, stride_w, pad_w, pooled_w);
        const float* dyp = dy + (size_t)plane * pooled_h * pooled_w;
        float grad = 0.0f;
        for (int ph = ph0; ph < ph1; ++ph) {
            const int hstart = ph * stride_h - pad_h;
            const int rows = min(hstart + kernel_h, height + pad_h) - hstart;
            for (int pw = pw0; pw < pw1; ++pw) {
                const int wstart = pw * stride_w - pad_w;
                const int cols = min(wstart + kernel_w, width + pad_w) - wstart;
                grad += dyp[ph * pooled_w + pw] / (float)(rows * cols);
            }
        }
        dx[i] = grad;
    }
}

// SPP (confnet/layers/spp.py) pools each pyramid level with the kernels above into its own blob,
// (num, cols) per level, and lays the levels side by side in its top, (num, total): level l
// fills columns [offset, offset + cols) of every row. These two copy a level in and out of its
// band, one thread per level element (both are gathers: every written element reads one value).
extern "C" __global__ void spp_forward(int n, const float* level, int cols, int total,
                                       int offset, float* y) {
  CUDA_KERNEL_LOOP(i, n) {  // n = num * cols
    y[(size_t)(i / cols) * total + offset + i % cols] = level[i];
  }
}

extern "C" __global__ void spp_backward(int n, const float* dy, int cols, int total, int offset,
                                        float* level_diff) {
  CUDA_KERNEL_LOOP(i, n) {
    level_diff[i] = dy[(size_t)(i / cols) * total + offset + i % cols];
  }
}
