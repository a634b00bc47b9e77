#include "siesta/comm/nccl_info.hpp"

#ifdef SIESTA_WITH_CUDA
#include <nccl.h>
#endif

namespace siesta::comm {

std::string nccl_version_string() {
#ifdef SIESTA_WITH_CUDA
  int v = 0;
  if (ncclGetVersion(&v) != ncclSuccess) return "unavailable (ncclGetVersion failed)";
  // NCCL >= 2.9 encodes MAJOR*10000 + MINOR*100 + PATCH.
  return std::to_string(v / 10000) + "." + std::to_string((v / 100) % 100) + "." +
         std::to_string(v % 100);
#else
  return "not built (CPU-only build uses the host transport)";
#endif
}

}  // namespace siesta::comm
