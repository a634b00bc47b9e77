// Host-side segment copies: memcpy or convert_host on the CPU; cudaMemcpy (plus a host cast
// when the dtypes differ) when one side lives on a GPU.
#include "staging_copy.hpp"

#include <cstring>
#include <vector>

#include "siesta/comm/error.hpp"

#ifdef SIESTA_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace siesta::comm {

namespace {
#ifdef SIESTA_WITH_CUDA
void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw CommError(std::string("comm: ") + what + " failed: " + cudaGetErrorString(e));
}
#endif
}  // namespace

void copy_bytes(void* dst, Device dd, const void* src, Device sd, size_t bytes) {
  if (bytes == 0) return;
  if (!dd.is_cuda() && !sd.is_cuda()) {
    std::memcpy(dst, src, bytes);
    return;
  }
#ifdef SIESTA_WITH_CUDA
  // Async on the legacy stream, then waited for: a plain cudaMemcpy from pageable memory may
  // return before the DMA lands, and the pipeline's non-blocking streams would not wait for it.
  cuda_check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, 0), "cudaMemcpyAsync (staging copy)");
  cuda_check(cudaStreamSynchronize(0), "cudaStreamSynchronize (staging copy)");
#else
  throw CommError("comm: a copy involving " + (dd.is_cuda() ? dd : sd).str() +
                  " needs a CUDA build (this one is CPU-only)");
#endif
}

void copy_segment(const Segment& s) {
  size_t sb = s.n * dtype_size(s.src_t), db = s.n * dtype_size(s.dst_t);
  if (s.src_t == s.dst_t) return copy_bytes(s.dst, s.dst_dev, s.src, s.src_dev, sb);
  if (!s.src_dev.is_cuda() && !s.dst_dev.is_cuda())
    return convert_host(s.src, s.src_t, s.dst, s.dst_t, s.n);
  // Cast on the host: bring the source over, convert, send the result where it belongs.
  std::vector<std::byte> in, out(db);
  const void* src = s.src;
  if (s.src_dev.is_cuda()) {
    in.resize(sb);
    copy_bytes(in.data(), Device::cpu(), s.src, s.src_dev, sb);
    src = in.data();
  }
  convert_host(src, s.src_t, out.data(), s.dst_t, s.n);
  copy_bytes(s.dst, s.dst_dev, out.data(), Device::cpu(), db);
}

}  // namespace siesta::comm
