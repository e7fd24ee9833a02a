// The SGD update (confnet/solver/sgd.py), one fused pass per parameter blob, in Caffe's order:
//
//     g = diff * diff_scale                    (1 / iter_size: the mean of the accumulated passes)
//     g += decay * data  (L2)  or  decay * sign(data)  (L1)     decay = weight_decay * decay_mult
//     v = momentum * v + rate * g               rate = lr * lr_mult
//     diff = v;  data -= v
//
// diff keeps the step, as Caffe's (and the CPU path's) Update leaves it.
#include "common.cuh"

extern "C" __global__ void sgd_update(int n, float* data, float* diff, float* history,
                                      float momentum, float rate, float decay, int l1,
                                      float diff_scale) {
    CUDA_KERNEL_LOOP(i, n) {
        const float w = data[i];
        float g = diff[i] * diff_scale;
        if (decay != 0.0f)   // skipped, as on the CPU, so an inf weight without decay stays finite
            g += decay * (l1 ? (float)((w > 0.0f) - (w < 0.0f)) : w);
        const float v = momentum * history[i] + rate * g;
        history[i] = v;
        diff[i] = v;
        data[i] = w - v;
    }
}
