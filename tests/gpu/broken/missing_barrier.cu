// Planted bug: each block reverses its slice through shared memory, but the __syncthreads
// between writing the tile and reading another thread's slot is missing. The result depends on
// which threads happen to have written first, so it changes with the emulator's thread order,
// and ThreadSanitizer reports the race.
extern "C" __global__ void reverse_block(int n, const float* x, float* y) {
    __shared__ float tile[64];
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    tile[threadIdx.x] = i < n ? x[i] : 0.0f;
    // __syncthreads();   <- missing
    if (i < n) y[i] = tile[blockDim.x - 1 - threadIdx.x];
}
