// The batched copy/cast kernel of the device pipeline (see copy_kernel.hpp).
#include "copy_kernel.hpp"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "siesta/comm/error.hpp"

namespace siesta::comm {

namespace {
constexpr int kThreads = 256;

__device__ __forceinline__ float load_as_float(const void* p, uint8_t t, uint64_t i) {
  switch (DType(t)) {
    case DType::F32: return static_cast<const float*>(p)[i];
    case DType::BF16: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    default: return __half2float(static_cast<const __half*>(p)[i]);
  }
}
__device__ __forceinline__ void store_float(void* p, uint8_t t, uint64_t i, float v) {
  switch (DType(t)) {
    case DType::F32: static_cast<float*>(p)[i] = v; break;
    case DType::BF16: static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v); break;
    default: static_cast<__half*>(p)[i] = __float2half_rn(v); break;
  }
}

__device__ __forceinline__ size_t dsize(uint8_t t) { return DType(t) == DType::F32 ? 4 : 2; }

__global__ void __launch_bounds__(kThreads) copy_kernel(const CopySeg* __restrict__ segs,
                                                        uint32_t num_segs) {
  // The run holding this block's chunk: the last with first_chunk <= blockIdx.x.
  uint32_t lo = 0, hi = num_segs;
  while (hi - lo > 1) {
    uint32_t mid = (lo + hi) / 2;
    if (segs[mid].first_chunk <= blockIdx.x) lo = mid; else hi = mid;
  }
  const CopySeg c = segs[lo];
  const uint64_t first = uint64_t(blockIdx.x - c.first_chunk) * c.chunk_elems;
  const uint64_t n = min(uint64_t(c.chunk_elems), c.n - first);
  const size_t ss = dsize(c.src_t), ds = dsize(c.dst_t);
  const char* src = static_cast<const char*>(c.src) + first * ss;
  char* dst = static_cast<char*>(c.dst) + first * ds;

  if (c.src_t == c.dst_t) {
    const size_t bytes = n * ss;
    const bool aligned = ((reinterpret_cast<uintptr_t>(src) | reinterpret_cast<uintptr_t>(dst)) % 16) == 0;
    const size_t vec = aligned ? bytes / 16 : 0;
    const uint4* __restrict__ s4 = reinterpret_cast<const uint4*>(src);
    uint4* __restrict__ d4 = reinterpret_cast<uint4*>(dst);
    size_t i = threadIdx.x;
    // Eight independent 16-byte loads in flight per thread before any store (HBM3e needs
    // that many bytes in flight per SM to approach cudaMemcpy's bandwidth).
    constexpr int kUnroll = 8;
    for (; i + (kUnroll - 1) * kThreads < vec; i += kUnroll * kThreads) {
      uint4 r[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) r[u] = s4[i + u * kThreads];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) d4[i + u * kThreads] = r[u];
    }
    for (; i < vec; i += kThreads) d4[i] = s4[i];
    // The remainder (or everything, when a pointer is not 16-byte aligned), by 2-byte halves.
    const uint16_t* s2 = reinterpret_cast<const uint16_t*>(src);
    uint16_t* d2 = reinterpret_cast<uint16_t*>(dst);
    for (size_t j = vec * 8 + threadIdx.x; j < bytes / 2; j += kThreads) d2[j] = s2[j];
    return;
  }
  for (uint64_t j = threadIdx.x; j < n; j += kThreads)
    store_float(dst, c.dst_t, j, load_as_float(src, c.src_t, j));
}
}  // namespace

CopyLaunch append_launch(const std::vector<Segment>& segs, std::vector<CopySeg>& out) {
  CopyLaunch l;
  l.first_seg = out.size();
  uint64_t chunks = 0;
  for (const auto& s : segs) {
    if (!s.on_gpu() || s.n == 0) continue;
    CopySeg c{};
    c.src = s.src;
    c.dst = s.dst;
    c.n = s.n;
    c.chunk_elems = uint32_t((s.src_t == s.dst_t ? kChunkBytes : kCastChunkBytes) /
                             std::max(dtype_size(s.src_t), dtype_size(s.dst_t)));
    c.first_chunk = uint32_t(chunks);
    c.src_t = uint8_t(s.src_t);
    c.dst_t = uint8_t(s.dst_t);
    chunks += (s.n + c.chunk_elems - 1) / c.chunk_elems;
    if (chunks > 0x7fffffffull) throw CommError("comm: a bucket of more than 2^31 copy chunks");
    out.push_back(c);
  }
  l.num_segs = out.size() - l.first_seg;
  l.num_chunks = uint32_t(chunks);
  return l;
}

void launch_copy(const CopySeg* segs, const CopyLaunch& l, cudaStream_t stream) {
  if (l.num_chunks == 0) return;
  copy_kernel<<<l.num_chunks, kThreads, 0, stream>>>(segs + l.first_seg, uint32_t(l.num_segs));
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    throw CommError(std::string("comm: copy kernel launch failed: ") + cudaGetErrorString(e));
}

}  // namespace siesta::comm
