// im2col / col2im for the Convolution family (Convolution, Deconvolution, Im2col), 2-D.
//
// For a chunk of `num` images x (num, C, H, W), padding (pad_h, pad_w), stride, dilation and a
// kh x kw kernel, the output is OH x OW with OH = (H + 2 pad_h - (dil_h (kh - 1) + 1)) / stride_h
// + 1 (same for W), P = OH * OW, and the column buffer is the same layout the CPU path uses
// (confnet/layers/im2col.py), so one layer-owned blob serves both:
//
//   col[(c * kh + i) * kw + j][b * P + oh * OW + ow] = xpad[b, c, oh * stride_h + i * dil_h,
//                                                                 ow * stride_w + j * dil_w]
//
// a (C kh kw) x (num P) matrix: rows in the order of a flattened (M, C, kh, kw) weight blob,
// columns image-major. Convolution is then W (M, C kh kw) @ col, batched over the images.
// col2im is the adjoint: every x cell sums the column entries that were read from it; it is
// computed per x cell (a gather over the kernel offsets that reach it), so there are no atomics
// and the order of additions is fixed.
#include "common.cuh"

// The kernel_h x kernel_w window whose top-left tap is (h0, w0) of a height x width image, written
// to out one tap every `step` floats (taps outside the image are the zero padding). Shared by
// convolution_im2col and im2col_forward, which differ only in the column layout (the step).
__device__ __forceinline__ void write_window(const float* image, int height, int width, int h0,
                                             int w0, int kernel_h, int kernel_w, int dil_h,
                                             int dil_w, float* out, int step) {
  for (int i = 0; i < kernel_h; ++i) {
    const int h = h0 + i * dil_h;
    for (int j = 0; j < kernel_w; ++j) {
      const int w = w0 + j * dil_w;
      *out = (h >= 0 && h < height && w >= 0 && w < width) ? image[h * width + w] : 0.0f;
      out += step;
    }
  }
}

// The adjoint for one padded input cell (hp, wp) = (h + pad_h, w + pad_w): the sum of the column
// entries that read it. Tap (i, j) reaches output (oh, ow) = ((hp - i dil_h) / stride_h,
// (wp - j dil_w) / stride_w) when both divisions are exact and inside the output; row (i kw + j)
// of `rows` starts every `step` floats. Taps are added in a fixed order: no atomics.
__device__ __forceinline__ float sum_window(const float* rows, int step, int hp, int wp,
                                            int kernel_h, int kernel_w, int stride_h,
                                            int stride_w, int dil_h, int dil_w, int out_h,
                                            int out_w) {
  float sum = 0.0f;
  for (int i = 0; i < kernel_h; ++i) {
    const int hs = hp - i * dil_h;
    if (hs < 0 || hs % stride_h != 0 || hs / stride_h >= out_h) continue;
    const int oh = hs / stride_h;
    for (int j = 0; j < kernel_w; ++j) {
      const int ws = wp - j * dil_w;
      if (ws < 0 || ws % stride_w != 0 || ws / stride_w >= out_w) continue;
      sum += rows[(size_t)(i * kernel_w + j) * step + oh * out_w + ws / stride_w];
    }
  }
  return sum;
}

// One thread per (c, b, oh, ow): reads the kh x kw window of that output position and writes it
// down the column's rows. Consecutive threads write consecutive columns (coalesced).
extern "C" __global__ void convolution_im2col(int n, const float* x, int num, int channels,
                                              int height, int width, int kernel_h, int kernel_w,
                                              int pad_h, int pad_w, int stride_h, int stride_w,
                                              int dil_h, int dil_w, int out_h, int out_w,
                                              float* col) {
  const int positions = out_h * out_w, cols = num * positions;
  CUDA_KERNEL_LOOP(index, n) {  // n = channels * num * positions
    const int ow = index % out_w;
    const int oh = (index / out_w) % out_h;
    const int b = (index / positions) % num;
    const int c = index / cols;
    const float* image = x + ((size_t)b * channels + c) * height * width;
    float* out = col + (size_t)c * kernel_h * kernel_w * cols + b * positions + oh * out_w + ow;
    write_window(image, height, width, oh * stride_h - pad_h, ow * stride_w - pad_w, kernel_h,
                 kernel_w, dil_h, dil_w, out, cols);
  }
}

