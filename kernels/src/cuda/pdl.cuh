// Programmatic dependent launch (Hopper): a kernel launched with launch_pdl may start while
// the kernel before it on the stream is still running, so its launch latency and whatever it
// does before pdl_wait() (loading weights, which no kernel of the step writes) overlap its
// predecessor. The rule that keeps this correct: a kernel launched with launch_pdl reads or
// writes nothing a predecessor touches before pdl_wait(), which returns once every
// predecessor grid has finished and its memory is visible. pdl_launch_dependents() lets the
// next kernel start early; calling it first thing is safe because of that rule.
// Stream capture records these launches as programmatic edges, so CUDA graphs keep the overlap.
#pragma once

#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>
#include <utility>

#include "siesta/kernels/error.hpp"

namespace siesta::kernels::cuda {

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

// SIESTA_PDL=0 launches these kernels the ordinary way (pdl_wait is then a no-op): for
// measuring what the overlap is worth, or ruling it out when chasing a problem.
inline bool pdl_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("SIESTA_PDL");
    return !(v && std::strcmp(v, "0") == 0);
  }();
  return on;
}

// SIESTA_STEP_INPUT_PDL=0 launches the two small kernels that start a decode step (its
// metadata, its tokens from the previous draw) the ordinary way while everything else keeps
// PDL: their early launch was worth 8% at batch 64 on an H200 for reasons not yet understood,
// and this compares the two on one binary.
inline bool step_input_pdl_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("SIESTA_STEP_INPUT_PDL");
    return !(v && std::strcmp(v, "0") == 0);
  }();
  return on;
}

// The launch behind the helpers below: PDL where with_pdl (and SIESTA_PDL allows it), and
// cluster_x > 1 also groups the blocks in clusters of cluster_x along x (Hopper thread block
// clusters: co-scheduled, with each other's shared memory and a cluster-wide barrier).
template <class... KernelArgs, class... Args>
void launch_kernel_ex(bool with_pdl, void (*kernel)(KernelArgs...), dim3 grid, dim3 block,
                      size_t smem, cudaStream_t stream, unsigned cluster_x, Args&&... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[2];
  unsigned n = 0;
  if (with_pdl && pdl_enabled()) {
    attr[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[n++].val.programmaticStreamSerializationAllowed = 1;
  }
  if (cluster_x > 1) {
    attr[n].id = cudaLaunchAttributeClusterDimension;
    attr[n++].val.clusterDim = {cluster_x, 1, 1};
  }
  cfg.attrs = attr;
  cfg.numAttrs = n;
  SIESTA_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

template <class... KernelArgs, class... Args>
void launch_pdl_cluster(void (*kernel)(KernelArgs...), dim3 grid, dim3 block, size_t smem,
                        cudaStream_t stream, unsigned cluster_x, Args&&... args) {
  launch_kernel_ex(true, kernel, grid, block, smem, stream, cluster_x,
                   std::forward<Args>(args)...);
}

template <class... KernelArgs, class... Args>
void launch_pdl(void (*kernel)(KernelArgs...), dim3 grid, dim3 block, size_t smem,
                cudaStream_t stream, Args&&... args) {
  launch_kernel_ex(true, kernel, grid, block, smem, stream, 1u, std::forward<Args>(args)...);
}

// PDL only where with_pdl (a Hopper GPU, a shape where it was measured to pay); otherwise the
// ordinary launch, where the kernel's pdl_wait returns at once.
template <class... KernelArgs, class... Args>
void launch_pdl_if(bool with_pdl, void (*kernel)(KernelArgs...), dim3 grid, dim3 block,
                   size_t smem, cudaStream_t stream, Args&&... args) {
  launch_kernel_ex(with_pdl, kernel, grid, block, smem, stream, 1u,
                   std::forward<Args>(args)...);
}

}  // namespace siesta::kernels::cuda
