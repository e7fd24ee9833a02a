// Planted bug: an off-by-one bound (`<=` for `<`) lets thread n write y[n], one float past the
// end of the buffer. AddressSanitizer names the write and the emulator adds block and thread.
extern "C" __global__ void scale_off_by_one(int n, float alpha, const float* x, float* y) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i <= n) y[i] = alpha * (i < n ? x[i] : 1.0f);
}
