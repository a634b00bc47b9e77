// Run-folder outputs: metrics.jsonl lines are JSON objects, the SVG report is well-formed and
// draws what was recorded, and the summary names phases, memory and the reward trend.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <unistd.h>

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

// A byte-level model's completions are arbitrary bytes; JSON Lines must stay UTF-8 so that any
// JSON reader (Python's json, jq) can read the file.
TEST(MetricsWriter, InvalidUtf8BecomesReplacementCharacters) {
  auto dir = fresh_dir("utf8");
  auto file = dir / "metrics.jsonl";
  {
    MetricsWriter w(file);
    w.write("eval", {{"samples", json::array{json::object{
                         {"prompt", "sort(21)="}, {"completion", std::string("a\xb2\xff" "b \xc3\xa9 \xe2\x82")}}}}});
  }
  std::ifstream in(file);
  std::string line;
  std::getline(in, line);
  auto v = json::parse(line).as_object();
  const auto& c = v.at("samples").as_array()[0].as_object().at("completion").as_string();
  // Two bad bytes, a valid "é", and a truncated 3-byte sequence (two bytes).
  EXPECT_EQ(std::string(c), "a\xef\xbf\xbd\xef\xbf\xbd" "b \xc3\xa9 \xef\xbf\xbd\xef\xbf\xbd");
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
    w.write_eval({0, 0.1, 0.0, 32});
    w.write_eval({0, 0.2, 0.0, 32});  // the later one of a step wins
    for (auto r : run) {
      if (r.step == 8) {
        r.generated_tokens = 640;
        r.device_used_peak = 900u << 20;
        r.sync_gbps = 12.5;
        r.step_ms = 180.0;
      }
      w.write_step(r);
    }
    w.write_eval({25, 0.6, 0.5, 32},
                 {{"samples", json::array{json::object{{"prompt", "sort(31)="}, {"completion", "13"}}}}});
    // A resumed run re-does step 10: the report keeps the later record.
    auto redo = run[9];
    redo.reward = 0.77;
    w.write("step", redo.to_json());
  }
  std::ofstream(file, std::ios::app) << "{\"event\": \"step\", \"st";  // torn by a kill
  auto events = read_metrics(file);
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events[events.size() - 2].at("samples").as_array().size(), 1u)
      << "extra fields of an eval kept";
  auto rep = RunReport::from_metrics(events, "resumed");
  ASSERT_EQ(rep.records().size(), run.size());
  ASSERT_EQ(rep.evals().size(), 3u) << "eval events at 0 and 25, the eval stage at 26";
  EXPECT_DOUBLE_EQ(rep.evals()[0].reward, 0.2);
  EXPECT_DOUBLE_EQ(*rep.evals()[1].exact_match, 0.5);
  EXPECT_EQ(rep.evals()[1].prompts, 32);
  EXPECT_DOUBLE_EQ(rep.evals()[2].reward, 0.9);
  EXPECT_EQ(rep.records()[7].generated_tokens, 640);
  EXPECT_EQ(rep.records()[7].device_used_peak, 900u << 20);
  EXPECT_DOUBLE_EQ(rep.records()[7].sync_gbps, 12.5);
  EXPECT_DOUBLE_EQ(rep.records()[7].total_ms(), 180.0);
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
  EXPECT_EQ(svg.find("class=\"eval-curve\""), std::string::npos) << "one eval: a dot, no line";
  rep.add_eval({0, 0.1, {}, 8});
  EXPECT_NE(rep.svg().find("class=\"eval-curve\""), std::string::npos);
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
  rep.add_eval({0, 0.1, 0.0, 64});
  rep.add_eval({25, 0.6, 0.25, 64});
  std::string t = rep.summary_table();
  EXPECT_NE(t.find("sft 5, grpo 20, eval 1"), std::string::npos) << t;
  EXPECT_TRUE(std::regex_search(t, std::regex(R"(grpo\s+rollout\s+20\s+100\.0\s+100\.0\s+100\.0\s+59\.9%)"))) << t;
  EXPECT_TRUE(std::regex_search(t, std::regex(R"(grpo\s+\(step\)\s+20\s+167\.0)"))) << t;
  EXPECT_NE(t.find("Peak device memory: 800.0 MiB (step 25, train)"), std::string::npos) << t;
  EXPECT_NE(t.find("Engine memory while training (max): 2.00 MiB"), std::string::npos) << t;
  // Means of the first and last 2 of 20 grpo steps: (0.05 + 0.09) / 2 and (0.77 + 0.81) / 2.
  EXPECT_NE(t.find("Rollout reward 0.070 -> 0.790 (+0.720; mean of the first and last 2 steps, best step 0.810)"),
            std::string::npos) << t;
  // The eval passes added and the eval stage's step, in step order.
  EXPECT_NE(t.find("Eval reward 0.100 -> 0.900 (+0.800)"), std::string::npos) << t;
  EXPECT_NE(t.find("0.100 @0 (exact 0.00) 0.600 @25 (exact 0.25) 0.900 @26"), std::string::npos) << t;
}

