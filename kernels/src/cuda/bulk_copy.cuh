// Hopper bulk copies (TMA, cp.async.bulk) from global into shared memory, and the mbarriers
// that say when they landed. One thread can keep tens of KiB in flight without holding a
// register for any of it. A barrier's phase completes when its expected arrivals AND expected
// bytes are in; waits name the parity of the phase they wait for (0, 1, 0, ... per reuse).
// Hopper (sm_90) and newer only; compiled for an older GPU they trap.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace siesta::kernels::cuda {

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void mbar_init(uint64_t* bar, uint32_t arrivals) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_addr(bar)), "r"(arrivals)
               : "memory");
#elif defined(__CUDA_ARCH__)
  __trap();  // pre-Hopper device code: CudaOps never launches these kernels there
#endif
}

// After initialising barriers, before any thread or the copy engine uses them.
__device__ __forceinline__ void mbar_init_fence() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
#elif defined(__CUDA_ARCH__)
  __trap();  // pre-Hopper device code: CudaOps never launches these kernels there
#endif
}

__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_addr(bar)) : "memory");
#elif defined(__CUDA_ARCH__)
  __trap();  // pre-Hopper device code: CudaOps never launches these kernels there
#endif
}

// One arrival that also announces `bytes` more to come from bulk copies.
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(bar)),
               "r"(bytes)
               : "memory");
#elif defined(__CUDA_ARCH__)
  __trap();  // pre-Hopper device code: CudaOps never launches these kernels there
#endif
}

__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile(
      "{\n"
      ".reg .pred done;\n"
      "WAIT:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT;\n"
      "}\n" ::"r"(smem_addr(bar)),
      "r"(parity)
      : "memory");
#elif defined(__CUDA_ARCH__)
  __trap();  // pre-Hopper device code: CudaOps never launches these kernels there
#endif
}

// Copies `bytes` (a multiple of 16; both addresses 16-byte aligned) and counts them on `bar`.
__device__ __forceinline__ void bulk_load(void* dst_smem, const void* src, uint32_t bytes,
                                          uint64_t* bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
          smem_addr(dst_smem)),
      "l"(src), "r"(bytes), "r"(smem_addr(bar))
      : "memory");
#elif defined(__CUDA_ARCH__)
  __trap();  // pre-Hopper device code: CudaOps never launches these kernels there
#endif
}

}  // namespace siesta::kernels::cuda
