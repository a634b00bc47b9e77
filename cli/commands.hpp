// Each subcommand registers itself on the CLI11 app and returns what to run once parsing
// succeeded. Exit codes: 0 success, 1 the run failed, 2 bad usage or bad input.
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

namespace siesta::cli {

using Runner = std::function<int()>;

Runner add_run(CLI::App& app);
Runner add_serve(CLI::App& app);
Runner add_replay(CLI::App& app);
Runner add_trace(CLI::App& app);
Runner add_bench(CLI::App& app);
Runner add_doctor(CLI::App& app);
Runner add_version(CLI::App& app);
Runner add_model(CLI::App& app);
Runner add_worker(CLI::App& app);

// Prints "siesta: error: MSG" on stderr and returns 2.
int usage_error(const std::string& msg);

}  // namespace siesta::cli