// What the coordinator reports (actors::StepRecord): a step's wall time, peak memory and what
// the engine held while training, without per-phase samples.
TEST(RunReport, StepFiguresWithoutPhaseSamplesStillGiveMemoryAndTime) {
  RunReport rep("coordinator-shaped");
  for (int i = 1; i <= 4; ++i) {
    StepRecord r;
    r.step = i;
    r.stage = "grpo";
    r.phases = {{"rollout", 50.0}, {"train", 30.0}};
    r.step_ms = 100.0;  // 20 ms outside the phases (scoring, messages)
    r.reward = 0.1 * i;
    r.device_used_peak = uint64_t(i) << 30;
    r.engine_held_while_training = 0;  // sleep level 2: nothing kept
    r.sync_gbps = 10.0 * i;
    rep.add(r);
  }
  std::string t = rep.summary_table();
  EXPECT_TRUE(std::regex_search(t, std::regex(R"(grpo\s+\(step\)\s+4\s+100\.0)"))) << t;
  EXPECT_TRUE(std::regex_search(t, std::regex(R"(grpo\s+rollout\s+4\s+50\.0\s+50\.0\s+50\.0\s+50\.0%)"))) << t;
  EXPECT_NE(t.find("Peak device memory: 4.00 GiB (step 4)"), std::string::npos) << t;
  EXPECT_NE(t.find("Engine memory while training (max): 0 B"), std::string::npos) << t;
  EXPECT_NE(t.find("Weight sync (mean over steps): 25.00 GB/s"), std::string::npos) << t;
  std::string svg = rep.svg();
  std::smatch m;
  ASSERT_TRUE(std::regex_search(svg, m, std::regex("class=\"memory-used\"[^>]*points=\"([^\"]+)\"")));
  std::string pts = m[1];
  EXPECT_EQ(std::count(pts.begin(), pts.end(), ','), 4) << "one point per step";
  EXPECT_NE(svg.find("class=\"memory-engine\""), std::string::npos);
}

TEST(RunReport, MemoryTimelineHasAPointPerPhaseSample) {
  RunReport rep("timeline");
  auto run = sample_run();
  for (auto& r : run) rep.add(r);
  std::string svg = rep.svg();
  std::smatch m;
  ASSERT_TRUE(std::regex_search(svg, m, std::regex("class=\"memory-used\"[^>]*points=\"([^\"]+)\"")));
  std::string pts = m[1];
  // 5 sft steps with one sample, 20 grpo steps with two (rollout, train); the eval step none.
  EXPECT_EQ(std::count(pts.begin(), pts.end(), ','), 5 + 40);
  // Within a grpo step the rollout sample (700 MiB) comes before, and lower than, the train one.
  std::vector<std::pair<double, double>> xy;
  std::istringstream in(pts);
  std::string pair;
  while (in >> pair) xy.emplace_back(std::stod(pair), std::stod(pair.substr(pair.find(',') + 1)));
  ASSERT_EQ(xy.size(), 45u);
  EXPECT_LT(xy[5].first, xy[6].first);
  EXPECT_GT(xy[5].second, xy[6].second) << "700 MiB drawn below 800 MiB";
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
