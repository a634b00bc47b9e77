#include "step_overhead.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <vector>

#include "siesta/actors/embed.hpp"

namespace siesta::bench {

namespace {

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

actors::WorkerOptions worker_options(bool gpu, const StepShape& sh) {
  actors::WorkerOptions w;
  w.seed = 1;
  w.task = train::TaskSpec{.kind = train::TaskKind::Sorting, .min_len = 2, .max_len = gpu ? 8 : 4};
  // Room for the prompt (<= 2 x 8 characters and markers) and the rollout.
  w.engine.max_model_len = 32 + sh.max_new_tokens;
  w.trainer.max_seq_len = w.engine.max_model_len;
  w.model = sh.preset;
  w.device = gpu ? Device::cuda(0) : Device::cpu();
  w.engine.max_num_seqs = sh.prompts * sh.group;
  w.engine.kv_cache_bytes = sh.kv_cache_bytes;
  w.trainer.micro_batch_rows = sh.micro_batch_rows;
  return w;
}

}  // namespace

StepShape cpu_step() { return {}; }
StepShape gpu_short_step() { return {"small", 32, 8, 9, 256ull << 20, 64}; }
StepShape gpu_long_step() { return {"0.5b", 32, 8, 256, 8ull << 30, 16}; }

StepOverhead measure_step_overhead(bool gpu, const StepShape& sh, int warmup_steps, int steps) {
  namespace fs = std::filesystem;
  StepOverhead out;
  auto w = worker_options(gpu, sh);
  out.device = w.device.str();
  out.preset = w.model;
  out.steps = steps;
  const fs::path trace = fs::temp_directory_path() /
                         ("siesta_bench_actors_" + std::to_string(::getpid()) + ".jsonl");
  std::map<int, double> wall_ms;
  {
    actors::RuntimeOptions ro;
    ro.trace_file = trace;
    actors::Runtime rt(std::move(w), ro);
    auto& c = rt.coordinator();
    c.start();
    actors::TrainStage stage;
    stage.lr = stage.min_lr = gpu ? 2e-4 : 5e-4;
    stage.group_size = sh.group;
    c.begin_stage(stage);
    actors::RolloutOptions opt;
    opt.prompts_per_step = sh.prompts;
    opt.group_size = sh.group;
    opt.max_new_tokens = sh.max_new_tokens;
    opt.seed = 1;
    for (int s = 1; s <= warmup_steps + steps; ++s) {
      auto t0 = std::chrono::steady_clock::now();
      c.grpo_step(s, opt);
      if (s > warmup_steps)
        wall_ms[s] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    }
  }
  auto t = actors::read_trace(trace);
  fs::remove(trace);

  struct PerStep {
    double work_ms = 0, memory_ms = 0;
    int messages = 0, generate = 0, train = 0, sync = 0;
  };
  std::map<int, PerStep> per;
  for (const auto& e : t.events) {
    if (!wall_ms.count(e.step) || e.type == "phase") continue;
    auto& p = per[e.step];
    const double ms = double(e.dur_ns) * 1e-6;
    ++p.messages;
    if (e.to.starts_with("memory/")) p.memory_ms += ms;
    else if (e.to.starts_with("engine/") || e.to.starts_with("trainer/") || e.to.starts_with("syncer/"))
      p.work_ms += ms;
    p.generate += e.to == "engine/0" && e.type == "generate" && e.error.empty();
    p.train += e.to == "trainer/0" && e.type == "train" && e.error.empty();
    p.sync += e.to == "syncer/0" && e.type == "sync" && e.error.empty();
  }
  // The coordinator also samples the memory manager once per phase (an observation the trace
  // does not record): count those requests too.
  actors::StepPlan plan;
  plan.rollout = true;
  const int untraced = int(plan.phases().size());
  std::vector<double> step, work, mem, over, msgs;
  double sum_wall = 0, sum_over = 0;
  for (auto [s, wall] : wall_ms) {
    const PerStep& p = per[s];
    if (p.generate != 1 || p.train != 1 || p.sync != 1)
      out.check = "step " + std::to_string(s) + " trace lacks generate/train/sync";
    else if (p.work_ms > wall)
      out.check = "step " + std::to_string(s) + ": handlers worked longer than the step lasted";
    step.push_back(wall);
    work.push_back(p.work_ms);
    mem.push_back(p.memory_ms);
    over.push_back(wall - p.work_ms);
    msgs.push_back(p.messages + untraced);
    sum_wall += wall;
    sum_over += wall - p.work_ms;
  }
  out.step_ms = median(step);
  out.work_ms = median(work);
  out.memory_ms = median(mem);
  out.overhead_ms = median(over);
  out.messages = median(msgs);
  out.overhead_pct = sum_wall > 0 ? 100 * sum_over / sum_wall : 0;
  return out;
}

}  // namespace siesta::bench
