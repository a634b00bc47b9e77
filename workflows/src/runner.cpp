#include "siesta/workflows/runner.hpp"

#include <unistd.h>

#include <chrono>
#include <ctime>
#include <fstream>
#include <iostream>
#include <thread>

#include <boost/json.hpp>
#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <spdlog/spdlog.h>

#include "siesta/actors/coordinator.hpp"
#include "siesta/actors/local_worker.hpp"
#include "siesta/actors/trace.hpp"
#include "siesta/comm/host_transport.hpp"
#include "siesta/comm/nccl_transport.hpp"
#include "siesta/kernels/device.hpp"
#include "siesta/model/presets.hpp"
#include "siesta/workflows/actor_records.hpp"
#include "siesta/workflows/diagnostics.hpp"
#include "siesta/workflows/load.hpp"
#include "siesta/workflows/metrics_writer.hpp"
#include "siesta/workflows/progress.hpp"
#include "siesta/workflows/run_report.hpp"

namespace siesta::workflows {
namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

siesta::Device pick_device(const WorkflowSpec& s) {
  const bool gpu = kernels::cuda_available();
  if (s.devices.device == Device::Cuda && !gpu)
    throw WorkflowError(
        "devices.device is cuda, but no CUDA device is visible (`siesta doctor` says why); "
        "use devices.device: cpu or auto");
  if (s.devices.device == Device::Cpu || !gpu) return siesta::Device::cpu();
  return siesta::Device::cuda(0);
}

actors::WorkerOptions worker_options(const WorkflowSpec& s, siesta::Device device, int rank) {
  actors::WorkerOptions w;
  w.rank = rank;
  w.model = s.model;
  w.device = device;
  w.task = task_spec_of(s);
  w.seed = uint64_t(s.seeds.global);
  w.host_trainer = rank == 0;
  const int seq = longest_sequence_tokens(s);
  if (seq > s.engine.max_model_len)
    throw WorkflowError("engine.max_model_len " + std::to_string(s.engine.max_model_len) +
                        " is shorter than the task's longest sequence (" + std::to_string(seq) +
                        " tokens: prompt, answer and markers); raise engine.max_model_len to at "
                        "least " + std::to_string(seq));

  auto& e = w.engine;
  e.max_num_seqs = s.engine.max_batch;
  e.block_size = s.engine.block_size;
  e.max_model_len = s.engine.max_model_len;
  e.enable_cuda_graphs = s.engine.cuda_graphs;
  e.seed = uint64_t(s.seeds.global);
  if (s.engine.kv_cache_bytes) {
    e.kv_cache_bytes = *s.engine.kv_cache_bytes;
  } else if (s.engine.gpu_memory_utilization) {
    e.kv_cache_memory_fraction = *s.engine.gpu_memory_utilization;
  } else {
    // Room for max_batch sequences of max_model_len tokens (K and V of every layer).
    auto cfg = model::resolve_model_config(s.model);
    const uint64_t elem = device.is_cuda() ? 2 : 4;
    const uint64_t per_token = 2ull * uint64_t(cfg.num_hidden_layers) *
                               uint64_t(cfg.num_key_value_heads) * uint64_t(cfg.head_dim > 0 ? cfg.head_dim : cfg.hidden_size / cfg.num_attention_heads) * elem;
    const uint64_t blocks_per_seq =
        (uint64_t(s.engine.max_model_len) + uint64_t(s.engine.block_size) - 1) /
        uint64_t(s.engine.block_size);
    e.kv_cache_bytes = uint64_t(s.engine.max_batch) * blocks_per_seq *
                       uint64_t(s.engine.block_size) * per_token;
  }

  auto& t = w.trainer;
  t.adamw.beta1 = float(s.trainer.betas[0]);
  t.adamw.beta2 = float(s.trainer.betas[1]);
  t.adamw.eps = float(s.trainer.eps);
  t.adamw.weight_decay = float(s.trainer.weight_decay);
  t.max_grad_norm = s.trainer.grad_clip;
  t.max_seq_len = seq;
  int rows = s.trainer.micro_batch;
  t.micro_batch_rows = rows;
  t.lr = train::LrSchedule{s.trainer.lr, s.trainer.lr, 0, 0};
  return w;
}

// The transports of an in-process run of n workers (one per GPU, or n CPU ranks).
std::vector<std::shared_ptr<comm::Transport>> make_transports(int n, siesta::Device device) {
  std::vector<std::shared_ptr<comm::Transport>> out(static_cast<size_t>(n));
  if (n == 1) return out;   // the worker makes its own world of one
  if (device.is_cuda()) {
    auto id = comm::make_unique_id();
    for (int r = 0; r < n; ++r)
      out[size_t(r)] = std::make_shared<comm::NcclTransport>(id, r, n, r);
    return out;
  }
  comm::HostListener listener;
  comm::HostTransportOptions o;
  o.port = listener.port();
  o.session_id = uint64_t(std::chrono::steady_clock::now().time_since_epoch().count());
  std::vector<std::thread> joiners;
  std::vector<std::string> errors(static_cast<size_t>(n));
  for (int r = 1; r < n; ++r)
    joiners.emplace_back([&, r] {
      try {
        out[size_t(r)] = comm::HostTransport::join(r, n, o);
      } catch (const std::exception& ex) {
        errors[size_t(r)] = ex.what();
      }
    });
  try {
    out[0] = comm::HostTransport::serve(std::move(listener), n, o);
  } catch (const std::exception& ex) {
    errors[0] = ex.what();
  }
  for (auto& j : joiners) j.join();
  for (int r = 0; r < n; ++r)
    if (!errors[size_t(r)].empty())
      throw WorkflowError("weight transport of rank " + std::to_string(r) + ": " + errors[size_t(r)]);
  return out;
}

void write_file_atomically(const fs::path& path, const std::string& text) {
  fs::path tmp = path;
  tmp += ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw WorkflowError("cannot write " + tmp.string());
    f << text;
    f.flush();
    if (!f) throw WorkflowError("cannot write " + tmp.string());
  }
  // fsync through a C handle: ofstream cannot.
  if (FILE* c = std::fopen(tmp.c_str(), "rb")) {
    ::fsync(fileno(c));
    std::fclose(c);
  }
  fs::rename(tmp, path);
}

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw WorkflowError("cannot read " + p.string());
  return std::string(std::istreambuf_iterator<char>(f), {});
}

