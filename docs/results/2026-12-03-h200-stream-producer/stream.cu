// Pure streaming microbenchmark: one producer thread per block issues 1D bulk copies (TMA) of
// `copy` bytes into a ring of `slots` slots; 8 consumer warps wait for each slot and hand it
// back (optionally touching it). Each block reads a contiguous range of a 1 GiB buffer.
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cuda_runtime.h>

__device__ __forceinline__ uint32_t sa(const void* p) { return (uint32_t)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void mbar_init(uint64_t* b, uint32_t n) { asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(sa(b)), "r"(n) : "memory"); }
__device__ __forceinline__ void arrive(uint64_t* b) { asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(sa(b)) : "memory"); }
__device__ __forceinline__ void expect(uint64_t* b, uint32_t bytes) { asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(sa(b)), "r"(bytes) : "memory"); }
__device__ __forceinline__ void wait(uint64_t* b, uint32_t par) {
  asm volatile("{\n.reg .pred p;\nW:\nmbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n@!p bra W;\n}\n" ::"r"(sa(b)), "r"(par) : "memory");
}
__device__ __forceinline__ void bulk(void* dst, const void* src, uint32_t bytes, uint64_t* bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(sa(dst)), "l"(src), "r"(bytes), "r"(sa(bar)) : "memory");
}

// pieces: each slot is filled by `pieces` copies of copy/pieces bytes (to test copy size at a fixed slot size)
__global__ void __launch_bounds__(288) stream(const char* src, size_t per_block, int copy, int pieces, int slots, float* sink) {
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ uint64_t full[16], empty[16];
  if (threadIdx.x == 0) {
    for (int s = 0; s < slots; ++s) mbar_init(&full[s], 1), mbar_init(&empty[s], 8);
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();
  const char* base = src + blockIdx.x * per_block;
  const int items = int(per_block / copy);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (warp == 8) {
    if (lane != 0) return;
    int s = 0, par = 0;
    for (int j = 0; j < items; ++j) {
      if (j >= slots) wait(&empty[s], par ^ 1);
      expect(&full[s], copy);
      const int piece = copy / pieces;
      for (int p = 0; p < pieces; ++p)
        bulk(smem + size_t(s) * copy + p * piece, base + size_t(j) * copy + p * piece, piece, &full[s]);
      if (++s == slots) s = 0, par ^= 1;
    }
    return;
  }
  int s = 0, par = 0;
  float acc = 0.f;
  for (int j = 0; j < items; ++j) {
    wait(&full[s], par);
    acc += reinterpret_cast<const float*>(smem + size_t(s) * copy)[threadIdx.x];
    __syncwarp();
    if (lane == 0) arrive(&empty[s]);
    if (++s == slots) s = 0, par ^= 1;
  }
  if (acc == 12345.f) *sink = acc;
}

int main() {
  int sms = 0; cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  const size_t total = size_t(1) << 30;
  char* buf; cudaMalloc(&buf, total * 2);  // two halves alternate to defeat L2
  cudaMemset(buf, 1, total * 2);
  float* sink; cudaMalloc(&sink, 4);
  char* dst; cudaMalloc(&dst, total);
  cudaEvent_t a, b; cudaEventCreate(&a); cudaEventCreate(&b);
  // copy bandwidth reference
  cudaMemcpy(dst, buf, total, cudaMemcpyDeviceToDevice);
  cudaEventRecord(a); for (int i = 0; i < 5; ++i) cudaMemcpyAsync(dst, buf + (i % 2) * total, total, cudaMemcpyDeviceToDevice); cudaEventRecord(b); cudaEventSynchronize(b);
  float ms; cudaEventElapsedTime(&ms, a, b);
  const double copy_bw = 5.0 * 2 * total / (ms * 1e-3) / 1e9;
  printf("copy (read+write) %.0f GB/s\n", copy_bw);
  cudaFuncSetAttribute(stream, cudaFuncAttributeMaxDynamicSharedMemorySize, 220 * 1024);
  struct Cfg { int copy, pieces, slots, bps; };
  Cfg cfgs[] = {{1792 * 8, 1, 3, 1}, {1792 * 8, 1, 6, 1}, {1792 * 8, 1, 12, 1},
                {1792 * 16, 1, 3, 1}, {1792 * 16, 1, 6, 1}, {1792 * 16, 2, 3, 1}, {1792 * 16, 2, 6, 1},
                {1792 * 32, 1, 3, 1}, {1792 * 32, 4, 3, 1}, {1792 * 64, 1, 1, 1}, {1792 * 64, 1, 2, 1}, {1792 * 64, 8, 2, 1},
                {1792 * 16, 16, 3, 1}, {1792 * 16, 16, 6, 1},
                {1792 * 8, 1, 3, 2}, {1792 * 16, 2, 3, 2}, {1792 * 16, 1, 3, 2}, {1792 * 8, 1, 6, 2}};
  for (Cfg c : cfgs) {
    const size_t smem = size_t(c.copy) * c.slots;
    if (smem > 220 * 1024 || c.slots > 16) continue;
    const int blocks = sms * c.bps;
    size_t per_block = (total / blocks) / c.copy * c.copy;
    float best = 1e9;
    for (int rep = 0; rep < 6; ++rep) {
      cudaEventRecord(a);
      stream<<<blocks, 288, smem>>>(buf + (rep % 2) * total, per_block, c.copy, c.pieces, c.slots, sink);
      cudaEventRecord(b); cudaEventSynchronize(b);
      cudaEventElapsedTime(&ms, a, b);
      if (rep > 0 && ms < best) best = ms;
    }
    const double gbs = double(per_block) * blocks / (best * 1e-3) / 1e9;
    printf("copy %6d B in %2d pieces (%5d B each), %2d slots (%3zu KiB), %d block/SM: %6.0f GB/s = %5.1f%% of copy\n",
           c.copy, c.pieces, c.copy / c.pieces, c.slots, smem / 1024, c.bps, gbs, 100.0 * gbs / copy_bw);
  }
  cudaError_t e = cudaGetLastError(); if (e) printf("error %s\n", cudaGetErrorString(e));
}
