// CPU memory movement: host and "device" are the same address space.
#include <cstring>

#include "cpu/cpu_ops.hpp"

namespace siesta::kernels::cpu {

void CpuOps::copy_to_device(void* dst, const void* src, size_t bytes) {
  if (bytes) std::memcpy(dst, src, bytes);
}
void CpuOps::copy_to_host(void* dst, const void* src, size_t bytes) {
  if (bytes) std::memcpy(dst, src, bytes);
}
void CpuOps::copy_on_device(void* dst, const void* src, size_t bytes) {
  if (bytes) std::memmove(dst, src, bytes);
}
void CpuOps::fill_zero(void* dst, size_t bytes) {
  if (bytes) std::memset(dst, 0, bytes);
}

void CpuOps::convert(void* dst, DType dst_t, const void* src, DType src_t, int64_t n) {
  auto floating = [](DType t) { return t == DType::F32 || t == DType::BF16 || t == DType::F16; };
  if (!floating(dst_t) || !floating(src_t))
    throw KernelError("convert " + std::string(dtype_name(src_t)) + " -> " +
                      std::string(dtype_name(dst_t)) + ": allowed dtypes are F32, BF16, F16");
  if (n <= 0) return;
  if (dst_t == src_t) {
    std::memmove(dst, src, size_t(n) * dtype_size(dst_t));
    return;
  }
  convert_host(src, src_t, dst, dst_t, size_t(n));
}

}  // namespace siesta::kernels::cpu
