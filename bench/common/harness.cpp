#include "harness.hpp"

#include <execinfo.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <sstream>

namespace siesta::bench {

namespace {
// Benchmarks run on a machine without a debugger: a crash prints where it happened (function
// names thanks to -rdynamic) before the default action ends the process.
extern "C" void on_fatal_signal(int sig) {
  const char msg[] = "bench: fatal signal; backtrace:\n";
  (void)!::write(2, msg, sizeof msg - 1);
  void* frames[64];
  ::backtrace_symbols_fd(frames, ::backtrace(frames, 64), 2);
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}
void install_crash_backtrace() {
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) ::signal(sig, on_fatal_signal);
}

std::string render(const Value& v) {
  if (auto* s = std::get_if<std::string>(&v)) return *s;
  if (auto* i = std::get_if<int64_t>(&v)) return std::to_string(*i);
  char buf[64];
  double d = std::get<double>(v);
  std::snprintf(buf, sizeof buf, std::fabs(d) >= 100 || d == 0 ? "%.1f" : "%.3g", d);
  return buf;
}
std::string json_escape(const std::string& s) {
  std::string r;
  for (char c : s) {
    if (c == '"' || c == '\\') r += '\\';
    if (c == '\n') { r += "\\n"; continue; }
    r += c;
  }
  return r;
}
std::string json_value(const Value& v) {
  if (auto* s = std::get_if<std::string>(&v)) return "\"" + json_escape(*s) + "\"";
  if (auto* i = std::get_if<int64_t>(&v)) return std::to_string(*i);
  double d = std::get<double>(v);
  if (!std::isfinite(d)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", d);
  return buf;
}
}  // namespace

Options parse_options(int argc, char** argv, const char* name, const char* description) {
  install_crash_backtrace();
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto need = [&](const char* flag) -> std::string {
      if (i + 1 >= argc) {
        std::cerr << name << ": error: " << flag << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    auto to_int = [&](const char* flag, const std::string& v) {
      try {
        int n = std::stoi(v);
        if (n >= 0) return n;
      } catch (...) {
      }
      std::cerr << name << ": error: " << flag << " takes a non-negative integer (got '" << v
                << "')\n";
      std::exit(2);
    };
    if (a == "--warmup") o.warmup = to_int("--warmup", need("--warmup"));
    else if (a == "--repeats") o.repeats = std::max(1, to_int("--repeats", need("--repeats")));
    else if (a == "--quick") o.quick = true;
    else if (a == "--jsonl") o.jsonl_path = need("--jsonl");
    else if (a == "--help" || a == "-h") {
      std::cout << name << ": " << description
                << "\noptions: --warmup N --repeats N --quick --jsonl FILE\n";
      std::exit(0);
    } else o.rest.push_back(a);
  }
  return o;
}

Timing time_ms(const Options& o, const std::function<void()>& fn) {
  for (int i = 0; i < o.warmup; ++i) fn();
  std::vector<double> t;
  for (int i = 0; i < o.repeats; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    fn();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return {t[t.size() / 2], t.front(), t.back()};
}

Table::Table(std::string name, Options opts) : name_(std::move(name)), opts_(std::move(opts)) {
  if (!opts_.jsonl_path.empty()) {
    jsonl_ = std::fopen(opts_.jsonl_path.c_str(), "a");
    if (!jsonl_) std::cerr << name_ << ": cannot open " << opts_.jsonl_path << " for writing\n";
  }
}

Table::~Table() {
  print();
  if (jsonl_) std::fclose(jsonl_);
}

void Table::row(std::vector<std::pair<std::string, Value>> cols, double achieved, double limit,
                const std::string& unit, const std::string& check) {
  double ratio = limit > 0 ? achieved / limit : 0;
  cols.emplace_back("achieved", achieved);
  cols.emplace_back("limit", limit);
  cols.emplace_back("unit", unit);
  cols.emplace_back("ratio", ratio);
  cols.emplace_back("check", check);
  if (check != "ok") ++failures_;
  if (header_.empty())
    for (auto& [k, v] : cols) header_.push_back(k);
  std::vector<std::string> cells;
  for (auto& [k, v] : cols) cells.push_back(k == "ratio" ? render(Value{ratio * 100}) + "%" : render(v));
  rows_.push_back(cells);
  if (jsonl_) {
    std::ostringstream js;
    js << "{\"bench\":\"" << json_escape(name_) << "\"";
    for (auto& [k, v] : cols) js << ",\"" << json_escape(k) << "\":" << json_value(v);
    js << "}\n";
    std::fputs(js.str().c_str(), jsonl_);
    std::fflush(jsonl_);
  }
  // Print progressively so that a killed run still shows what it measured.
  std::cout << "# " << name_ << ":";
  for (size_t i = 0; i < cells.size() && i < header_.size(); ++i)
    std::cout << " " << header_[i] << "=" << cells[i];
  std::cout << std::endl;
}

void Table::note(const std::string& text) { notes_.push_back(text); }

void Table::print() {
  if (rows_.empty()) return;
  std::vector<size_t> w(header_.size());
  for (size_t i = 0; i < header_.size(); ++i) w[i] = header_[i].size();
  for (auto& r : rows_)
    for (size_t i = 0; i < r.size() && i < w.size(); ++i) w[i] = std::max(w[i], r[i].size());
  auto line = [&](const std::vector<std::string>& cells) {
    for (size_t i = 0; i < cells.size() && i < w.size(); ++i)
      std::cout << (i ? "  " : "") << std::string(w[i] - cells[i].size(), ' ') << cells[i];
    std::cout << "\n";
  };
  std::cout << "\n== " << name_ << " ==\n";
  line(header_);
  for (auto& r : rows_) line(r);
  for (auto& n : notes_) std::cout << "  " << n << "\n";
  std::cout << (failures_ ? "  FAILED checks: " + std::to_string(failures_) : "  all checks ok")
            << std::endl;
}

std::string fmt_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) { b /= 1024; ++u; }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f %s", b, units[u]);
  return buf;
}

}  // namespace siesta::bench
