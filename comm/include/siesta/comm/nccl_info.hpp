// Which NCCL this process would use.
#pragma once

#include <string>

namespace siesta::comm {

// "2.28.3" as reported by the loaded libnccl, or why there is none (CPU-only build).
std::string nccl_version_string();

}  // namespace siesta::comm
