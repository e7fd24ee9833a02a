// Stand-in for CUDA's <cuda.h> under confnet's emulator: the vocabulary is in cuda_emu.h.
#pragma once
#include "../cuda_emu.h"
