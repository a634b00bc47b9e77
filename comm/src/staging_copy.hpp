// Copies between tensors and staging buckets, with a cast: the host-side (synchronous) half.
// A Segment is one contiguous run of elements; the device pipeline batches GPU-to-GPU segments
// into one kernel launch per bucket (cuda/copy_kernel.cu) and hands the rest to copy_segment.
#pragma once

#include <cstddef>
#include <cstdint>

#include "siesta/kernels/tensor.hpp"

namespace siesta::comm {

struct Segment {
  const void* src = nullptr;
  Device src_dev;
  DType src_t = DType::BF16;
  void* dst = nullptr;
  Device dst_dev;
  DType dst_t = DType::BF16;
  uint64_t n = 0;  // elements
  bool on_gpu() const { return src_dev.is_cuda() && dst_dev.is_cuda(); }
};

// Synchronous, any pair of devices (GPU memory needs a CUDA build; CommError otherwise).
void copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes);
void copy_segment(const Segment& s);

}  // namespace siesta::comm
