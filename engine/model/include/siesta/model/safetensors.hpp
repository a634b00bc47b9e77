// The safetensors format: an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {..}}, then the data.
// Reading memory-maps the file and validates the whole header before any tensor is used.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "siesta/kernels/tensor.hpp"

namespace siesta::model {

struct SafetensorsEntry {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  const void* data = nullptr;  // inside the mapping
  size_t bytes = 0;
};

class SafetensorsFile {
 public:
  // Throws ModelError naming the file and, where one is at fault, the tensor: header length
  // past the end of the file, invalid JSON, unknown dtype, shape/offset mismatch, offsets out of
  // range or overlapping.
  static SafetensorsFile open(const std::filesystem::path& path);
  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;
  ~SafetensorsFile();

  const std::filesystem::path& path() const { return path_; }
  const std::vector<SafetensorsEntry>& tensors() const { return tensors_; }
  const SafetensorsEntry* find(std::string_view name) const;  // nullptr when absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  SafetensorsFile() = default;
  std::filesystem::path path_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  std::vector<SafetensorsEntry> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Writes host tensors (TensorView::data in host memory) in the given order; the header is
// padded with spaces to a multiple of 8 bytes as the reference implementation does. Written to
// a temporary name and renamed, so a crash never leaves a half-written file under `path`.
void write_safetensors(const std::filesystem::path& path,
                       const std::vector<std::pair<std::string, TensorView>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace siesta::model
