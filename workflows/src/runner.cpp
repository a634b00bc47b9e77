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
#include "siesta/model/atomic_file.hpp"
#include "siesta/model/config.hpp"  // ModelError
#include "siesta/workflows/actor_records.hpp"
#include "siesta/workflows/diagnostics.hpp"
#include "siesta/workflows/load.hpp"
#include "siesta/workflows/metrics_writer.hpp"
#include "siesta/workflows/progress.hpp"
#include "siesta/workflows/run_report.hpp"

#include "runner_options.hpp"
#include "runner_remote.hpp"

namespace siesta::workflows {
namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

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
  try {
    model::replace_file_atomically(path, text);
  } catch (const model::ModelError& e) {  // the file system's refusal, in this layer's type
    throw WorkflowError(e.what());
  }
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

json::array ranks_json(const std::vector<RankInfo>& ranks) {
  json::array out;
  for (const auto& r : ranks)
    out.push_back(json::object{{"rank", r.rank}, {"device", r.device}, {"host", r.host}, {"pid", r.pid}});
  return out;
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
  const bool in_process = spec.devices.launch == Launch::InProcess;
  if (in_process && spec.devices.nodes > 1)
    throw WorkflowError("devices.nodes " + std::to_string(spec.devices.nodes) +
                        " needs worker processes: set devices.launch to processes or external");
  const int gpus_visible = int(kernels::cuda_status().gpus.size());
  if (device.is_cuda() && spec.devices.workers_per_node > gpus_visible)
    throw WorkflowError(std::to_string(spec.devices.workers_per_node) +
                        " workers per node asked for, but " + std::to_string(gpus_visible) +
                        " GPU(s) are visible");

  std::vector<json::object> old_events;
  if (resuming) old_events = truncate_metrics(res.run_dir / "metrics.jsonl", saved.steps_done);
  std::unique_ptr<MetricsWriter> metrics;
  if (spec.outputs.metrics) metrics = std::make_unique<MetricsWriter>(res.run_dir / "metrics.jsonl");
  RunReport report = RunReport::from_metrics(old_events, spec.name);
  auto progress = ProgressDisplay::for_stderr(spec.schedule.log_every);

  caf::actor_system_config cfg;
  actors::register_types(cfg);
  if (!in_process) cfg.load<caf::io::middleman>();   // worker processes join over TCP
  cfg.set("logger.console", caf::atom("none"));
  caf::actor_system sys{cfg};

  // The trace is opened once the workers exist (its header lists their devices); the workers
  // register their actor names with the tracing object before that.
  auto tracing = std::make_shared<actors::Tracing>(nullptr);
  std::vector<std::unique_ptr<actors::LocalWorker>> workers;   // the ranks in this process
  std::unique_ptr<RemoteRanks> remote;                         // the others (launch != in_process)
  std::vector<actors::WorkerHandles> handles;                   // every rank, in rank order
  std::vector<RankInfo> ranks;
  int64_t step = saved.steps_done, train_steps = saved.train_steps;
  // trace.jsonl, or trace.resume-<time>.jsonl after a resume; worker processes add .rank-N.
  const std::string trace_stem = resuming ? "trace.resume-" + timestamp() : "trace";
  try {
    if (in_process) {
      auto transports = make_transports(n, device);
      for (int r = 0; r < n; ++r) {
        auto dev = device.is_cuda() ? siesta::Device::cuda(r) : device;
        auto wo = worker_options(spec, dev, r);
        wo.transport = transports[size_t(r)];
        workers.push_back(std::make_unique<actors::LocalWorker>(sys, std::move(wo), tracing));
        handles.push_back(workers.back()->handles());
        ranks.push_back(local_rank_info(r, dev, *workers.back()));
      }
    } else {
      remote = std::make_unique<RemoteRanks>(
          sys, spec, device, opt.worker_program,
          spec.outputs.trace ? (res.run_dir / trace_stem).string() : std::string());
      auto wo = worker_options(spec, device, 0);
      wo.transport = remote->start();
      workers.push_back(std::make_unique<actors::LocalWorker>(sys, std::move(wo), tracing));
      handles.push_back(workers.back()->handles());
      ranks.push_back(local_rank_info(0, device, *workers.back()));
      // Guarded handles: the coordinator drives them exactly like rank 0's.
      for (const auto& w : remote->wait_ready()) {
        handles.push_back(w.handles);
        ranks.push_back({w.handles.rank, w.device, w.host, w.pid, w.budget_bytes, w.free_bytes});
      }
    }
    if (spec.outputs.trace) {
      fs::path tp = res.run_dir / (trace_stem + ".jsonl");
      tracing->open(std::make_shared<actors::TraceWriter>(tp, trace_header(spec, ranks)));
    }
  } catch (const std::exception& e) {
    res.exit_code = 1;
    res.error = e.what();
    if (metrics) metrics->write("error", {{"message", res.error}});
    if (remote) remote->finish(1, res.error);
    return res;
  }

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

  // A worker lost between requests (while rank 0 trained, say) ends the run at the next step.
  auto check_workers = [&] {
    if (remote)
      if (auto lost = remote->lost()) throw actors::RunError(*lost);
  };

  const int default_eval_tokens = task.max_answer_chars() + 1;
  try {
    coord.start();
    if (resuming) {
      coord.resume(saved.checkpoint);
      progress.message("resumed " + res.run_dir.string() + " after step " + std::to_string(step));
    } else {
      metric("start", {{"workflow", spec.name}, {"device", device.str()}, {"workers", n},
                       {"total_steps", total}, {"ranks", ranks_json(ranks)}});
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
        check_workers();
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
    check_workers();
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
    // Name the lost worker first: the request that failed may be another rank's (rank 0's
    // broadcast breaks off when its peer dies). No checkpoint: the step did not complete, so
    // the last one written stays the one --resume continues from.
    if (remote)
      if (auto why = remote->explain_loss()) {
        // "engine wake failed: rank 1: <the loss again>" -> "during engine wake".
        std::string what = e.what(), during = what;
        if (auto lost = remote->lost(); lost && what.find(*lost) != std::string::npos)
          during = "during " + what.substr(0, what.find(" failed"));
        res.error = *why + "; the run stopped in step " + std::to_string(step) + " (" + during + ")";
      }
    metric("error", {{"step", step}, {"message", res.error}});
  }
  progress.finish();
  res.steps_done = step;
  for (auto& w : workers) w->stop();
  if (remote) remote->finish(res.exit_code, res.exit_code == 0 ? "completed" : res.error);
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
