// The data-movement family: Concat, Slice, Tile, Filter, BatchReindex and Embed
// (confnet/layers/concat.py, slice.py, tile.py, filter.py, batch_reindex.py, embed.py).
// They copy or gather; the only sums (Tile's and the gathered rows' backward) run in a fixed
// order, with no atomics, so every result is bit-reproducible.
#include "common.cuh"

// -- Concat, Slice ------------------------------------------------------------------------------
// A joined blob viewed as (outer, joined_size, inner) and one piece of it, (outer, piece_size,
// inner), that starts at `offset` along the middle axis. n = the piece's count;
// piece_block = piece_size * inner, joined_block = joined_size * inner, offset_block =
// offset * inner. to_joined: piece -> joined, else joined -> piece.
__device__ __forceinline__ void copy_piece(int n, const float* src, float* dst, int piece_block,
                                           int joined_block, int offset_block, bool to_joined) {
  CUDA_KERNEL_LOOP(i, n) {
    const int o = i / piece_block, r = i - o * piece_block;
    const size_t j = (size_t)o * joined_block + offset_block + r;
    if (to_joined) dst[j] = src[i];
    else dst[i] = src[j];
  }
}

// Concat forward: bottom x (a piece) into its place in y (joined).
extern "C" __global__ void concat_forward(int n, const float* x, float* y, int piece_block,
                                          int joined_block, int offset_block) {
  copy_piece(n, x, y, piece_block, joined_block, offset_block, true);
}

// Concat backward: dx = dy's part for this bottom.
extern "C" __global__ void concat_backward(int n, const float* dy, float* dx, int piece_block,
                                           int joined_block, int offset_block) {
  copy_piece(n, dy, dx, piece_block, joined_block, offset_block, false);
}

// Slice forward: top y (a piece) from its place in x (joined).
extern "C" __global__ void slice_forward(int n, const float* x, float* y, int piece_block,
                                         int joined_block, int offset_block) {
  copy_piece(n, x, y, piece_block, joined_block, offset_block, false);
}

// Slice backward: dy of one top into its place in dx.
extern "C" __global__ void slice_backward(int n, const float* dy, float* dx, int piece_block,
                                          int joined_block, int offset_block) {
  copy_piece(n, dy, dx, piece_block, joined_block, offset_block, true);
}

// -- Tile ---------------------------------------------------------------------------------------
// y viewed as (outer, tiles, inner) repeats x viewed as (outer, inner). n = y's count.
extern "C" __global__ void tile_forward(int n, const float* x, float* y, int tiles, int inner) {
  CUDA_KERNEL_LOOP(i, n) {
    const int o = i / (tiles * inner), r = i % inner;
    y[i] = x[(size_t)o * inner + r];
  }
}

// dx[o, r] = sum over t of dy[o, t, r], in tile order. n = x's count.
extern "C" __global__ void tile_backward(int n, const float* dy, float* dx, int tiles,
                                         int inner) {
  CUDA_KERNEL_LOOP(i, n) {
    const int o = i / inner, r = i - o * inner;
    const float* src = dy + (size_t)o * tiles * inner + r;
    float sum = 0.0f;
    for (int t = 0; t < tiles; ++t) sum += src[(size_t)t * inner];
    dx[i] = sum;
  }
}

// -- gathers of rows by index (Filter, BatchReindex, Embed) -------------------------------------
// Indices are stored as floats. The row an index names, or -1 when it names none: outside
// [0, rows) (NaN included) or, with `integral`, not a whole number. The CPU path refuses such
// an index with an error; the device cannot report one, so the row it feeds becomes NaN.
__device__ __forceinline__ int row_of(float v, int rows, bool integral) {
  if (!(v >= 0.0f && v < (float)rows)) return -1;
  const int k = (int)v;  // truncates, as the CPU path's cast
  return integral && (float)k != v ? -1 : k;
}

// y[j, :] = x[index[j], :] for rows of `width` values; n = y's count.
__device__ __forceinline__ void gather_rows(int n, const float* x, const float* index, int rows,
                                            int width, float* y, bool integral) {
  CUDA_KERNEL_LOOP(i, n) {
    const int j = i / width;
    const int k = row_of(index[j], rows, integral);
    y[i] = k < 0 ? NAN : x[(size_t)k * width + (i - j * width)];
  }
}

