// Message traces as JSON Lines: a header line (version, config, seeds, devices), then one line
// per message handled by an actor (sequence, monotonic time, duration, sender, receiver, type,
// arguments, reply or error, the RL step and phase, device memory in use). Every line is
// flushed, so a crash keeps everything up to the crash.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include <boost/json.hpp>

namespace siesta::actors {

inline constexpr int kTraceVersion = 1;

struct TraceEvent {
  int64_t seq = 0;
  int64_t t_ns = 0;        // monotonic, relative to the trace start
  int64_t dur_ns = 0;      // time the receiver spent handling the message
  int step = -1;           // RL step, -1 outside the step loop
  std::string phase;       // step phase this message belongs to ("" if none)
  std::string from, to, type;
  boost::json::value args;
  boost::json::value reply;  // null when the handler failed
  std::string error;         // empty on success
  boost::json::object mem;   // {"device_used": bytes, "held": {...}} when known

  boost::json::object to_json() const;
  static TraceEvent from_json(const boost::json::object& o);
};

class TraceWriter {
 public:
  // Writes the header line. header must hold "config", "seeds" and "devices"; "kind",
  // "version" and "start_unix_ms" are added.
  TraceWriter(const std::filesystem::path& path, boost::json::object header);
  ~TraceWriter();
  TraceWriter(const TraceWriter&) = delete;
  TraceWriter& operator=(const TraceWriter&) = delete;

  int64_t now_ns() const;   // monotonic time since the trace started
  // Assigns the sequence number, appends and flushes one line; returns the sequence number.
  int64_t record(TraceEvent e);
  int64_t messages() const;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  std::FILE* f_ = nullptr;
  mutable std::mutex mu_;
  int64_t next_seq_ = 1;
  int64_t t0_ns_ = 0;
};

struct Trace {
  boost::json::object header;
  std::vector<TraceEvent> events;
};
// Throws std::runtime_error naming the file and line for malformed content.
Trace read_trace(const std::filesystem::path& path);

}  // namespace siesta::actors
