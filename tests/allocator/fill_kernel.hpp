// A kernel the GPU tests capture into a CUDA graph: writes p[i] = i * 2654435761 + seed.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

void launch_fill_pattern(uint32_t* p, size_t n, uint32_t seed, cudaStream_t stream);
inline uint32_t fill_pattern_value(size_t i, uint32_t seed) {
  return uint32_t(i) * 2654435761u + seed;
}
