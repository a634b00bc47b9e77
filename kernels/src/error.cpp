// Turns CUDA / cuBLAS status codes into KernelError with the failing call and its location.
#include "siesta/kernels/error.hpp"

#include <string>

#ifdef SIESTA_WITH_CUDA
#include <cublas_v2.h>
#include <cuda_runtime.h>
#endif

namespace siesta::kernels {

void throw_cuda_error(int code, const char* what, const char* file, int line) {
  std::string msg = std::string(what) + " failed with CUDA error " + std::to_string(code);
#ifdef SIESTA_WITH_CUDA
  msg += std::string(" (") + cudaGetErrorName(cudaError_t(code)) + ": " +
         cudaGetErrorString(cudaError_t(code)) + ")";
#endif
  throw KernelError(msg + " at " + file + ":" + std::to_string(line));
}

void throw_cublas_error(int code, const char* what, const char* file, int line) {
  std::string msg = std::string(what) + " failed with cuBLAS status " + std::to_string(code);
#ifdef SIESTA_WITH_CUDA
  msg += std::string(" (") + cublasGetStatusString(cublasStatus_t(code)) + ")";
#endif
  throw KernelError(msg + " at " + file + ":" + std::to_string(line));
}

}  // namespace siesta::kernels
