// The kernels layer's one error type, and the checks every CUDA/cuBLAS call goes through.
#pragma once

#include <stdexcept>
#include <string>

namespace siesta::kernels {

class KernelError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

[[noreturn]] void throw_cuda_error(int code, const char* what, const char* file, int line);
[[noreturn]] void throw_cublas_error(int code, const char* what, const char* file, int line);

}  // namespace siesta::kernels

#define SIESTA_CUDA_CHECK(expr)                                                          \
  do {                                                                                   \
    auto siesta_err_ = (expr);                                                           \
    if (siesta_err_ != 0) ::siesta::kernels::throw_cuda_error(int(siesta_err_), #expr,   \
                                                              __FILE__, __LINE__);       \
  } while (0)

#define SIESTA_CUBLAS_CHECK(expr)                                                        \
  do {                                                                                   \
    auto siesta_err_ = (expr);                                                           \
    if (siesta_err_ != 0) ::siesta::kernels::throw_cublas_error(int(siesta_err_), #expr, \
                                                                __FILE__, __LINE__);     \
  } while (0)
