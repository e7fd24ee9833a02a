// The Convolution family (Convolution, Deconvolution, Im2col), 2-D: im2col / col2im, and at the
// end the implicit-GEMM kernels that convolve without a column buffer.
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

// -- implicit GEMM (no column buffer) -----------------------------------------------------------
// The same products as above, computed without materializing col: each block stages tiles of the
// two operands in shared memory and gathers the column operand's tile straight from x (or dy),
// with the zero padding, stride, dilation and groups applied while it loads. Three kernels, one
// per product of a training step (group g = blockIdx.z; C/G = cg input and M/G = mg output
// channels a group, K = kh kw taps, P = OH OW output positions, HW = H W input positions):
//
//   forward      y[b, g mg + m, p]  = sum_{c, k} W[g mg + m, c, k] xpad[b, g cg + c, win(p, k)]
//                                     (+ bias[m], then max(., 0) when `relu`)
//                M = mg, N = num P, depth = cg K         (rows m, columns (b, p), taps (c, k))
//   weight grad  dW[g mg + m, c, k] += sum_{b, p} dy[b, g mg + m, p] xpad[b, g cg + c, win(p, k)]
//                M = mg, N = cg K, depth = num P         (the reduction runs over the batch)
//   data grad    dx[b, g cg + c, h] = sum_{m, k: h = win(p, k)} W[g mg + m, c, k] dy[b, g mg + m, p]
//                M = cg, N = num HW, depth = mg K        (a gather per x cell: no atomics)
//
// with win(p, k) = (oh s_h + i d_h - pad_h, ow s_w + j d_w - pad_w). The data gradient is the
// transposed convolution written as a gather: tap (i, j) reaches x row h from output row
// oh = (h + pad_h - i d_h) / s_h when that division is exact and inside the output; with a stride
// above 1, the inexact (zero) terms are multiplied too, s_h s_w times the work of the product
// (the layer takes the column path for strided data gradients, see convolution.py).
//
// Tiles: 64 x 64 outputs per block of 256 threads (16 x 16), each thread holding 4 x 4 outputs in
// registers, 16 steps of depth per stage: sgemm_v2's shape, so that per stage a thread does 16
// multiply-adds for every 2 shared-memory float4 reads, and the block's 2 x 16 x 68 floats of
// staging (8.5 KiB) leave room for several blocks per SM. The B (gathered) tile is where the
// implicit kernels pay: its index arithmetic replaces the column buffer's write and read. To keep
// divisions out of the per-element path, each thread keeps the column it loads fixed for the
// whole loop (decomposed once), and the decomposition of the block's 16 depth indices of a stage
// into (channel, tap) is computed once per stage by 16 threads into a small shared table, one
// stage ahead (double-buffered, so it costs no extra barrier).
#define IG_BM 64
#define IG_BN 64
#define IG_BK 16
#define IG_TM 4
#define IG_TN 4
#define IG_THREADS 256
// +4 floats a row: rows stay 16-byte aligned for the float4 reads of the multiply loop.
#define IG_PAD 4

// The (channel, tap) of depth index kk = c K + i kw + j as the gathers use it: the channel's offset
// `chan` times `chan_stride`, and the tap's displacement (i d_h, j d_w).
__device__ __forceinline__ void ig_tap(int kk, int taps, int kernel_w, int dil_h, int dil_w,
                                       int chan_stride, int* chan, int* dh, int* dw) {
  const int t = kk % taps;
  *chan = (kk / taps) * chan_stride;
  *dh = (t / kernel_w) * dil_h;
  *dw = (t % kernel_w) * dil_w;
}

