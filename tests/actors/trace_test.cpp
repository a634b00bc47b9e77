// Traces: write/read round trip, replay with no divergence, the exact first divergence of a
// hand-edited trace, Chrome export structure.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "siesta/actors/replay.hpp"
#include "siesta/actors/trace.hpp"
#include "siesta/actors/trace_tools.hpp"

using namespace siesta::actors;
namespace json = boost::json;

namespace {

std::filesystem::path temp_path(const std::string& name) {
  return std::filesystem::temp_directory_path() /
         ("siesta_trace_" + std::to_string(::getpid()) + "_" + name);
}

json::value state(bool w, bool kv, bool valid, int level) {
  return json::object{{"is_sleeping", !(w && kv)}, {"weights_awake", w}, {"kv_awake", kv},
                      {"weights_valid", valid}, {"sleep_level", level}};
}

// Writes what a real level-2 step records: phases, engine transitions, memory budget.
void write_step_trace(const std::filesystem::path& p) {
  TraceWriter w(p, json::object{{"config", json::object{}}, {"seeds", json::object{{"global", 1}}},
                                {"devices", json::array{json::object{{"rank", 0}, {"budget_bytes", 1000}}}}});
  json::object plan{{"sleep_level", 2}, {"wake_order", "weights_first"}, {"offload_trainer", false},
                    {"rollout", true}};
  auto ev = [&](std::string to, std::string type, json::value args, json::value reply,
                std::string phase) {
    TraceEvent e;
    e.t_ns = w.now_ns();
    e.step = 0;
    e.phase = phase;
    e.from = "coordinator";
    e.to = std::move(to);
    e.type = std::move(type);
    e.args = std::move(args);
    e.reply = std::move(reply);
    e.mem = json::object{{"device_used", 100}};
    w.record(e);
  };
  auto phase = [&](const char* ph) {
    ev("worker/0", "phase", json::object{{"phase", ph}, {"plan", plan}}, nullptr, ph);
  };
  ev("memory/0", "reserve", json::object{{"owner", "engine"}, {"tag", "weights"}, {"bytes", 400}},
     json::object{{"free", 600}}, "");
  phase("rollout");
  ev("engine/0", "generate", json::object{{"prompts", 2}}, json::object{{"tokens", 10}}, "rollout");
  phase("sleep");
  ev("engine/0", "sleep", json::object{{"level", 2}}, state(false, false, false, 2), "sleep");
  ev("memory/0", "release", json::object{{"owner", "engine"}, {"tag", "weights"}},
     json::object{{"free", 1000}}, "sleep");
  phase("train");
  phase("wake_weights");
  ev("memory/0", "reserve", json::object{{"owner", "engine"}, {"tag", "weights"}, {"bytes", 400}},
     json::object{{"free", 600}}, "wake_weights");
  ev("engine/0", "wake", json::object{{"tags", json::array{"weights"}}}, state(true, false, false, 2),
     "wake_weights");
  phase("sync");
  ev("engine/0", "receive_weights", json::object{}, state(true, false, true, 2), "sync");
  phase("wake_kv");
  ev("engine/0", "wake", json::object{{"tags", json::array{"kv_cache"}}}, state(true, true, true, 0),
     "wake_kv");
}

ReplayOptions options(std::ostream& out) {
  ReplayOptions o;
  o.out = &out;
  return o;
}

}  // namespace

TEST(Trace, WriterFlushesEveryLineAndReaderRoundTrips) {
  auto p = temp_path("rt.jsonl");
  write_step_trace(p);
  auto t = read_trace(p);
  EXPECT_EQ(t.header.at("version").to_number<int>(), kTraceVersion);
  ASSERT_EQ(t.events.size(), 14u);
  EXPECT_EQ(t.events[0].seq, 1);
  EXPECT_EQ(t.events.back().seq, 14);
  EXPECT_EQ(t.events[3].to, "worker/0");
  EXPECT_EQ(t.events[4].args.as_object().at("level").to_number<int>(), 2);
  std::filesystem::remove(p);
}

