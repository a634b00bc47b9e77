#include <iostream>

#include "commands.hpp"
#include "siesta/actors.hpp"
#include "siesta_version.hpp"

namespace siesta::cli {

Runner add_version(CLI::App& app) {
  app.add_subcommand("version", "Print the siesta version and build flags");
  return [] {
    std::cout << "siesta " << SIESTA_VERSION << " (" << SIESTA_GIT_DESCRIBE << ")\n"
              << "cuda: " << (SIESTA_BUILD_CUDA ? "on, sm_" SIESTA_CUDA_ARCHS : "off") << "\n"
              << "caf: " << siesta::actors::caf_version() << "\n";
    return 0;
  };
}

}  // namespace siesta::cli
