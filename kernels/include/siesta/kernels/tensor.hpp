// Element types, devices and the non-owning tensor view shared by every layer above kernels/.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace siesta {

enum class DType : uint8_t { F32, BF16, F16, I32, I64 };

constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::BF16: return 2;
    case DType::F16: return 2;
    case DType::I32: return 4;
    case DType::I64: return 8;
  }
  return 0;
}

// Names as safetensors spells them ("F32", "BF16", ...).
std::string_view dtype_name(DType t);
// Throws std::invalid_argument naming the allowed values for an unknown name.
DType dtype_from_name(std::string_view name);

enum class DeviceKind : uint8_t { Cpu, Cuda };

struct Device {
  DeviceKind kind = DeviceKind::Cpu;
  int index = 0;
  static Device cpu() { return {DeviceKind::Cpu, 0}; }
  static Device cuda(int i) { return {DeviceKind::Cuda, i}; }
  bool is_cuda() const { return kind == DeviceKind::Cuda; }
  bool operator==(const Device&) const = default;
  std::string str() const;  // "cpu" or "cuda:0"
};

using Shape = std::vector<int64_t>;

inline int64_t numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}
std::string shape_str(const Shape& s);  // "[2, 3]"

// A view of memory someone else owns (an allocator pool, a mmap'ed file, a host vector).
struct TensorView {
  void* data = nullptr;
  DType dtype = DType::F32;
  Shape shape;
  Device device;

  int64_t numel() const { return siesta::numel(shape); }
  size_t bytes() const { return size_t(numel()) * dtype_size(dtype); }
  template <class T> T* as() const { return static_cast<T*>(data); }
};

// bf16 <-> fp32 on the host (round to nearest even, NaN preserved).
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// Converts n elements between floating dtypes on the host (F32/BF16/F16 in any direction).
void convert_host(const void* src, DType src_t, void* dst, DType dst_t, size_t n);

}  // namespace siesta