std::string timestamp() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", std::localtime(&t));
  return buf;
}

// A fresh run never writes into an older run's folder: a taken name gets a timestamp.
fs::path fresh_run_dir(const WorkflowSpec& spec) {
  fs::path dir = resolved_run_dir(spec);
  if (fs::exists(dir) && !fs::is_empty(dir)) dir += "-" + timestamp();
  for (int i = 2; fs::exists(dir) && !fs::is_empty(dir); ++i) dir = fs::path(resolved_run_dir(spec) + "-" + timestamp() + "-" + std::to_string(i));
  fs::create_directories(dir);
  return dir;
}

struct SavedState {
  int64_t steps_done = 0;       // global steps completed (sft, grpo and eval passes)
  int64_t train_steps = 0;      // of which training steps
  std::string checkpoint;       // trainer checkpoint file
};

SavedState read_state(const fs::path& run_dir) {
  fs::path p = run_dir / "checkpoints" / "state.json";
  if (!fs::exists(p))
    throw WorkflowError("--resume " + run_dir.string() + ": no checkpoint yet (" + p.string() +
                        " is missing); the run stopped before its first checkpoint, so start it "
                        "again instead");
  try {
    auto v = json::parse(read_file(p)).as_object();
    SavedState s;
    s.steps_done = v.at("steps_done").to_number<int64_t>();
    s.train_steps = v.at("train_steps").to_number<int64_t>();
    s.checkpoint = std::string(v.at("checkpoint").as_string());
    return s;
  } catch (const std::exception& e) {
    throw WorkflowError("--resume: " + p.string() + " is unreadable (" + e.what() + ")");
  }
}

