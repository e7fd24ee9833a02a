// The normalization family: BatchNorm and MVN (confnet/layers/batch_norm.py, mvn.py).
//
// Each kernel runs one block per channel (BatchNorm: x viewed as (N, C, spatial)) or per group
// (MVN: x viewed as (groups, dim), i.e. (1, groups, dim)), looping over channels when the grid
// is smaller. The block first reduces its channel's statistics with channel_sum (deterministic
// block reductions), then writes the channel's outputs, so a statistic never crosses blocks and
// no atomics are needed. The formulas are the CPU path's, in the same order of operations.
#include "channels.cuh"

// y = (x - mean_c) / std_c, std_c = sqrt(var_c + eps); y_keep = y (backward needs y after a
// later in-place layer overwrote the top); stdev[c] = std_c. y may be x.
// use_global_stats: mean, var = the running sums times 1 / factor[0] (0 when factor[0] is 0).
// Otherwise mean, var are the batch's biased statistics and the running sums are updated as on
// the CPU: factor = f factor + 1, mean_sum = f mean_sum + mean, var_sum = f var_sum + var unbias
// (f = moving_average_fraction, unbias = m / (m - 1)).
extern "C" __global__ void batch_norm_forward(int outer, int channels, int inner, const float* x,
                                              float* y, float* y_keep, float* mean_sum,
                                              float* var_sum, float* factor, float* stdev,
                                              float eps, float fraction, float unbias,
                                              int use_global_stats) {
  __shared__ float scratch[CONFNET_WARP_SIZE];
  const int count = outer * inner;
  for (int c = blockIdx.x; c < channels; c += gridDim.x) {
    float mean, var;
    if (use_global_stats) {
      const float scale = factor[0] == 0.0f ? 0.0f : 1.0f / factor[0];
      mean = scale * mean_sum[c];
      var = scale * var_sum[c];
    } else {
      mean = channel_sum(outer, channels, inner, c, [&](size_t k) { return x[k]; }, scratch) /
             (float)count;
      var = channel_sum(outer, channels, inner, c, [&](size_t k) {
              const float d = x[k] - mean;
              return d * d;
            }, scratch) / (float)count;
      if (threadIdx.x == 0) {
        mean_sum[c] = mean_sum[c] * fraction + mean;
        var_sum[c] = var_sum[c] * fraction + var * unbias;
        // One block owns the shared scale factor; nothing reads it in this mode.
        if (c == 0) factor[0] = factor[0] * fraction + 1.0f;
      }
    }
    const float s = sqrtf(var + eps);
    if (threadIdx.x == 0) stdev[c] = s;
    for (int j = threadIdx.x; j < count; j += blockDim.x) {
      const size_t k = channel_offset(c, j, channels, inner);
      const float v = (x[k] - mean) / s;
      y[k] = v;
      y_keep[k] = v;
    }
  }
}

// use_global_stats: dx = dy / std_c. Otherwise, with means over the channel's elements,
// dx = (dy - mean(dy) - y mean(dy y)) / std_c. dx may be dy.
extern "C" __global__ void batch_norm_backward(int outer, int channels, int inner,
                                               const float* dy, const float* y,
                                               const float* stdev, float* dx,
                                               int use_global_stats) {
  __shared__ float scratch[CONFNET_WARP_SIZE];
  const int count = outer * inner;
  for (int c = blockIdx.x; c < channels; c += gridDim.x) {
    float mean_dy = 0.0f, mean_dyy = 0.0f;
    if (!use_global_stats) {
      mean_dy = channel_sum(outer, channels, inner, c, [&](size_t k) { return dy[k]; },
                            scratch) / (float)count;
      mean_dyy = channel_sum(outer, channels, inner, c, [&](size_t k) { return dy[k] * y[k]; },
                             scratch) / (float)count;
    }
    const float s = stdev[c];
    for (int j = threadIdx.x; j < count; j += blockDim.x) {
      const size_t k = channel_offset(c, j, channels, inner);
      dx[k] = use_global_stats ? dy[k] / s : (dy[k] - mean_dy - y[k] * mean_dyy) / s;
    }
  }
}

// Per group of dim contiguous elements: y = x - mean; with normalize_variance, y /= std + eps
// (std = sqrt(mean((x - mean)^2)), kept in stdev[g] with y in y_keep for backward). y may be x.
extern "C" __global__ void mvn_forward(int groups, int dim, const float* x, float* y,
                                       float* y_keep, float* stdev, float eps,
                                       int normalize_variance) {
  __shared__ float scratch[CONFNET_WARP_SIZE];
  for (int g = blockIdx.x; g < groups; g += gridDim.x) {
    const float mean = channel_sum(1, groups, dim, g, [&](size_t k) { return x[k]; },
                                   scratch) / (float)dim;
    float d = 1.0f;
    if (normalize_variance) {
      const float s = sqrtf(channel_sum(1, groups, dim, g, [&](size_t k) {
                              const float v = x[k] - mean;
                              return v * v;
                            }, scratch) / (float)dim);
      if (threadIdx.x == 0) stdev[g] = s;
      d = s + eps;
    }
    for (int j = threadIdx.x; j < dim; j += blockDim.x) {
      const size_t k = (size_t)g * dim + j;
      const float v = x[k] - mean;
      if (normalize_variance) {
        y[k] = v / d;
        y_keep[k] = v / d;
      } else {
        y[k] = v;
      }
    }
  }
}

// Per group: dx = dy - mean(dy); with normalize_variance, dx = dx / (std + eps)
// - y mean(dy y) / std (that last term 0 where std is 0). dx may be dy.
extern "C" __global__ void mvn_backward(int groups, int dim, const float* dy, const float* y,
                                        const float* stdev, float* dx, float eps,
                                        int normalize_variance) {
  __shared__ float scratch[CONFNET_WARP_SIZE];
  for (int g = blockIdx.x; g < groups; g += gridDim.x) {
    const float mean_dy = channel_sum(1, groups, dim, g, [&](size_t k) { return dy[k]; },
                                      scratch) / (float)dim;
    float d = 1.0f, coeff = 0.0f;
    if (normalize_variance) {
      const float s = stdev[g];
      const float mean_dyy = channel_sum(1, groups, dim, g, [&](size_t k) {
                               return dy[k] * y[k];
                             }, scratch) / (float)dim;
      d = s + eps;
      coeff = s > 0.0f ? mean_dyy / s : 0.0f;
    }
    for (int j = threadIdx.x; j < dim; j += blockDim.x) {
      const size_t k = (size_t)g * dim + j;
      const float v = dy[k] - mean_dy;
      dx[k] = normalize_variance ? v / d - y[k] * coeff : v;
    }
  }
}
