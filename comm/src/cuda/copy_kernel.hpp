// One launch copies (and casts) every GPU-to-GPU run of a bucket. Each run is described once
// (CopySeg) and cut, on the device, into chunks of at most kChunkBytes; each thread block finds
// its run by binary search and copies one chunk. A bucket of hundreds of small tensors thus
// costs one launch and a few KiB of descriptors, not hundreds of cudaMemcpyAsync calls.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "../staging_copy.hpp"

namespace siesta::comm {

struct CopySeg {
  const void* src;
  void* dst;
  uint64_t n;             // elements
  uint32_t first_chunk;   // chunks of earlier runs in the same launch
  uint32_t chunk_elems;   // elements per chunk for this run's dtypes
  uint8_t src_t, dst_t;   // DType
  uint8_t pad[6];
};
static_assert(sizeof(CopySeg) == 40);

// Plain copies move more per block (fewer blocks, longer unrolled runs); casts, element by
// element, need more blocks to keep the memory system busy.
constexpr uint64_t kChunkBytes = 256 << 10;
constexpr uint64_t kCastChunkBytes = 64 << 10;

struct CopyLaunch {
  size_t first_seg = 0, num_segs = 0;
  uint32_t num_chunks = 0;
};

// Appends the GPU-to-GPU segments of `segs` to `out` as one launch's worth of descriptors.
CopyLaunch append_launch(const std::vector<Segment>& segs, std::vector<CopySeg>& out);
// Runs one launch on `stream`; `segs` is the device copy of the descriptor array.
void launch_copy(const CopySeg* segs, const CopyLaunch& l, cudaStream_t stream);

}  // namespace siesta::comm