// Keeps the metrics of the steps the checkpoint covers; later ones are run again.
std::vector<json::object> truncate_metrics(const fs::path& file, int64_t steps_done) {
  std::vector<json::object> kept;
  if (!fs::exists(file)) return kept;
  std::string text;
  for (auto& e : read_metrics(file)) {
    if (auto* s = e.if_contains("step"); s && s->is_number() && s->to_number<int64_t>() > steps_done)
      continue;
    text += json::serialize(e) + "\n";
    kept.push_back(std::move(e));
  }
  write_file_atomically(file, text);
  return kept;
}

json::object trace_header(const WorkflowSpec& spec, siesta::Device device,
                          const std::vector<std::unique_ptr<actors::LocalWorker>>& workers) {
  json::array devices;
  for (size_t r = 0; r < workers.size(); ++r) {
    auto m = workers[r]->pool().device_memory();
    devices.push_back(json::object{{"rank", r},
                                   {"device", device.is_cuda() ? "cuda:" + std::to_string(r) : "cpu"},
                                   {"budget_bytes", m.total_bytes},
                                   {"free_bytes", m.free_bytes}});
  }
  return json::object{{"workflow", spec.name},
                      {"config", to_yaml(spec, false)},
                      {"seeds", json::object{{"global", spec.seeds.global}, {"data", spec.seeds.data}}},
                      {"devices", devices}};
}

}  // namespace

WorkflowSpec workflow_of_run(const fs::path& run_dir) {
  fs::path p = run_dir / "workflow.yaml";
  if (!fs::exists(p))
    throw WorkflowError("--resume " + run_dir.string() + ": not a run folder (" + p.string() +
                        " is missing)");
  return load_workflow(p);
}

