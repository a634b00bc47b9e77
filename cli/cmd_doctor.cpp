// `siesta doctor`: what a user needs to know before a run, and what is missing.
#include <cstdio>
#include <iostream>
#include <vector>

#include "commands.hpp"
#include "siesta/actors.hpp"
#include "siesta/comm.hpp"
#include "siesta/kernels.hpp"
#include "siesta_version.hpp"

namespace siesta::cli {

namespace {
std::string gib(uint64_t b) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GiB", double(b) / double(1ull << 30));
  return buf;
}
std::string cuda_ver(int v) {
  if (v == 0) return "none";
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}
}  // namespace

Runner add_doctor(CLI::App& app) {
  auto* sub = app.add_subcommand("doctor", "Check this machine: build, CUDA, GPUs, NCCL, memory");
  auto strict = std::make_shared<bool>(false);
  sub->add_flag("--require-gpu", *strict, "Exit with code 1 when no usable GPU is found");
  return [strict] {
    std::vector<std::string> missing;
    std::cout << "siesta " << SIESTA_VERSION << " (" << SIESTA_GIT_DESCRIBE << ")\n";
    std::cout << "build:   " << SIESTA_BUILD_TYPE << ", CUDA "
              << (SIESTA_BUILD_CUDA ? "on (sm_" SIESTA_CUDA_ARCHS ")" : "off") << "\n";
    auto cs = kernels::cuda_status();
    std::cout << "cuda:    runtime " << cuda_ver(cs.runtime_version) << ", driver "
              << cuda_ver(cs.driver_version) << "\n";
    if (cs.gpus.empty()) {
      std::cout << "gpus:    none (" << cs.error << ")\n";
      missing.push_back("a usable CUDA GPU (" + cs.error + "): runs use the CPU backends");
    }
    for (auto& g : cs.gpus) {
      std::cout << "gpu " << g.index << ":   " << g.name << ", compute capability " << g.cc_major
                << "." << g.cc_minor << ", " << g.multiprocessors << " SMs, memory "
                << gib(g.free_bytes) << " free of " << gib(g.total_bytes) << "\n";
      if (g.cc_major * 10 + g.cc_minor < 90)
        missing.push_back("GPU " + std::to_string(g.index) +
                          " is older than sm_90; rebuild with -DCMAKE_CUDA_ARCHITECTURES=" +
                          std::to_string(g.cc_major) + std::to_string(g.cc_minor));
    }
    std::cout << "nccl:    " << comm::nccl_version_string() << "\n";
    auto hm = kernels::host_memory();
    std::cout << "host:    " << gib(hm.available_bytes) << " available of " << gib(hm.total_bytes)
              << "\n";
    auto st = actors::actor_selftest(2, 200);
    std::cout << "actors:  CAF " << actors::caf_version() << ", "
              << (st.ok ? "ok, round trip " + std::to_string(st.round_trip_us) + " us"
                        : "FAILED: " + st.detail)
              << "\n";
    if (!st.ok) missing.push_back("a working actor system: " + st.detail);
    if (missing.empty()) {
      std::cout << "missing: nothing\n";
    } else {
      for (auto& m : missing) std::cout << "missing: " << m << "\n";
    }
    bool gpu_missing = cs.gpus.empty();
    return (!st.ok || (*strict && gpu_missing)) ? 1 : 0;
  };
}

}  // namespace siesta::cli
