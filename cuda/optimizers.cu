// The optimizers' updates (confnet/solver/*.py), one fused pass per parameter blob each.
//
// Every kernel does a parameter's whole update in Caffe's (and the CPU path's) order:
//
//     g = diff * diff_scale                     (1 / iter_size: the mean of the accumulated passes)
//     g += decay * data  (L2)  or  decay * sign(data)  (L1)     decay = weight_decay * decay_mult
//     step = <the rule>(g, history)             history updated in place
//     diff = step;  data -= step
//
// The rate (lr * lr_mult, and Adam's bias correction) changes every iteration under most lr
// policies, so it is read from device memory (a slot of the solver's scalar table, uploaded
// before the iteration) rather than passed by value: a CUDA graph replays the arguments it
// captured, and this way a replayed update still uses the current rate. The other scalars are
// fixed for the run.
//
// diff keeps the step, as Caffe's (and the CPU path's) Update leaves it. Scalars that the CPU
// path computes in double on the host (rate = lr * lr_mult, 1 - momentum, ...) are computed there
// and passed in as floats, so each float operation here is the one numpy does in float32, in the
// same order (the emulator builds with -ffp-contract=off; nvcc may contract a * b + c into an
// FMA, which is why the GPU is compared within float32 tolerance).
#include "common.cuh"

// g of element i: the averaged gradient plus weight decay. The decay is skipped when 0, as on the
// CPU, so that an inf weight without decay does not turn the gradient into nan.
__device__ __forceinline__ float decayed_gradient(float w, float d, float decay, int l1,
                                                  float diff_scale) {
  float g = d * diff_scale;
  if (decay != 0.0f) g += decay * (l1 ? (float)((w > 0.0f) - (w < 0.0f)) : w);
  return g;
}

// SGD with momentum: v = momentum * v + r * g; step = v.
extern "C" __global__ void sgd_update(int n, float* data, float* diff, float* history,
                                      float momentum, const float* rate, float decay, int l1,
                                      float diff_scale) {
  const float r = *rate;
  CUDA_KERNEL_LOOP(i, n) {
    const float w = data[i];
    const float g = decayed_gradient(w, diff[i], decay, l1, diff_scale);
    const float v = momentum * history[i] + r * g;
    history[i] = v;
    diff[i] = v;
    data[i] = w - v;
  }
}

// Nesterov (Caffe's form): v' = momentum * v + r * g; step = (1 + momentum) v' - momentum v.
// one_plus_momentum is computed on the host, as numpy does before multiplying.
extern "C" __global__ void nesterov_update(int n, float* data, float* diff, float* history,
                                           float momentum, float one_plus_momentum,
                                           const float* rate,
                                           float decay, int l1, float diff_scale) {
  const float r = *rate;
  CUDA_KERNEL_LOOP(i, n) {
    const float w = data[i];
    const float g = decayed_gradient(w, diff[i], decay, l1, diff_scale);
    const float previous = history[i];
    const float v = momentum * previous + r * g;
    const float step = one_plus_momentum * v - momentum * previous;
    history[i] = v;
    diff[i] = step;
    data[i] = w - step;
  }
}

// AdaGrad: h += g^2; step = r * (g / (sqrt(h) + delta)).
extern "C" __global__ void adagrad_update(int n, float* data, float* diff, float* history,
                                          const float* rate, float delta, float decay,
                                          int l1, float diff_scale) {
  const float r = *rate;
  CUDA_KERNEL_LOOP(i, n) {
    const float w = data[i];
    const float g = decayed_gradient(w, diff[i], decay, l1, diff_scale);
    const float h = history[i] + g * g;
    const float step = r * (g / (sqrtf(h) + delta));
    history[i] = h;
    diff[i] = step;
    data[i] = w - step;
  }
}

// RMSProp: h = rms_decay * h + (1 - rms_decay) * g^2; step = r * (g / (sqrt(h) + delta)).
extern "C" __global__ void rmsprop_update(int n, float* data, float* diff, float* history,
                                          float rms_decay, float one_minus_rms_decay,
                                          const float* rate,
                                          float delta, float decay, int l1, float diff_scale) {
  const float r = *rate;
  CUDA_KERNEL_LOOP(i, n) {
    const float w = data[i];
    const float g = decayed_gradient(w, diff[i], decay, l1, diff_scale);
    const float h = rms_decay * history[i] + one_minus_rms_decay * (g * g);
    const float step = r * (g / (sqrtf(h) + delta));
    history[i] = h;
    diff[i] = step;
    data[i] = w - step;
  }
}

// AdaDelta (Caffe's form): h = momentum h + (1 - momentum) g^2;
// d = g * sqrt((u + delta) / (h + delta)); u = momentum u + (1 - momentum) d^2; step = rate * d.
// gradient_history is h (history[i]), update_history is u (history[N + i]).
extern "C" __global__ void adadelta_update(int n, float* data, float* diff,
                                           float* gradient_history, float* update_history,
                                           float momentum, float one_minus_momentum,
                                           const float* rate,
                                           float delta, float decay, int l1, float diff_scale) {
  const float r = *rate;
  CUDA_KERNEL_LOOP(i, n) {
    const float w = data[i];
    const float g = decayed_gradient(w, diff[i], decay, l1, diff_scale);
    const float h = momentum * gradient_history[i] + one_minus_momentum * (g * g);
    const float u = update_history[i];
    const float d = g * sqrtf((u + delta) / (h + delta));
    const float step = r * d;
    gradient_history[i] = h;
    update_history[i] = momentum * u + one_minus_momentum * (d * d);
    diff[i] = step;
    data[i] = w - step;
  }
}

// Adam: m = beta1 m + (1 - beta1) g; v = beta2 v + (1 - beta2) g^2;
// step = corrected_rate * (m / (sqrt(v) + eps)), corrected_rate = rate * sqrt(1 - beta2^t) /
// (1 - beta1^t) computed on the host in double (it changes with t), read from device memory.
// m is history[i], v is history[N + i].
extern "C" __global__ void adam_update(int n, float* data, float* diff, float* m_history,
                                       float* v_history, float beta1, float one_minus_beta1,
                                       float beta2, float one_minus_beta2,
                                       const float* corrected_rate,
                                       float eps, float decay, int l1, float diff_scale) {
  const float r = *corrected_rate;
  CUDA_KERNEL_LOOP(i, n) {
    const float w = data[i];
    const float g = decayed_gradient(w, diff[i], decay, l1, diff_scale);
    const float m = beta1 * m_history[i] + one_minus_beta1 * g;
    const float v = beta2 * v_history[i] + one_minus_beta2 * (g * g);
    const float step = r * (m / (sqrtf(v) + eps));
    m_history[i] = m;
    v_history[i] = v;
    diff[i] = step;
    data[i] = w - step;
  }
}