TEST(Replay, RecordedStepReplaysWithoutDivergence) {
  auto p = temp_path("ok.jsonl");
  write_step_trace(p);
  std::ostringstream out;
  auto r = replay_trace(p, options(out));
  EXPECT_FALSE(r.divergence.has_value()) << r.divergence->message << " " << r.divergence->replayed;
  EXPECT_EQ(r.replayed, 14);
  EXPECT_EQ(r.checked, 7) << "reserve, sleep, release, reserve, wake, receive_weights, wake";
  EXPECT_EQ(r.steps, 1);
  std::filesystem::remove(p);
}

TEST(Replay, HandEditedTraceReportsTheExactFirstDivergence) {
  auto p = temp_path("edited.jsonl");
  write_step_trace(p);
  // Edit seq 9's recorded memory reply and seq 12's wake (later): the first one must be named.
  std::ifstream in(p);
  std::stringstream all;
  std::string line;
  while (std::getline(in, line)) {
    if (line.find("\"seq\":9,") != std::string::npos)
      line.replace(line.find("\"free\":600"), 10, "\"free\":700");
    if (line.find("\"seq\":12,") != std::string::npos)
      line.replace(line.find("\"weights_valid\":true"), 20, "\"weights_valid\":false");
    all << line << "\n";
  }
  in.close();
  std::ofstream(p) << all.str();
  std::ostringstream out;
  auto r = replay_trace(p, options(out));
  ASSERT_TRUE(r.divergence.has_value());
  EXPECT_EQ(r.divergence->seq, 9);
  EXPECT_NE(r.divergence->recorded.find("\"free\":700"), std::string::npos) << r.divergence->recorded;
  EXPECT_NE(r.divergence->replayed.find("\"free\":600"), std::string::npos) << r.divergence->replayed;
  EXPECT_NE(r.divergence->message.find("memory/0 reserve"), std::string::npos);
  std::filesystem::remove(p);
}

TEST(Replay, OutOfOrderPhaseIsADivergence) {
  auto p = temp_path("order.jsonl");
  {
    TraceWriter w(p, json::object{{"config", json::object{}}, {"seeds", json::object{}}, {"devices", json::array{}}});
    for (const char* ph : {"rollout", "train"}) {
      TraceEvent e;
      e.from = "coordinator";
      e.to = "worker/0";
      e.type = "phase";
      e.args = json::object{{"phase", ph}, {"plan", json::object{{"sleep_level", 2}}}};
      w.record(e);
    }
  }
  std::ostringstream out;
  auto r = replay_trace(p, options(out));
  ASSERT_TRUE(r.divergence.has_value());
  EXPECT_EQ(r.divergence->seq, 2);
  EXPECT_NE(r.divergence->replayed.find("expected 'sleep'"), std::string::npos) << r.divergence->replayed;
  std::filesystem::remove(p);
}

TEST(Replay, UntilAndBreakOnStopEarly) {
  auto p = temp_path("until.jsonl");
  write_step_trace(p);
  std::ostringstream out;
  auto until = options(out);
  until.until_seq = 5;
  auto r = replay_trace(p, until);
  EXPECT_EQ(r.replayed, 5);
  auto brk = options(out);
  brk.break_on = "wake";
  auto b = replay_trace(p, brk);
  EXPECT_EQ(b.replayed, 9) << "stops before the first wake (seq 10)";
  std::filesystem::remove(p);
}

TEST(TraceExport, ChromeJsonHasActorTracksPhaseSlicesAndMemoryCounter) {
  auto p = temp_path("chrome.jsonl");
  write_step_trace(p);
  auto doc = chrome_trace(read_trace(p));
  std::set<std::string> tracks;
  int phases = 0, counters = 0;
  for (auto& v : doc.at("traceEvents").as_array()) {
    auto& o = v.as_object();
    std::string ph(o.at("ph").as_string());
    if (ph == "M") tracks.insert(std::string(o.at("args").at("name").as_string()));
    if (ph == "X" && o.at("cat") == "phase") ++phases;
    if (ph == "C") ++counters;
  }
  EXPECT_EQ(tracks, (std::set<std::string>{"step phases", "engine/0", "memory/0"}));
  EXPECT_EQ(phases, 6);
  EXPECT_EQ(counters, 8) << "one memory sample per non-phase message";
  auto b = phase_breakdown(read_trace(p));
  EXPECT_EQ(b.phases.size(), 6u);
  EXPECT_EQ(b.step_ms.size(), 1u);
  std::filesystem::remove(p);
}
