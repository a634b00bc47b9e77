// The manifest the sender broadcasts before any weight bytes: every tensor's name, dtype, shape
// and place in the byte stream, and how that stream is cut into buckets. Receivers check it
// (checksum first, then against their own destinations) before one byte of weights moves.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "siesta/comm/weight_sync.hpp"
#include "staging_copy.hpp"

namespace siesta::comm {

// Tensors start at multiples of this in the stream: aligned vector loads in the copy kernel,
// and (with bucket_bytes a multiple of it) bucket boundaries fall between elements.
constexpr uint64_t kStreamAlign = 256;

struct ManifestEntry {
  std::string name;
  DType dtype = DType::BF16;  // the engine dtype: what the bucket holds
  Shape shape;
  uint64_t offset = 0;        // in the stream
  uint64_t bytes = 0;
};

struct Manifest {
  DType dtype = DType::BF16;
  uint64_t bucket_bytes = 0;
  uint64_t stream_bytes = 0;   // end of the last tensor (with alignment gaps)
  uint64_t payload_bytes = 0;  // sum of the tensors' bytes
  std::vector<ManifestEntry> entries;

  size_t num_buckets() const {
    return bucket_bytes ? size_t((stream_bytes + bucket_bytes - 1) / bucket_bytes) : 0;
  }
  uint64_t bucket_len(size_t k) const {
    uint64_t begin = k * bucket_bytes;
    return std::min(bucket_bytes, stream_bytes - begin);
  }
};

// Lays the sources out in order; throws CommError for a bad name, dtype or bucket size.
Manifest plan_manifest(const std::vector<NamedTensor>& sources, DType engine_dtype,
                       size_t bucket_bytes);
std::vector<std::byte> serialize(const Manifest& m);
// Throws CommError when the bytes are not a well-formed manifest.
Manifest parse_manifest(const std::byte* data, size_t bytes);
uint64_t fnv1a64(const void* data, size_t bytes);

// Empty when `destinations` matches the manifest one for one (names, shapes, dtypes); else a
// description of the first mismatches.
std::string check_destinations(const Manifest& m, const std::vector<NamedTensor>& destinations);
// Destinations (or sources) in manifest order; names must have been checked.
std::vector<const TensorView*> in_manifest_order(const Manifest& m,
                                                 const std::vector<NamedTensor>& tensors);

// The runs of elements of bucket k. Tensor side: `tensors[i]` for entry i. Bucket side: at
// `bucket` (device `bucket_dev`). to_bucket: tensor -> bucket (pack), else bucket -> tensor.
std::vector<Segment> bucket_segments(const Manifest& m, size_t k,
                                     const std::vector<const TensorView*>& tensors,
                                     void* bucket, Device bucket_dev, bool to_bucket);
// Bucket k's runs straight from the sources to the destinations (the one-pass local path).
std::vector<Segment> direct_segments(const Manifest& m, size_t k,
                                     const std::vector<const TensorView*>& sources,
                                     const std::vector<const TensorView*>& destinations);

}  // namespace siesta::comm