// out[k, :] = (accumulate ? out[k, :] : 0) + sum of src[p, :] over the positions p whose index
// names row k, added one by one in increasing p: the order of the CPU path's np.add.at, so the
// bits match it. One block per row k (looping when the grid is smaller); the block scans the
// indices a chunk of blockDim.x positions at a time, compacts the chunk's matches in order into
// shared memory (a ballot per warp, then the warps' counts), and each thread then adds them to
// its columns. Gathers instead of a scatter: no atomics, deterministic. Work: rows x positions
// index reads plus positions x width additions. blockDim.x: a multiple of 32, at most 1024.
__device__ __forceinline__ void sum_rows_by_index(int rows, int width, int positions,
                                                  const float* index, const float* src,
                                                  float* out, bool accumulate, bool integral) {
  __shared__ int picked[1024];
  __shared__ int warp_count[1024 / CONFNET_WARP_SIZE];
  const int lane = threadIdx.x % CONFNET_WARP_SIZE, warp = threadIdx.x / CONFNET_WARP_SIZE;
  const int warps = blockDim.x / CONFNET_WARP_SIZE;
  for (int k = blockIdx.x; k < rows; k += gridDim.x) {
    float* row = out + (size_t)k * width;
    if (!accumulate)
      for (int c = threadIdx.x; c < width; c += blockDim.x) row[c] = 0.0f;
    for (int p0 = 0; p0 < positions; p0 += blockDim.x) {
      const int p = p0 + threadIdx.x;
      const bool match = p < positions && row_of(index[p], rows, integral) == k;
      const unsigned ballot = __ballot_sync(0xffffffffu, match);
      if (lane == 0) warp_count[warp] = __popc(ballot);
      __syncthreads();  // every warp's count is in before any thread adds them up
      int before = 0, total = 0;
      for (int w = 0; w < warps; ++w) {
        before += w < warp ? warp_count[w] : 0;
        total += warp_count[w];
      }
      if (match) picked[before + __popc(ballot & ((1u << lane) - 1u))] = p;
      __syncthreads();  // the chunk's list is complete before it is read
      // The same thread owns column c at every chunk (and zeroed it above): no barrier needed
      // between the chunks' additions to one column.
      for (int c = threadIdx.x; c < width && total > 0; c += blockDim.x) {
        float sum = row[c];
        for (int m = 0; m < total; ++m) sum += src[(size_t)picked[m] * width + c];
        row[c] = sum;
      }
      __syncthreads();  // the list and counts are read by all before the next chunk rewrites them
    }
  }
}

// Filter forward: y[j] = x[index[j]] (index: the kept items, in order).
extern "C" __global__ void filter_forward(int n, const float* x, const float* index, int rows,
                                          int width, float* y) {
  gather_rows(n, x, index, rows, width, y, true);
}

// Filter backward: dx[index[j]] = dy[j]; the kept items are distinct, so this scatter has no
// collisions (the rows filtered out are zeroed beforehand). n = dy's count.
extern "C" __global__ void filter_backward(int n, const float* dy, const float* index,
                                           int width, float* dx) {
  CUDA_KERNEL_LOOP(i, n) {
    const int j = i / width;
    dx[(size_t)index[j] * width + (i - j * width)] = dy[i];
  }
}

// BatchReindex forward: y[j] = x[index[j]] (the index truncated to an integer).
extern "C" __global__ void batch_reindex_forward(int n, const float* x, const float* index,
                                                 int rows, int width, float* y) {
  gather_rows(n, x, index, rows, width, y, false);
}

// BatchReindex backward: dx[k] = sum of dy[j] over the j with index[j] = k (0 if none).
extern "C" __global__ void batch_reindex_backward(int rows, int width, int positions,
                                                  const float* index, const float* dy,
                                                  float* dx) {
  sum_rows_by_index(rows, width, positions, index, dy, dx, false, false);
}

// Embed forward: y[p] = W[index[p]] (the bias is added by blas.bias_forward).
extern "C" __global__ void embed_forward(int n, const float* weight, const float* index,
                                         int rows, int width, float* y) {
  gather_rows(n, weight, index, rows, width, y, true);
}

// Embed backward: dW[k] += sum of dy[p] over the positions p with index[p] = k.
extern "C" __global__ void embed_backward(int rows, int width, int positions, const float* index,
                                          const float* dy, float* dweight) {
  sum_rows_by_index(rows, width, positions, index, dy, dweight, true, true);
}
