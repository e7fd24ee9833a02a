// Per-channel block reductions shared by the normalization, scale and reduction families
// (batch_norm.cu, scale.cu, reduction.cu).
//
// A blob is viewed as (outer, channels, inner) around one axis, as Caffe's BatchNorm, Scale and
// Reduction layers see it; channel c owns the outer * inner elements x[o, c, i]. One block
// reduces one channel: the order of additions depends only on the thread indices and the sizes,
// so every statistic is bit-reproducible (no atomics).
#pragma once

#include "common.cuh"

// Offset of the j-th element (0 <= j < outer * inner, o-major) of channel c.
__device__ __forceinline__ size_t channel_offset(int c, int j, int channels, int inner) {
  const int o = j / inner, i = j - o * inner;
  return ((size_t)o * channels + c) * inner + i;
}

// Sum of term(k) over the offsets k of channel c, by the whole block (blockDim.x a multiple of
// 32), returned to every thread. Every thread of the block must call it (it holds barriers),
// and its last barrier orders every thread's reads before any write the caller makes after it,
// which is what lets the callers write their results in place.
template <typename Term>
__device__ float channel_sum(int outer, int channels, int inner, int c, Term term,
                             float* scratch) {
  const int count = outer * inner;
  float sum = 0.0f;
  for (int j = threadIdx.x; j < count; j += blockDim.x)
    sum += term(channel_offset(c, j, channels, inner));
  return block_reduce_sum(sum, scratch);
}
