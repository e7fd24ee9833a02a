// LRN (confnet/layers/lrn.py), both regions with one set of kernels: the window is a box over
// (channel, row, column) with half-widths (half_c, half_s, half_s), clipped to the blob, so
//
//   ACROSS_CHANNELS: half_c = (local_size - 1) / 2, half_s = 0   (local_size channels, one pixel)
//   WITHIN_CHANNEL:  half_c = 0, half_s = (local_size - 1) / 2   (local_size^2 pixels, one channel)
//
// and B(a) below is the sum of a over the box of a cell (cells outside the blob count as 0), the
// CPU path's window_sum. Forward: scale = k + coeff B(x^2), y = x scale^-beta. Backward:
// dx = dy scale^-beta - 2 beta coeff x B(dy y / scale). Every kernel is a gather over the box
// (one thread per cell), so there are no atomics; the box sums and the elementwise steps are
// separate launches, so an in-place layer (y and x, dx and dy the same memory) never reads a
// neighbour another thread has already overwritten. Blobs are (num, channels, height, width).

#include "common.cuh"

// The sum of a (of a^2 when kSquares) over the box of cell `index` (see above).
template <bool kSquares>
__device__ __forceinline__ float lrn_box_sum(const float* a, int index, int channels, int height,
                                             int width, int half_c, int half_s) {
  const int w = index % width;
  const int h = (index / width) % height;
  const int c = (index / (width * height)) % channels;
  const int plane = height * width;
  const float* image = a + (size_t)(index / (plane * channels)) * channels * plane;
  const int c0 = max(c - half_c, 0), c1 = min(c + half_c, channels - 1);
  const int h0 = max(h - half_s, 0), h1 = min(h + half_s, height - 1);
  const int w0 = max(w - half_s, 0), w1 = min(w + half_s, width - 1);
  float sum = 0.0f;
  for (int cc = c0; cc <= c1; ++cc)
    for (int hh = h0; hh <= h1; ++hh)
      for (int ww = w0; ww <= w1; ++ww) {
        const float v = image[(size_t)cc * plane + hh * width + ww];
        sum += kSquares ? v * v : v;
      }
  return sum;
}

// scale = k + coeff B(x^2).
extern "C" __global__ void lrn_forward_scale(int n, const float* x, int channels, int height,
                                             int width, int half_c, int half_s, float k,
                                             float coeff, float* scale) {
  CUDA_KERNEL_LOOP(i, n) {
    scale[i] = k + coeff * lrn_box_sum<true>(x, i, channels, height, width, half_c, half_s);
  }
}

// y = x scale^-beta (elementwise: y may be x).
extern "C" __global__ void lrn_forward(int n, const float* x, const float* scale, float beta,
                                       float* y) {
  CUDA_KERNEL_LOOP(i, n) y[i] = x[i] * powf(scale[i], -beta);
}

// ratio = dy y / scale, the term backward's box sums read.
extern "C" __global__ void lrn_backward_ratio(int n, const float* dy, const float* y,
                                              const float* scale, float* ratio) {
  CUDA_KERNEL_LOOP(i, n) ratio[i] = dy[i] * y[i] / scale[i];
}

// dx = dy scale^-beta - (2 beta coeff) x B(ratio); `factor` = 2 beta coeff. dy is read at the
// cell itself only, so dx may be dy.
extern "C" __global__ void lrn_backward(int n, const float* x, const float* dy,
                                        const float* scale, const float* ratio, int channels,
                                        int height, int width, int half_c, int half_s,
                                        float beta, float factor, float* dx) {
  CUDA_KERNEL_LOOP(i, n) {
    const float box = lrn_box_sum<false>(ratio, i, channels, height, width, half_c, half_s);
    dx[i] = dy[i] * powf(scale[i], -beta) - factor * x[i] * box;
  }
}