extern "C" __global__ void convolution_forward_implicit_v1(
    int num, int channels, int height, int width, int kernel_h, int kernel_w, int pad_h, int pad_w,
    int stride_h, int stride_w, int dil_h, int dil_w, int out_h, int out_w, int outputs,
    int groups, const float* x, const float* weight, const float* bias, int relu, float* y) {
  __shared__ alignas(16) float As[IG_BK][IG_BM + IG_PAD];  // As[p][r] = W_g[m0 + r, p0 + p]
  __shared__ alignas(16) float Bs[IG_BK][IG_BN + IG_PAD];  // Bs[p][s] = col_g[p0 + p, n0 + s]
  __shared__ int tap_chan[2][IG_BK], tap_dh[2][IG_BK], tap_dw[2][IG_BK];
  const int group = blockIdx.z, mg = outputs / groups, cg = channels / groups;
  const int taps = kernel_h * kernel_w, depth = cg * taps, plane = height * width;
  const int positions = out_h * out_w, cols = num * positions;
  const int m0 = blockIdx.y * IG_BM, n0 = blockIdx.x * IG_BN;
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const float* w = weight + (size_t)group * mg * depth;
  // A tile: this thread loads depth index a_k of rows a_row + 16 i (consecutive threads read
  // consecutive weights of a row). B tile: column b_col, depth rows b_row + 4 i; the column (an
  // image and an output position) is the same at every stage, so its window origin is computed
  // here once.
  const int a_k = tid % IG_BK, a_row = tid / IG_BK;
  const int b_col = tid % IG_BN, b_row = tid / IG_BN;
  const bool col_ok = n0 + b_col < cols;
  int h0 = 0, w0 = 0;
  const float* image = x;
  if (col_ok) {
    const int b = (n0 + b_col) / positions, pos = (n0 + b_col) % positions;
    h0 = (pos / out_w) * stride_h - pad_h;
    w0 = (pos % out_w) * stride_w - pad_w;
    image = x + ((size_t)b * channels + group * cg) * plane;
  }
  if (tid < IG_BK)
    ig_tap(tid, taps, kernel_w, dil_h, dil_w, plane, &tap_chan[0][tid], &tap_dh[0][tid],
           &tap_dw[0][tid]);
  __syncthreads();  // the first stage's tap table is complete before anyone gathers with it
  float acc[IG_TM][IG_TN] = {};
  for (int p0 = 0, s = 0; p0 < depth; p0 += IG_BK, s ^= 1) {
#pragma unroll
    for (int i = 0; i < IG_BM / 16; ++i) {
      const int r = a_row + 16 * i;
      As[a_k][r] = (m0 + r < mg && p0 + a_k < depth) ? w[(size_t)(m0 + r) * depth + p0 + a_k]
                                                     : 0.0f;
    }
#pragma unroll
    for (int i = 0; i < IG_BK / 4; ++i) {
      const int p = b_row + 4 * i;
      const int h = h0 + tap_dh[s][p], ww = w0 + tap_dw[s][p];
      const bool inside = col_ok && p0 + p < depth && h >= 0 && h < height && ww >= 0 &&
                          ww < width;
      Bs[p][b_col] = inside ? image[tap_chan[s][p] + h * width + ww] : 0.0f;
    }
    // The next stage's table goes to the other buffer: its last readers finished the previous
    // stage's gather, before that stage's first barrier.
    if (tid < IG_BK)
      ig_tap(p0 + IG_BK + tid, taps, kernel_w, dil_h, dil_w, plane, &tap_chan[s ^ 1][tid],
             &tap_dh[s ^ 1][tid], &tap_dw[s ^ 1][tid]);
    __syncthreads();  // both tiles (and the next table) complete before anyone multiplies
    multiply_4x4<IG_BK, IG_BM + IG_PAD, IG_BN + IG_PAD>(As, Bs, acc, tx, ty);
    __syncthreads();  // everyone done reading the tiles before the next stage overwrites them
  }
#pragma unroll
  for (int j = 0; j < IG_TN; ++j) {
    const int c = n0 + tx * IG_TN + j;
    if (c >= cols) break;
    const int b = c / positions, pos = c % positions;
#pragma unroll
    for (int i = 0; i < IG_TM; ++i) {
      const int m = m0 + ty * IG_TM + i;
      if (m >= mg) break;
      float v = acc[i][j];
      if (bias) v += bias[group * mg + m];
      if (relu) v = v < 0.0f ? 0.0f : v;  // as max(v, 0): NaN stays NaN
      y[((size_t)b * outputs + group * mg + m) * positions + pos] = v;
    }
  }
}

