// Crop (confnet/layers/crop.py): y = x[o_0 : o_0 + d_0, .., o_k : o_k + d_k], any number of axes.
//
// The shapes and offsets travel in a small int array on the device (the layer's geometry blob),
// because the number of axes is not fixed: for every axis a (outermost first), three ints
//
//   geometry[3 a] = x's size, geometry[3 a + 1] = y's size, geometry[3 a + 2] = the offset,
//
// with offset 0 and equal sizes on the axes before the crop axis. Both directions are gathers
// (one thread per written element), so backward needs no zero fill beforehand and no atomics.

#include "common.cuh"

// One thread per y element: walk y's index from the innermost axis out, accumulating the index
// of the x cell it reads.
extern "C" __global__ void crop_forward(int n, const float* x, int axes, const int* geometry,
                                        float* y) {
  CUDA_KERNEL_LOOP(index, n) {  // n = y's count
    int rest = index;
    size_t source = 0, stride = 1;
    for (int a = axes - 1; a >= 0; --a) {
      const int x_size = geometry[3 * a], y_size = geometry[3 * a + 1];
      source += (size_t)(rest % y_size + geometry[3 * a + 2]) * stride;
      rest /= y_size;
      stride *= x_size;
    }
    y[index] = x[source];
  }
}

// One thread per x cell: dx = dy at the cell y read it into, 0 for the cells the crop left out.
extern "C" __global__ void crop_backward(int n, const float* dy, int axes, const int* geometry,
                                         float* dx) {
  CUDA_KERNEL_LOOP(index, n) {  // n = x's count
    int rest = index;
    size_t target = 0, stride = 1;
    bool inside = true;
    for (int a = axes - 1; a >= 0; --a) {
      const int x_size = geometry[3 * a], y_size = geometry[3 * a + 1];
      const int i = rest % x_size - geometry[3 * a + 2];
      inside = inside && i >= 0 && i < y_size;
      target += (size_t)i * stride;
      rest /= x_size;
      stride *= y_size;
    }
    dx[index] = inside ? dy[target] : 0.0f;
  }
}