RunResult run_workflow(const WorkflowSpec& spec, const RunOptions& opt) {
  RunResult res;
  const bool resuming = !opt.resume_dir.empty();
  SavedState saved;
  if (resuming) {
    saved = read_state(opt.resume_dir);
    res.run_dir = opt.resume_dir;
  } else {
    res.run_dir = fresh_run_dir(spec);
    write_file_atomically(res.run_dir / "workflow.yaml", to_yaml(spec, true));
  }
  const fs::path ckpt_dir = res.run_dir / "checkpoints";
  const auto device = pick_device(spec);
  const int n = spec.devices.workers_per_node * spec.devices.nodes;
  if (spec.devices.nodes > 1)
    throw WorkflowError("devices.nodes " + std::to_string(spec.devices.nodes) +
                        ": `siesta run` drives the workers of one node in one process; "
                        "multi-node runs are not supported by this build");
  if (device.is_cuda() && n > int(kernels::cuda_status().gpus.size()))
    throw WorkflowError(std::to_string(n) + " workers asked for, but " +
                        std::to_string(int(kernels::cuda_status().gpus.size())) + " GPU(s) are visible");

  std::vector<json::object> old_events;
  if (resuming) old_events = truncate_metrics(res.run_dir / "metrics.jsonl", saved.steps_done);
  std::unique_ptr<MetricsWriter> metrics;
  if (spec.outputs.metrics) metrics = std::make_unique<MetricsWriter>(res.run_dir / "metrics.jsonl");
  RunReport report = RunReport::from_metrics(old_events, spec.name);
  auto progress = ProgressDisplay::for_stderr(spec.schedule.log_every);

  caf::actor_system_config cfg;
  actors::register_types(cfg);
  cfg.set("logger.console", caf::atom("none"));
  caf::actor_system sys{cfg};

  // The trace is opened once the workers exist (its header lists their devices); the workers
  // register their actor names with the tracing object before that.
  auto tracing = std::make_shared<actors::Tracing>(nullptr);
  std::vector<std::unique_ptr<actors::LocalWorker>> workers;
  int64_t step = saved.steps_done, train_steps = saved.train_steps;
  try {
    auto transports = make_transports(n, device);
    for (int r = 0; r < n; ++r) {
      auto wo = worker_options(spec, device.is_cuda() ? siesta::Device::cuda(r) : device, r);
      wo.transport = transports[size_t(r)];
      workers.push_back(std::make_unique<actors::LocalWorker>(sys, std::move(wo), tracing));
    }
    if (spec.outputs.trace) {
      fs::path tp = res.run_dir / (resuming ? "trace.resume-" + timestamp() + ".jsonl" : "trace.jsonl");
      tracing->open(std::make_shared<actors::TraceWriter>(tp, trace_header(spec, device, workers)));
    }
  } catch (const std::exception& e) {
    res.exit_code = 1;
    res.error = e.what();
    if (metrics) metrics->write("error", {{"message", res.error}});
    return res;
  }

  std::vector<actors::WorkerHandles> handles;
  for (auto& w : workers) handles.push_back(w->handles());
  caf::scoped_actor self{sys};
  actors::StepPlan plan;
  plan.sleep_level = spec.engine.sleep_level.train;
  plan.wake_order = spec.engine.wake_order == WakeOrder::All ? actors::WakeOrder::All
                                                             : actors::WakeOrder::WeightsFirst;
  plan.offload_trainer = spec.trainer.offload_state;
  const train::Task& task = *workers[0]->task();
  actors::Coordinator coord(self, handles, plan, tracing, task);
  const int total = total_steps(spec);
  coord.on_phase([&](int64_t at, const std::string& stage, const std::string& phase) {
    ProgressState ps;
    ps.step = at;
    ps.total_steps = total;
    ps.stage = stage;
    ps.phase = phase;
    progress.phase(ps);
  });

  auto metric = [&](std::string_view ev, json::object o) {
    if (metrics) metrics->write(ev, o);
  };
  auto eval_pass = [&](int max_new, const std::string& why) {
    auto t0 = std::chrono::steady_clock::now();
    auto ev = coord.evaluate(step, spec.task.eval_prompts, max_new);
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (res.first_eval_reward < 0) res.first_eval_reward = ev.reward_mean;
    res.last_eval_reward = ev.reward_mean;
    json::array samples;
    for (auto& [p, c] : ev.samples) samples.push_back(json::object{{"prompt", p}, {"completion", c}});
    auto point = eval_point_from(ev);
    report.add_eval(point);
    if (metrics) metrics->write_eval(point, {{"ms", ms}, {"why", why}, {"samples", samples}});
    progress.eval_done(point);
    return ev;
  };
  auto checkpoint = [&] {
    auto file = coord.checkpoint(ckpt_dir.string());
    json::object st{{"steps_done", step}, {"train_steps", train_steps}, {"checkpoint", file}};
    write_file_atomically(ckpt_dir / "state.json", json::serialize(st));
    metric("checkpoint", {{"step", step}, {"file", file}});
  };

  const int default_eval_tokens = task.max_answer_chars() + 1;
  try {
    coord.start();
    if (resuming) {
      coord.resume(saved.checkpoint);
      progress.message("resumed " + res.run_dir.string() + " after step " + std::to_string(step));
    } else {
      metric("start", {{"workflow", spec.name}, {"device", device.str()}, {"workers", n},
                       {"total_steps", total}});
      if (spec.schedule.eval_every > 0) eval_pass(default_eval_tokens, "start");
    }
    int64_t stage_first = 0;   // global step number before the stage's first step
    bool interrupted = false;
    for (const auto& st : spec.stages) {
      const int steps = stage_steps(st);
      if (stage_first + steps <= step) {
        stage_first += steps;
        continue;   // done before the resume
      }
      const int64_t done_in_stage = step - stage_first;
      const auto type = stage_type(st);
      if (type != StageType::Eval) {
        actors::TrainStage ts;
        ts.lr = ts.min_lr = spec.trainer.lr;
        ts.warmup_steps = spec.trainer.warmup_steps;
        if (auto* s = std::get_if<SftStage>(&st)) {
          ts.kind = "sft";
          ts.lr = s->lr.value_or(spec.trainer.lr);
          ts.min_lr = ts.lr * 0.1;
          ts.total_steps = s->steps;
          ts.warmup_steps = std::min<int64_t>(ts.warmup_steps, s->steps);
          ts.sft_examples_per_step = s->examples_per_step;
        } else if (auto* g = std::get_if<GrpoStage>(&st)) {
          ts.kind = "grpo";
          ts.lr = ts.min_lr = g->lr.value_or(spec.trainer.lr);
          ts.warmup_steps = 0;
          ts.group_size = g->group_size;
          ts.clip_eps = float(g->clip_eps);
          ts.kl_coef = float(g->kl_coef);
        }
        // Training steps and optimizer steps are one to one.
        ts.start_step = train_steps - done_in_stage;
        coord.begin_stage(ts);
      }
      for (int64_t i = done_in_stage; i < steps; ++i) {
        if (opt.stop_requested && opt.stop_requested->load()) {
          interrupted = true;
          break;
        }
        ++step;
        if (type == StageType::Eval) {
          auto& e = std::get<EvalStage>(st);
          auto t0 = std::chrono::steady_clock::now();
          auto ev = eval_pass(e.max_new_tokens, "stage");
          StepRecord r;
          r.step = step;
          r.stage = "eval";
          r.phases.push_back({"eval", std::chrono::duration<double, std::milli>(
                                          std::chrono::steady_clock::now() - t0).count()});
          r.reward = ev.reward_mean;
          report.add(r);
          if (metrics) metrics->write_step(r);
          continue;
        }
        actors::StepRecord rec;
        if (auto* g = std::get_if<GrpoStage>(&st)) {
          actors::RolloutOptions ro;
          ro.prompts_per_step = g->prompts_per_step;
          ro.group_size = g->group_size;
          ro.temperature = float(g->temperature);
          ro.top_p = float(g->top_p);
          ro.max_new_tokens = g->max_new_tokens;
          ro.seed = uint64_t(spec.seeds.global);
          rec = coord.grpo_step(step, ro);
        } else {
          rec = coord.sft_step(step);
        }
        ++train_steps;
        auto r = step_record_from(rec);
        report.add(r);
        if (metrics) metrics->write_step(r);
        progress.step_done(r, total);
        if (spec.schedule.eval_every > 0 && train_steps % spec.schedule.eval_every == 0)
          eval_pass(default_eval_tokens, "schedule");
        if (spec.schedule.checkpoint_every > 0 && train_steps % spec.schedule.checkpoint_every == 0)
          checkpoint();
      }
      if (interrupted) break;
      stage_first += steps;
    }
    checkpoint();
    if (interrupted) {
      res.exit_code = 130;
      res.error = "interrupted; checkpoint written, continue with --resume " + res.run_dir.string();
      metric("interrupted", {{"step", step}});
    } else {
      metric("end", {{"step", step}, {"first_eval_reward", res.first_eval_reward},
                     {"last_eval_reward", res.last_eval_reward}});
    }
  } catch (const std::exception& e) {
    res.exit_code = 1;
    res.error = e.what();
    metric("error", {{"step", step}, {"message", res.error}});
  }
  progress.finish();
  res.steps_done = step;
  for (auto& w : workers) w->stop();
  try {
    if (spec.outputs.report && !report.records().empty()) {
      report.write(res.run_dir);
      std::cerr << report.summary_table();
    }
  } catch (const std::exception& e) {
    spdlog::warn("run report not written: {}", e.what());
  }
  workers.clear();
  return res;
}

}  // namespace siesta::workflows
