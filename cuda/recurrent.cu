// The recurrent family (confnet/layers/recurrent.py, rnn.py, lstm.py, lstm_unit.py): the
// elementwise parts of a time step. The matrix products (W x, W_h h, their gradients) run on
// cuda/gemm.cu through confnet/gpu/blas.py; the layers loop over the time steps on the host,
// launching these kernels in between. One logical thread per element (grid-stride loops).
#include "common.cuh"

// y[n, j] = cont[n] * x[n, j] over (N, H): the state a step sees (cont = 0 at the first step of a
// sequence cuts the recurrence). y may be x.
extern "C" __global__ void recurrent_mask(int n, const float* cont, const float* x, float* y,
                                          int hidden) {
    CUDA_KERNEL_LOOP(i, n) y[i] = cont[i / hidden] * x[i];
}

// y = tanh(x) (the RNN's state and output activations). y may be x.
extern "C" __global__ void rnn_forward(int n, const float* x, float* y) {
    CUDA_KERNEL_LOOP(i, n) y[i] = tanhf(x[i]);
}

// dx = (dy + dy2) (1 - y^2), the gradient through y = tanh(x); dy2 may be null (nothing added).
// dx may be dy.
extern "C" __global__ void rnn_backward(int n, const float* y, const float* dy, const float* dy2,
                                        float* dx) {
    CUDA_KERNEL_LOOP(i, n) {
        const float g = dy2 ? dy[i] + dy2[i] : dy[i];
        dx[i] = g * (1.0f - y[i] * y[i]);
    }
}

// sigmoid as 0.5 tanh(x / 2) + 0.5, the CPU path's form (no overflow for large |x|).
__device__ inline float lstm_sigmoid(float x) { return 0.5f * tanhf(0.5f * x) + 0.5f; }

// One LSTM step over (N, D) cells, n = N * D; gate inputs a (N, 4D) in Caffe's order i, f, o, g:
//     i, f, o = sigmoid(a_i, a_f, a_o);  g = tanh(a_g)
//     c = cont * f * c_prev + i * g;     h = o * tanh(c)
// acts (N, 4D) receives the activated gates; it may be a (each thread reads its four gate inputs
// before writing them).
extern "C" __global__ void lstm_unit_forward(int n, const float* c_prev, const float* a,
                                             const float* cont, float* acts, float* c, float* h,
                                             int dim) {
    CUDA_KERNEL_LOOP(k, n) {
        const int row = k / dim, j = k % dim;
        const size_t base = (size_t)row * 4 * dim + j;
        const float i = lstm_sigmoid(a[base]);
        const float f = lstm_sigmoid(a[base + dim]);
        const float o = lstm_sigmoid(a[base + 2 * dim]);
        const float g = tanhf(a[base + 3 * dim]);
        acts[base] = i;
        acts[base + dim] = f;
        acts[base + 2 * dim] = o;
        acts[base + 3 * dim] = g;
        const float cell = cont[row] * f * c_prev[k] + i * g;
        c[k] = cell;
        h[k] = o * tanhf(cell);
    }
}

// Backward of lstm_unit_forward from dc and dh = dh_a + dh_b (dh_b may be null):
//     dc~ = dc + dh o (1 - tanh(c)^2);   dc_prev = dc~ cont f
//     da_i = dc~ g i (1 - i)    da_f = dc~ cont c_prev f (1 - f)
//     da_o = dh tanh(c) o (1 - o)    da_g = dc~ i (1 - g^2)
// dc_prev or da may be null (not wanted); dc_prev may be dc (each thread reads its dc first).
extern "C" __global__ void lstm_unit_backward(int n, const float* c_prev, const float* acts,
                                              const float* c, const float* cont, const float* dc,
                                              const float* dh_a, const float* dh_b,
                                              float* dc_prev, float* da, int dim) {
    CUDA_KERNEL_LOOP(k, n) {
        const int row = k / dim, j = k % dim;
        const size_t base = (size_t)row * 4 * dim + j;
        const float i = acts[base], f = acts[base + dim], o = acts[base + 2 * dim],
                    g = acts[base + 3 * dim];
        const float dh = dh_b ? dh_a[k] + dh_b[k] : dh_a[k];
        const float tanh_c = tanhf(c[k]);
        const float dcell = dc[k] + dh * o * (1.0f - tanh_c * tanh_c);
        if (da) {
            da[base] = dcell * g * i * (1.0f - i);
            da[base + dim] = dcell * cont[row] * c_prev[k] * f * (1.0f - f);
            da[base + 2 * dim] = dh * tanh_c * o * (1.0f - o);
            da[base + 3 * dim] = dcell * i * (1.0f - g * g);
        }
        if (dc_prev) dc_prev[k] = dcell * cont[row] * f;
    }
}
