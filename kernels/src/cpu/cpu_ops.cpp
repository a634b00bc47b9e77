// Backend factories: make_cpu_ops, make_ops, and make_cuda_ops for builds without CUDA (the CUDA
// backend in src/cuda/ defines it when SIESTA_WITH_CUDA is set).
#include <string>

#include "cpu/cpu_ops.hpp"

namespace siesta::kernels {

std::unique_ptr<Ops> make_cpu_ops() { return std::make_unique<cpu::CpuOps>(); }

#ifndef SIESTA_WITH_CUDA
std::unique_ptr<Ops> make_cuda_ops(int device) {
  throw KernelError("make_cuda_ops(" + std::to_string(device) +
                    "): this build has no CUDA support (configured with SIESTA_CUDA=OFF or "
                    "without nvcc); allowed devices: cpu");
}
#endif

std::unique_ptr<Ops> make_ops(Device device) {
  if (device.is_cuda()) return make_cuda_ops(device.index);
  return make_cpu_ops();
}

}  // namespace siesta::kernels
