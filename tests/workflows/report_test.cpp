// Run-folder outputs: metrics.jsonl lines are JSON objects, the SVG report is well-formed and
// draws what was recorded, and the summary names phases, memory and the reward trend.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "siesta/workflows.hpp"

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace siesta::workflows;

namespace {

fs::path fresh_dir(const std::string& name) {
  auto d = fs::temp_directory_path() / ("siesta_wf_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  return d;
}

// A run's worth of records: SFT steps, then GRPO steps whose reward rises, then an eval.
std::vector<StepRecord> sample_run() {
  std::vector<StepRecord> rs;
  int64_t step = 0;
  for (int i = 0; i < 5; ++i) {
    StepRecord r;
    r.step = ++step;
    r.stage = "sft";
    r.phases = {{"train", 40.0 + i}};
    r.loss = 2.0 - 0.3 * i;
    r.tokens_per_s = 1000;
    r.memory = {{"train", 300u << 20, 1u << 20}};
    rs.push_back(r);
  }
  for (int i = 0; i < 20; ++i) {
    StepRecord r;
    r.step = ++step;
    r.stage = "grpo";
    r.phases = {{"rollout", 100.0}, {"sleep", 2.0}, {"train", 60.0},
                {"wake_weights", 1.0}, {"sync", 3.0}, {"wake_kv", 1.0}};
    r.reward = 0.05 + 0.04 * i;
    r.loss = 0.5 - 0.01 * i;
    r.tokens_per_s = 2000 + 10 * i;
    r.memory = {{"rollout", 700u << 20, 400u << 20}, {"train", (800u << 20) + i, 2u << 20}};
    rs.push_back(r);
  }
  StepRecord e;
  e.step = ++step;
  e.stage = "eval";
  e.phases = {{"eval", 80.0}};
  e.reward = 0.9;
  rs.push_back(e);
  return rs;
}

// Every opening tag is closed in order; self-closing tags, comments and <?xml?> are skipped.
bool balanced_tags(const std::string& s, std::string* why) {
  std::vector<std::string> stack;
  for (size_t i = s.find('<'); i != std::string::npos; i = s.find('<', i + 1)) {
    size_t end = s.find('>', i);
    if (end == std::string::npos) return *why = "unterminated tag", false;
    std::string tag = s.substr(i + 1, end - i - 1);
    if (tag.starts_with("?") || tag.starts_with("!")) continue;
    if (tag.ends_with("/")) continue;
    if (tag.starts_with("/")) {
      std::string name = tag.substr(1);
      if (stack.empty() || stack.back() != name) return *why = "unexpected </" + name + ">", false;
      stack.pop_back();
    } else {
      stack.push_back(tag.substr(0, tag.find_first_of(" \t\n")));
    }
  }
  if (!stack.empty()) return *why = "unclosed <" + stack.back() + ">", false;
  return true;
}

}  // namespace

TEST(MetricsWriter, EachLineIsAJsonObjectWrittenImmediately) {
  auto dir = fresh_dir("metrics");
  auto file = dir / "sub" / "metrics.jsonl";
  {
    MetricsWriter w(file);
    w.write("run_start", {{"name", "t\"est\n"}, {"steps", 3}});
    w.write("step", sample_run()[6].to_json());
    // Flushed per line: readable before the writer closes.
    auto events = read_metrics(file);
    ASSERT_EQ(events.size(), 2u);
    EXPECT_EQ(events[0].at("event").as_string(), "run_start");
    EXPECT_EQ(events[0].at("name").as_string(), "t\"est\n");
    EXPECT_TRUE(events[0].at("time").is_double());
  }
  {
    MetricsWriter again(file);  // a resumed run appends
    again.write("run_end");
  }
  std::ifstream in(file);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    boost::system::error_code ec;
    auto v = json::parse(line, ec);
    ASSERT_FALSE(ec) << line;
    ASSERT_TRUE(v.is_object()) << line;
    ++n;
  }
  EXPECT_EQ(n, 3);
  fs::remove_all(dir);
}

TEST(MetricsWriter, UnwritablePathThrowsWithThePath) {
  try {
    MetricsWriter w("/proc/siesta-no/metrics.jsonl");
    FAIL() << "opened an impossible path";
  } catch (const WorkflowError& e) {
    EXPECT_NE(std::string(e.what()).find("/proc/siesta-no/metrics.jsonl"), std::string::npos);
  }
}

TEST(RunReport, StepRecordsRoundTripThroughMetrics) {
  auto dir = fresh_dir("roundtrip");
  auto file = dir / "metrics.jsonl";
  auto run = sample_run();
  {
    MetricsWriter w(file);
    w.write("run_start");
    for (const auto& r : run) w.write("step", r.to_json());
    // A resumed run re-does step 10: the report keeps the later record.
    auto redo = run[9];
    redo.reward = 0.77;
    w.write("step", redo.to_json());
  }
  std::ofstream(file, std::ios::app) << "{\"event\": \"step\", \"st";  // torn by a kill
  auto rep = RunReport::from_metrics(read_metrics(file), "resumed");
  ASSERT_EQ(rep.records().size(), run.size());
  EXPECT_DOUBLE_EQ(*rep.records()[9].reward, 0.77);
  EXPECT_EQ(rep.records()[7].phases.size(), 6u);
  EXPECT_EQ(rep.records()[7].memory[1].engine_bytes, 2u << 20);
  EXPECT_FALSE(rep.records()[0].reward.has_value());
  fs::remove_all(dir);
}

