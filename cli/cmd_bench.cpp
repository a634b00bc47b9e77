// `siesta bench`: lists the benchmarks in bench/ and how to run them.
#include <iostream>

#include "commands.hpp"

namespace siesta::cli {

Runner add_bench(CLI::App& app) {
  app.add_subcommand("bench", "List the benchmarks and how to run them");
  return [] {
    std::cout << "benchmarks are built as bench_* executables next to siesta (build/bench/)\n";
    return 0;
  };
}

}  // namespace siesta::cli