// dW = dY col^T over the reduction range of slice blockIdx.z / groups: columns [slice slice_len,
// min(num P, (slice + 1) slice_len)). With `accumulate` (one slice) it adds into dW (out, laid out
// (M, cg K) like the weight); otherwise it writes its slice's partial sum to out + slice M cg K,
// and convolution_weight_grad_reduce adds the slices in a fixed order (no atomics). Splitting
// the reduction keeps enough blocks in flight when dW has few tiles and the batch many columns.
extern "C" __global__ void convolution_weight_grad_implicit_v1(
    int num, int channels, int height, int width, int kernel_h, int kernel_w, int pad_h, int pad_w,
    int stride_h, int stride_w, int dil_h, int dil_w, int out_h, int out_w, int outputs,
    int groups, int slice_len, const float* x, const float* dy, float* out, int accumulate) {
  __shared__ alignas(16) float As[IG_BK][IG_BM + IG_PAD];  // As[p][r] = dY_g[m0 + r, k0 + p]
  __shared__ alignas(16) float Bs[IG_BK][IG_BN + IG_PAD];  // Bs[p][s] = col_g[n0 + s, k0 + p]
  const int group = blockIdx.z % groups, slice = blockIdx.z / groups;
  const int mg = outputs / groups, cg = channels / groups;
  const int taps = kernel_h * kernel_w, depth = cg * taps, plane = height * width;
  const int positions = out_h * out_w;
  const int begin = slice * slice_len, end = min(num * positions, begin + slice_len);
  const int m0 = blockIdx.y * IG_BM, n0 = blockIdx.x * IG_BN;
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  // Both tiles: this thread loads reduction column k0 + kp (consecutive threads read consecutive
  // output positions), rows kr + 16 i of each operand. Its 4 rows of the column operand are fixed
  // (channel, tap) pairs: decomposed here once.
  const int kp = tid % IG_BK, kr = tid / IG_BK;
  int chan[IG_BN / 16], dh[IG_BN / 16], dw[IG_BN / 16];
#pragma unroll
  for (int i = 0; i < IG_BN / 16; ++i)
    ig_tap(min(n0 + kr + 16 * i, depth - 1), taps, kernel_w, dil_h, dil_w, plane, &chan[i],
           &dh[i], &dw[i]);
  float acc[IG_TM][IG_TN] = {};
  for (int k0 = begin; k0 < end; k0 += IG_BK) {
    const int col = k0 + kp;
    const bool col_ok = col < end;
    const int b = col_ok ? col / positions : 0, pos = col_ok ? col % positions : 0;
    const float* grad = dy + ((size_t)b * outputs + group * mg) * positions + pos;
    const float* image = x + ((size_t)b * channels + group * cg) * plane;
    const int h0 = (pos / out_w) * stride_h - pad_h, w0 = (pos % out_w) * stride_w - pad_w;
#pragma unroll
    for (int i = 0; i < IG_BM / 16; ++i) {
      const int r = kr + 16 * i;
      As[kp][r] = (col_ok && m0 + r < mg) ? grad[(size_t)(m0 + r) * positions] : 0.0f;
    }
#pragma unroll
    for (int i = 0; i < IG_BN / 16; ++i) {
      const int h = h0 + dh[i], ww = w0 + dw[i];
      const bool inside = col_ok && n0 + kr + 16 * i < depth && h >= 0 && h < height &&
                          ww >= 0 && ww < width;
      Bs[kp][kr + 16 * i] = inside ? image[chan[i] + h * width + ww] : 0.0f;
    }
    __syncthreads();  // both tiles complete before anyone multiplies
    multiply_4x4<IG_BK, IG_BM + IG_PAD, IG_BN + IG_PAD>(As, Bs, acc, tx, ty);
    __syncthreads();  // everyone done reading the tiles before the next stage overwrites them
  }
  float* dst = out + (size_t)slice * outputs * depth;
#pragma unroll
  for (int i = 0; i < IG_TM; ++i) {
    const int m = m0 + ty * IG_TM + i;
    if (m >= mg) break;
#pragma unroll
    for (int j = 0; j < IG_TN; ++j) {
      const int kk = n0 + tx * IG_TN + j;
      if (kk >= depth) break;
      float* o = dst + ((size_t)group * mg + m) * depth + kk;
      *o = accumulate ? *o + acc[i][j] : acc[i][j];
    }
  }
}

// dW[i] += sum_s partial[s n + i], the slices in order: the split weight gradient's second pass.
extern "C" __global__ void convolution_weight_grad_reduce(int n, const float* partial,
                                                          int slices, float* dw) {
  CUDA_KERNEL_LOOP(i, n) {
    float sum = 0.0f;
    for (int s = 0; s < slices; ++s) sum += partial[(size_t)s * n + i];
    dw[i] += sum;
  }
}

