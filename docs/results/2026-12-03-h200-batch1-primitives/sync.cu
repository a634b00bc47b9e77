// Microbenchmark: exchanging a decode activation vector (d = 896 bf16) among every block of a
// persistent kernel (one block per SM), as a megakernel must between two ops:
//   barrier: each block writes its slice, fence + atomic on a counter, one thread spins until
//            every block counted itself, then every block reads the whole vector (L2);
//   tagged:  each 8-byte word carries two bf16 and the exchange's number (NCCL's LL idea);
//            readers spin on the words themselves: no fence, no counter, one round trip.
// With and without a background stream of weights through a TMA ring (HBM busy, as in a
// megakernel that prefetches).
#include <cstdio>
#include "decode_stream.cuh"
using namespace siesta::kernels::cuda;

__device__ unsigned g_count;
__device__ float g_sink;

__device__ __forceinline__ unsigned long long ld_relaxed64(const unsigned long long* p) {
  unsigned long long v;
  asm volatile("ld.relaxed.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void st_relaxed64(unsigned long long* p, unsigned long long v) {
  asm volatile("st.relaxed.gpu.global.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}
__device__ __forceinline__ unsigned ld_acq(const unsigned* p) {
  unsigned v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

template <int MODE>
__global__ void __launch_bounds__(kThreads, 1)
sync_kernel(bf16* vec, unsigned long long* tagged, const bf16* big, size_t big_bytes, int d,
            int iters, volatile int* stop, int inflight, int nx, bool split) {
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ uint64_t full[kMaxSlots];
  __shared__ float red[kConsumerWarps];
  constexpr int kSlots = 5;
  constexpr uint32_t kBytes = 32 * 1024;
  if (threadIdx.x == 0) {
    for (int s = 0; s < kSlots; ++s) mbar_init(&full[s], 1);
    mbar_init_fence();
  }
  __syncthreads();
  if (threadIdx.x / 32 == kConsumerWarps) {  // background: stream `big` through the ring
    const bool bg = inflight > 0 && !(split && int(blockIdx.x) < nx);
    if (!bg || threadIdx.x % 32 != 0) return;
    const size_t per_block = big_bytes / gridDim.x / kBytes * kBytes;
    const char* base = reinterpret_cast<const char*>(big) + per_block * blockIdx.x;
    size_t off = 0;
    int s = 0, par = 0, issued = 0;
    while (!*stop) {
      if (issued >= inflight) mbar_wait(&full[s], par ^ 1);
      mbar_arrive_expect_tx(&full[s], kBytes);
      bulk_load(smem + size_t(s) * kBytes, base + off, kBytes, &full[s]);
      ++issued;
      off += kBytes;
      if (off >= per_block) off = 0;
      if (++s == inflight) s = 0, par ^= 1;
    }
    for (int j = 0; j < inflight && j < issued; ++j) {
      const int cnt = (issued - j + inflight - 1) / inflight;
      mbar_wait(&full[j], unsigned(cnt - 1) & 1u);
    }
    return;
  }
  if (int(blockIdx.x) >= nx) {
    if (blockIdx.x == gridDim.x - 1 && threadIdx.x == 0) {}  // streams only
    return;
  }
  const int words = d / 2;
  const int w0 = int(int64_t(blockIdx.x) * words / nx);
  const int w1 = int(int64_t(blockIdx.x + 1) * words / nx);
  float acc = 0.f;
  for (int it = 0; it < iters; ++it) {
    const float val = float(it & 7);
    if (MODE == 0) {
      for (int w = w0 + threadIdx.x; w < w1; w += kConsumers)
        vec[2 * w] = vec[2 * w + 1] = to_bf(val + float(blockIdx.x & 3));
      consumers_sync();
      if (threadIdx.x == 0) {
        __threadfence();
        atomicAdd(&g_count, 1u);
        const unsigned target = unsigned(nx) * unsigned(it + 1);
        while (ld_acq(&g_count) < target) {
        }
      }
      consumers_sync();
      float part = 0.f;
      for (int c = threadIdx.x; c < d / 8; c += kConsumers) {
        float f[8];
        unpack8(load8_cg(vec + c * 8), f);
        for (int i = 0; i < 8; ++i) part += f[i];
      }
      part = warp_sum(part);
      if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = part;
      consumers_sync();
      acc += red[0];
    } else {
      unsigned long long* buf = tagged + size_t(it & 1) * words;
      const unsigned tag = unsigned(it + 1);
      for (int w = w0 + threadIdx.x; w < w1; w += kConsumers) {
        const bf16 b = to_bf(val + float(blockIdx.x & 3));
        unsigned short u = *reinterpret_cast<const unsigned short*>(&b);
        const unsigned lo = unsigned(u) | (unsigned(u) << 16);
        st_relaxed64(buf + w, (unsigned long long)tag << 32 | lo);
      }
      float part = 0.f;
      for (int w = threadIdx.x; w < words; w += kConsumers) {
        unsigned long long v;
        do v = ld_relaxed64(buf + w); while (unsigned(v >> 32) != tag);
        const unsigned lo = unsigned(v);
        __nv_bfloat162 h2;
        __builtin_memcpy(&h2, &lo, 4);
        const float2 f = __bfloat1622float2(h2);
        part += f.x + f.y;
      }
      part = warp_sum(part);
      if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = part;
      consumers_sync();
      acc += red[0];
    }
  }
  if (threadIdx.x == 0 && acc == 1234.5f) g_sink = acc;
  if (blockIdx.x == 0 && threadIdx.x == 0) *stop = 1;
}

int main() {
  int sms;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  const int d = 896, iters = 2000;
  const size_t big_bytes = size_t(1) << 30;
  bf16 *vec, *big;
  unsigned long long* tagged;
  int* stop;
  cudaMalloc(&vec, d * 2);
  cudaMalloc(&tagged, size_t(d) * 8);
  cudaMalloc(&big, big_bytes);
  cudaMalloc(&stop, 4);
  cudaMemset(big, 0, big_bytes);
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  const size_t smem = 5 * 32 * 1024;
  auto run = [&](auto kernel, const char* name, int inflight, int nx, bool split) {
    cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
    float best = 1e30f;
    for (int rep = 0; rep < 3; ++rep) {
      unsigned zero = 0;
      cudaMemcpyToSymbol(g_count, &zero, 4);
      cudaMemset(tagged, 0, size_t(d) * 8);
      cudaMemset(stop, 0, 4);
      cudaEventRecord(e0);
      kernel<<<sms, kThreads, smem>>>(vec, tagged, big, big_bytes, d, iters, stop, inflight, nx, split);
      cudaEventRecord(e1);
      cudaEventSynchronize(e1);
      float ms;
      cudaEventElapsedTime(&ms, e0, e1);
      best = std::min(best, ms);
    }
    std::printf("  %-40s in flight %3d KiB/SM, %3d blocks exchange%s: %6.3f us  (%s)\n", name, inflight * 32, nx, split ? ", the others stream" : "", best * 1e3 / iters,
                cudaGetErrorString(cudaGetLastError()));
  };
  std::printf("exchange of %d bf16 among %d blocks, %d times\n", d, sms, iters);
  for (int mode = 0; mode < 2; ++mode) {
    auto k = mode == 0 ? sync_kernel<0> : sync_kernel<1>;
    const char* nm = mode == 0 ? "counter barrier + read" : "tagged words";
    run(k, nm, 0, sms, false);
    for (int f : {1, 2, 5}) run(k, nm, f, sms, false);
    run(k, nm, 0, 32, false);
    run(k, nm, 5, 32, true);
    run(k, nm, 5, 32, false);
  }
}
