// The real `siesta replay` and `siesta trace` on a recorded trace and a hand-edited one.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "process.hpp"
#include "siesta/actors/trace.hpp"

using namespace siesta::actors;
using siesta::test::run_siesta;
namespace json = boost::json;

namespace {
std::filesystem::path make_trace(bool diverge) {
  auto p = std::filesystem::temp_directory_path() /
           ("siesta_cli_trace_" + std::to_string(::getpid()) + (diverge ? "_bad" : "_ok") + ".jsonl");
  TraceWriter w(p, json::object{{"config", json::object{}}, {"seeds", json::object{}},
                                {"devices", json::array{json::object{{"rank", 0}, {"budget_bytes", 100}}}}});
  auto rec = [&](const char* to, const char* type, json::value args, json::value reply) {
    TraceEvent e;
    e.from = "coordinator";
    e.to = to;
    e.type = type;
    e.args = std::move(args);
    e.reply = std::move(reply);
    w.record(e);
  };
  rec("engine/0", "sleep", json::object{{"level", 2}},
      json::object{{"is_sleeping", true}, {"weights_awake", false}, {"kv_awake", false},
                   {"weights_valid", false}, {"sleep_level", 2}});
  rec("memory/0", "reserve", json::object{{"owner", "engine"}, {"tag", "weights"}, {"bytes", 60}},
      json::object{{"free", diverge ? 50 : 40}});
  return p;
}
}  // namespace

TEST(ReplayCli, CleanTraceExitsZeroAndSaysNoDivergence) {
  auto p = make_trace(false);
  auto r = run_siesta({"replay", p.string()});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("replayed 2 messages (2 replies checked"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("no divergence"), std::string::npos) << r.out;
  std::filesystem::remove(p);
}

TEST(ReplayCli, DivergenceExitsOneAndNamesTheMessage) {
  auto p = make_trace(true);
  auto r = run_siesta({"replay", p.string()});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.out.find("first divergence at seq 2: coordinator -> memory/0 reserve"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("recorded: reply {\"free\":50}"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("replayed: reply {\"free\":40}"), std::string::npos) << r.out;
  std::filesystem::remove(p);
}

TEST(ReplayCli, MalformedTraceIsAUsageError) {
  auto p = std::filesystem::temp_directory_path() / "siesta_cli_trace_malformed.jsonl";
  std::ofstream(p) << "{\"kind\":\"msg\"}\n";
  auto r = run_siesta({"replay", p.string()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("first line must be the trace header"), std::string::npos) << r.err;
  std::filesystem::remove(p);
}

TEST(TraceCli, ExportWritesChromeJsonAndSummaryRuns) {
  auto p = make_trace(false);
  auto out = std::filesystem::temp_directory_path() / ("siesta_chrome_" + std::to_string(::getpid()) + ".json");
  auto r = run_siesta({"trace", "export", "--chrome", p.string(), "-o", out.string()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::ifstream f(out);
  std::stringstream ss;
  ss << f.rdbuf();
  auto doc = json::parse(ss.str());
  EXPECT_GE(doc.at("traceEvents").as_array().size(), 4u);
  auto s = run_siesta({"trace", "summary", p.string()});
  EXPECT_EQ(s.exit_code, 0) << s.err;
  EXPECT_NE(s.out.find("2 messages"), std::string::npos) << s.out;
  std::filesystem::remove(p);
  std::filesystem::remove(out);
}