// One thread per x cell (b, c, h, w): dx = the sum of col over every (kernel offset, output
// position) that read this cell. An offset i reaches output row oh = (h + pad_h - i dil_h) /
// stride_h when that division is exact and 0 <= oh < out_h. Overwrites x.
extern "C" __global__ void convolution_col2im(int n, const float* col, int num, int channels,
                                              int height, int width, int kernel_h, int kernel_w,
                                              int pad_h, int pad_w, int stride_h, int stride_w,
                                              int dil_h, int dil_w, int out_h, int out_w,
                                              float* x) {
  const int positions = out_h * out_w, cols = num * positions;
  CUDA_KERNEL_LOOP(index, n) {  // n = num * channels * height * width
    const int w = index % width;
    const int h = (index / width) % height;
    const int c = (index / (width * height)) % channels;
    const int b = index / (width * height * channels);
    const float* rows = col + (size_t)c * kernel_h * kernel_w * cols + b * positions;
    x[index] = sum_window(rows, cols, h + pad_h, w + pad_w, kernel_h, kernel_w, stride_h,
                          stride_w, dil_h, dil_w, out_h, out_w);
  }
}

// dy (num, M, P) -> dyt (M, num * P): the output gradient with the images side by side, so that
// the weight gradient over a chunk is one product with k = num * P (and dx's columns come out in
// col's layout).
extern "C" __global__ void convolution_dy_to_rows(int n, const float* dy, int num, int channels,
                                                  int positions, float* dyt) {
  CUDA_KERNEL_LOOP(index, n) {  // index walks dyt: (m, b, p)
    const int p = index % positions;
    const int b = (index / positions) % num;
    const int m = index / (positions * num);
    dyt[index] = dy[((size_t)b * channels + m) * positions + p];
  }
}

// The Im2col layer (confnet/layers/im2col_layer.py): the same windows as convolution_im2col, laid
// out per image as the layer's top (num, C kh kw, OH OW), i.e.
//
//   y[b][(c * kh + i) * kw + j][oh * OW + ow] = xpad[b, c, oh * stride_h + i * dil_h,
//                                                           ow * stride_w + j * dil_w]
//
// One thread per (b, c, oh, ow), writing its window down the rows of its image (consecutive
// threads write consecutive positions of a row).
extern "C" __global__ void im2col_forward(int n, const float* x, int height, int width,
                                          int kernel_h, int kernel_w, int pad_h, int pad_w,
                                          int stride_h, int stride_w, int dil_h, int dil_w,
                                          int out_h, int out_w, float* y) {
  const int positions = out_h * out_w;
  CUDA_KERNEL_LOOP(index, n) {  // n = num * channels * positions
    const int ow = index % out_w;
    const int oh = (index / out_w) % out_h;
    const int plane = index / positions;  // b * channels + c
    const float* image = x + (size_t)plane * height * width;
    float* out = y + (size_t)plane * kernel_h * kernel_w * positions + oh * out_w + ow;
    write_window(image, height, width, oh * stride_h - pad_h, ow * stride_w - pad_w, kernel_h,
                 kernel_w, dil_h, dil_w, out, positions);
  }
}

// Its adjoint, as convolution_col2im: one thread per x cell gathers the entries of dy read from
// it (no atomics, fixed order of additions). Overwrites dx.
extern "C" __global__ void im2col_backward(int n, const float* dy, int height, int width,
                                           int kernel_h, int kernel_w, int pad_h, int pad_w,
                                           int stride_h, int stride_w, int dil_h, int dil_w,
                                           int out_h, int out_w, float* dx) {
  const int positions = out_h * out_w;
  CUDA_KERNEL_LOOP(index, n) {  // n = num * channels * height * width
    const int w = index % width;
    const int h = (index / width) % height;
    const int plane = index / (width * height);  // b * channels + c
    const float* rows = dy + (size_t)plane * kernel_h * kernel_w * positions;
    dx[index] = sum_window(rows, positions, h + pad_h, w + pad_w, kernel_h, kernel_w, stride_h,
                          stride_w, dil_h, dil_w, out_h, out_w);
  }
}