TEST(RunReport, SvgIsWellFormedAndDrawsTheRecordedCurve) {
  RunReport rep("test <run> & co");
  for (auto& r : sample_run()) rep.add(r);
  std::string svg = rep.svg();
  std::string why;
  EXPECT_TRUE(balanced_tags(svg, &why)) << why;
  EXPECT_TRUE(svg.starts_with("<?xml")) << svg.substr(0, 40);
  EXPECT_NE(svg.find("test &lt;run&gt; &amp; co"), std::string::npos);
  // The reward curve has one point per training step with a reward (20 GRPO steps).
  std::smatch m;
  ASSERT_TRUE(std::regex_search(svg, m, std::regex("class=\"reward-curve\"[^>]*points=\"([^\"]+)\"")));
  std::string pts = m[1];
  EXPECT_EQ(std::count(pts.begin(), pts.end(), ',') , 20);
  // Rising reward: the last point is higher on the page (smaller y) than the first.
  auto first_y = std::stod(pts.substr(pts.find(',') + 1));
  auto last_y = std::stod(pts.substr(pts.rfind(',') + 1));
  EXPECT_LT(last_y, first_y);
  EXPECT_NE(svg.find("class=\"eval-point\""), std::string::npos);
  // One stacked rect per (step, phase): 5 sft + 20 x 6 grpo + 1 eval.
  size_t rects = 0;
  for (size_t p = svg.find("class=\"phase\""); p != std::string::npos; p = svg.find("class=\"phase\"", p + 1)) ++rects;
  EXPECT_EQ(rects, 5u + 120u + 1u);
  EXPECT_NE(svg.find("class=\"memory-used\""), std::string::npos);
  EXPECT_NE(svg.find("class=\"memory-engine\""), std::string::npos);
}

TEST(RunReport, EmptyReportIsStillWellFormed) {
  RunReport rep;
  std::string why;
  EXPECT_TRUE(balanced_tags(rep.svg(), &why)) << why;
  EXPECT_NE(rep.summary_table().find("0 steps"), std::string::npos);
}

TEST(RunReport, SummaryTableShowsPhasesMemoryAndRewardTrend) {
  RunReport rep("summary");
  for (auto& r : sample_run()) rep.add(r);
  std::string t = rep.summary_table();
  EXPECT_NE(t.find("sft 5, grpo 20, eval 1"), std::string::npos) << t;
  EXPECT_TRUE(std::regex_search(t, std::regex(R"(grpo\s+rollout\s+20\s+100\.0\s+100\.0\s+100\.0\s+59\.9%)"))) << t;
  EXPECT_TRUE(std::regex_search(t, std::regex(R"(grpo\s+\(step\)\s+20\s+167\.0)"))) << t;
  EXPECT_NE(t.find("Peak device memory: 800.0 MiB (step 25, train)"), std::string::npos) << t;
  EXPECT_NE(t.find("Engine memory while training (max): 2.00 MiB"), std::string::npos) << t;
  EXPECT_NE(t.find("Reward 0.050 -> 0.810"), std::string::npos) << t;
  EXPECT_NE(t.find("Eval reward: 0.900 @26"), std::string::npos) << t;
}

TEST(RunReport, WriteCreatesSummaryAndSvg) {
  auto dir = fresh_dir("write");
  RunReport rep("w");
  for (auto& r : sample_run()) rep.add(r);
  auto svg = rep.write(dir);
  EXPECT_EQ(svg, dir / "report.svg");
  EXPECT_TRUE(fs::file_size(dir / "report.svg") > 1000);
  EXPECT_TRUE(fs::file_size(dir / "summary.txt") > 100);
  fs::remove_all(dir);
}

TEST(Sparkline, RisingSeriesRisesAndLongSeriesIsBucketed) {
  EXPECT_EQ(sparkline({0, 1, 2, 3, 4, 5, 6, 7}), "_.:-=+*#");
  EXPECT_EQ(sparkline({1, 1, 1}), "---");
  std::vector<double> many(1000);
  for (size_t i = 0; i < many.size(); ++i) many[i] = static_cast<double>(i);
  std::string s = sparkline(many, 20);
  EXPECT_EQ(s.size(), 20u);
  EXPECT_EQ(s.front(), '_');
  EXPECT_EQ(s.back(), '#');
  for (char c : s) EXPECT_LT(static_cast<unsigned char>(c), 128) << "not ASCII";
  EXPECT_EQ(sparkline({}), "");
}