extern "C" __global__ void convolution_backward_data_implicit_v1(
    int num, int channels, int height, int width, int kernel_h, int kernel_w, int pad_h, int pad_w,
    int stride_h, int stride_w, int dil_h, int dil_w, int out_h, int out_w, int outputs,
    int groups, const float* dy, const float* weight, float* dx) {
  __shared__ alignas(16) float As[IG_BK][IG_BM + IG_PAD];  // As[p][r] = W_g^T[c0 + r, p0 + p]
  __shared__ alignas(16) float Bs[IG_BK][IG_BN + IG_PAD];  // Bs[p][s] = dY taps[p0 + p, n0 + s]
  // Per depth index kk = m K + t of a stage: the weight offset m cg K + t, dy's plane m P, and
  // the tap's displacement.
  __shared__ int tap_w[2][IG_BK], tap_plane[2][IG_BK], tap_dh[2][IG_BK], tap_dw[2][IG_BK];
  const int group = blockIdx.z, mg = outputs / groups, cg = channels / groups;
  const int taps = kernel_h * kernel_w, depth = mg * taps, plane = height * width;
  const int positions = out_h * out_w, cols = num * plane;
  const int c0 = blockIdx.y * IG_BM, n0 = blockIdx.x * IG_BN;
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const float* w = weight + (size_t)group * mg * cg * taps;
  // A tile: depth index a_k of rows (input channels) a_row + 16 i. B tile: column b_col (an image
  // and an x cell, fixed for the loop: its padded coordinates computed once), rows b_row + 4 i.
  const int a_k = tid % IG_BK, a_row = tid / IG_BK;
  const int b_col = tid % IG_BN, b_row = tid / IG_BN;
  const bool col_ok = n0 + b_col < cols;
  int hp = 0, wp = 0;
  const float* grad = dy;
  if (col_ok) {
    const int b = (n0 + b_col) / plane, cell = (n0 + b_col) % plane;
    hp = cell / width + pad_h;
    wp = cell % width + pad_w;
    grad = dy + ((size_t)b * outputs + group * mg) * positions;
  }
  // tap_* for depth index kk, into buffer s (written by thread kk % IG_BK).
  auto table = [&](int kk, int s) {
    const int e = kk % IG_BK, t = kk % taps, m = kk / taps;
    tap_w[s][e] = m * cg * taps + t;
    tap_plane[s][e] = m * positions;
    tap_dh[s][e] = (t / kernel_w) * dil_h;
    tap_dw[s][e] = (t % kernel_w) * dil_w;
  };
  if (tid < IG_BK) table(tid, 0);
  __syncthreads();  // the first stage's tap table is complete before anyone reads it
  float acc[IG_TM][IG_TN] = {};
  for (int p0 = 0, s = 0; p0 < depth; p0 += IG_BK, s ^= 1) {
    const bool k_ok = p0 + a_k < depth;
#pragma unroll
    for (int i = 0; i < IG_BM / 16; ++i) {
      const int r = a_row + 16 * i;
      As[a_k][r] = (k_ok && c0 + r < cg) ? w[(size_t)(c0 + r) * taps + tap_w[s][a_k]] : 0.0f;
    }
#pragma unroll
    for (int i = 0; i < IG_BK / 4; ++i) {
      const int p = b_row + 4 * i;
      const int hs = hp - tap_dh[s][p], ws = wp - tap_dw[s][p];
      const int oh = hs / stride_h, ow = ws / stride_w;
      const bool reaches = col_ok && p0 + p < depth && hs >= 0 && ws >= 0 &&
                           oh * stride_h == hs && ow * stride_w == ws && oh < out_h &&
                           ow < out_w;
      Bs[p][b_col] = reaches ? grad[tap_plane[s][p] + oh * out_w + ow] : 0.0f;
    }
    // The next stage's table goes to the other buffer (see convolution_forward_implicit_v1).
    if (tid < IG_BK) table(p0 + IG_BK + tid, s ^ 1);
    __syncthreads();  // both tiles (and the next table) complete before anyone multiplies
    multiply_4x4<IG_BK, IG_BM + IG_PAD, IG_BN + IG_PAD>(As, Bs, acc, tx, ty);
    __syncthreads();  // everyone done reading the tiles before the next stage overwrites them
  }
#pragma unroll
  for (int j = 0; j < IG_TN; ++j) {
    const int col = n0 + tx * IG_TN + j;
    if (col >= cols) break;
    const int b = col / plane, cell = col % plane;
#pragma unroll
    for (int i = 0; i < IG_TM; ++i) {
      const int c = c0 + ty * IG_TM + i;
      if (c >= cg) break;
      dx[((size_t)b * channels + group * cg + c) * plane + cell] = acc[i][j];
    }
  }
}
