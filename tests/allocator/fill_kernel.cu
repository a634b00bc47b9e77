#include "fill_kernel.hpp"

namespace {
__global__ void fill_pattern(uint32_t* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x)
    p[i] = uint32_t(i) * 2654435761u + seed;
}
}  // namespace

void launch_fill_pattern(uint32_t* p, size_t n, uint32_t seed, cudaStream_t stream) {
  fill_pattern<<<1024, 256, 0, stream>>>(p, n, seed);
}
