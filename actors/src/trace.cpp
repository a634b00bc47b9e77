#include "siesta/actors/trace.hpp"

#include <chrono>
#include <fstream>
#include <stdexcept>

namespace siesta::actors {
namespace json = boost::json;

namespace {
int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

json::object TraceEvent::to_json() const {
  json::object o;
  o["kind"] = "msg";
  o["seq"] = seq;
  o["t_ns"] = t_ns;
  o["dur_ns"] = dur_ns;
  o["step"] = step;
  o["phase"] = phase;
  o["from"] = from;
  o["to"] = to;
  o["type"] = type;
  o["args"] = args;
  if (error.empty()) o["reply"] = reply;
  else o["error"] = error;
  o["mem"] = mem;
  return o;
}

TraceEvent TraceEvent::from_json(const json::object& o) {
  TraceEvent e;
  auto str = [&](const char* k) {
    auto* v = o.if_contains(k);
    return v && v->is_string() ? std::string(v->as_string()) : std::string();
  };
  auto num = [&](const char* k) -> int64_t {
    auto* v = o.if_contains(k);
    return v && v->is_number() ? v->to_number<int64_t>() : 0;
  };
  e.seq = num("seq");
  e.t_ns = num("t_ns");
  e.dur_ns = num("dur_ns");
  e.step = o.contains("step") ? int(num("step")) : -1;
  e.phase = str("phase");
  e.from = str("from");
  e.to = str("to");
  e.type = str("type");
  if (auto* v = o.if_contains("args")) e.args = *v;
  if (auto* v = o.if_contains("reply")) e.reply = *v;
  e.error = str("error");
  if (auto* v = o.if_contains("mem"); v && v->is_object()) e.mem = v->as_object();
  return e;
}

TraceWriter::TraceWriter(const std::filesystem::path& path, json::object header) : path_(path) {
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  f_ = std::fopen(path.c_str(), "w");
  if (!f_) throw std::runtime_error("cannot open trace file '" + path.string() + "' for writing");
  t0_ns_ = steady_ns();
  header["kind"] = "header";
  header["version"] = kTraceVersion;
  header["start_unix_ms"] = std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count();
  std::string line = json::serialize(header) + "\n";
  std::fputs(line.c_str(), f_);
  std::fflush(f_);
}

TraceWriter::~TraceWriter() {
  if (f_) std::fclose(f_);
}

int64_t TraceWriter::now_ns() const { return steady_ns() - t0_ns_; }

int64_t TraceWriter::record(TraceEvent e) {
  std::lock_guard<std::mutex> lock(mu_);
  e.seq = next_seq_++;
  std::string line = json::serialize(e.to_json()) + "\n";
  std::fputs(line.c_str(), f_);
  std::fflush(f_);
  return e.seq;
}

int64_t TraceWriter::messages() const {
  std::lock_guard<std::mutex> lock(mu_);
  return next_seq_ - 1;
}

Trace read_trace(const std::filesystem::path& path) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error("cannot open trace '" + path.string() + "'");
  Trace t;
  std::string line;
  int lineno = 0;
  while (std::getline(f, line)) {
    ++lineno;
    if (line.empty()) continue;
    boost::system::error_code ec;
    json::value v = json::parse(line, ec);
    if (ec || !v.is_object())
      throw std::runtime_error(path.string() + ":" + std::to_string(lineno) +
                               ": not a JSON object (" + (ec ? ec.message() : "wrong type") + ")");
    auto& o = v.as_object();
    auto* kind = o.if_contains("kind");
    std::string k = kind && kind->is_string() ? std::string(kind->as_string()) : "";
    if (lineno == 1) {
      if (k != "header")
        throw std::runtime_error(path.string() + ":1: the first line must be the trace header");
      auto* ver = o.if_contains("version");
      if (!ver || !ver->is_number() || ver->to_number<int>() != kTraceVersion)
        throw std::runtime_error(path.string() + ":1: unsupported trace version (this siesta reads version " +
                                 std::to_string(kTraceVersion) + ")");
      t.header = o;
      continue;
    }
    if (k != "msg")
      throw std::runtime_error(path.string() + ":" + std::to_string(lineno) + ": unknown line kind '" + k + "'");
    t.events.push_back(TraceEvent::from_json(o));
  }
  if (lineno == 0) throw std::runtime_error(path.string() + ": empty trace");
  return t;
}

}  // namespace siesta::actors
