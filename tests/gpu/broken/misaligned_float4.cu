// Planted bug: float4 loads from x + offset, where offset is not a multiple of 4 floats, so the
// 16-byte vector loads are misaligned (a GPU raises "misaligned address"). UBSan's alignment
// check names the load and the emulator adds block and thread.
extern "C" __global__ void copy4_at_offset(int n4, int offset, const float* x, float* y) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n4) {
        float4 v = reinterpret_cast<const float4*>(x + offset)[i];
        reinterpret_cast<float4*>(y)[i] = v;
    }
}
