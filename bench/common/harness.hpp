// One harness for every benchmark, in the spirit of nccl-tests: warm-up, repeats, median time,
// and rows that always carry what was achieved, the limit measured in the same run, their
// ratio, and a correctness check. Rows print as aligned columns and, with --jsonl FILE, as
// JSON Lines.
#pragma once

#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace siesta::bench {

struct Options {
  int warmup = 2;
  int repeats = 5;
  bool quick = false;          // smaller sweeps, for smoke runs on a CPU
  std::string jsonl_path;      // empty: no JSON Lines
  std::vector<std::string> rest;  // arguments the harness did not consume
};
// Parses --warmup N --repeats N --quick --jsonl FILE; exits with code 2 on a malformed value.
Options parse_options(int argc, char** argv, const char* bench_name, const char* description);

struct Timing {
  double median_ms = 0, min_ms = 0, max_ms = 0;
};
// Runs fn warmup times, then repeats times, timing each call with a host clock. fn must
// synchronise any device work it starts.
Timing time_ms(const Options& o, const std::function<void()>& fn);

using Value = std::variant<std::string, double, int64_t>;

// A table of result rows. Column order is the order of the first row's keys.
class Table {
 public:
  Table(std::string bench_name, Options opts);
  ~Table();
  // A row: descriptive columns first, then the achieved figure, the limit, the ratio and the
  // check ("ok" or what was wrong). unit names the figure's unit (GB/s, TFLOP/s, tok/s, ms).
  void row(std::vector<std::pair<std::string, Value>> cols, double achieved, double limit,
           const std::string& unit, const std::string& check);
  // A free-form note printed under the table (the limit's definition, the device).
  void note(const std::string& text);
  int failures() const { return failures_; }

 private:
  std::string name_;
  Options opts_;
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
  std::vector<std::string> notes_;
  std::FILE* jsonl_ = nullptr;
  int failures_ = 0;
  void print();
};

std::string fmt_bytes(double bytes);   // "1.00 GiB"

}  // namespace siesta::bench
