#include "siesta/actors/coordinator.hpp"

#include <algorithm>

namespace siesta::actors {
namespace json = boost::json;

Coordinator::Coordinator(caf::scoped_actor& self, std::vector<WorkerHandles> workers, StepPlan plan,
                         std::shared_ptr<Tracing> tracing, const train::Task& task,
                         std::chrono::milliseconds timeout)
    : self_(self), workers_(std::move(workers)), plan_(plan), tracing_(std::move(tracing)),
      task_(task), timeout_(timeout) {
  if (workers_.empty()) throw RunError("a run needs at least one worker");
  tracing_->name(self_->address(), "coordinator");
  trainer_state_bytes_.assign(workers_.size(), 0);
  kept_for_sync_.assign(workers_.size(), 0);
  engine_status_.resize(workers_.size());
}

namespace {
// The step's plan as the trace records it with each phase (what replay re-drives).
json::value plan_json(const StepPlan& p) {
  return json::object{{"sleep_level", p.sleep_level},
                      {"wake_order", p.wake_order == WakeOrder::All ? "all" : "weights_first"},
                      {"offload_trainer", p.offload_trainer},
                      {"rollout", p.rollout}};
}
}  // namespace

template <class R, class Handle, class... Ts>
R Coordinator::ask(const Handle& h, const char* what, Ts&&... xs) {
  R out{};
  std::string err;
  self_->request(h, timeout_, std::forward<Ts>(xs)...)
      .receive([&](R& r) { out = std::move(r); },
               [&](caf::error& e) { err = self_->system().render(e); });
  if (!err.empty()) throw RunError(std::string(what) + " failed: " + err);
  return out;
}

// Sends every worker its request first (send(r) makes rank r's), then collects the replies:
// collectives (the weight broadcast) need every rank inside the call at once, and the GPUs
// work in parallel.
template <class R, class Send>
std::vector<R> Coordinator::gather(const char* what, Send send) {
  using handle_t = decltype(send(size_t(0)));
  std::vector<handle_t> pending;
  for (size_t r = 0; r < workers_.size(); ++r) pending.push_back(send(r));
  std::vector<R> out(workers_.size());
  std::string err;
  for (size_t r = 0; r < pending.size(); ++r)
    pending[r].receive([&](R& x) { out[r] = std::move(x); },
                       [&](caf::error& e) {
                         if (err.empty())
                           err = "rank " + std::to_string(r) + ": " + self_->system().render(e);
                       });
  if (!err.empty()) throw RunError(std::string(what) + " failed: " + err);
  return out;
}

// The same request to every worker's actor that pick chooses.
template <class R, class Pick, class... Ts>
std::vector<R> Coordinator::ask_all(Pick pick, const char* what, Ts... xs) {
  return gather<R>(what, [&](size_t r) { return self_->request(pick(workers_[r]), timeout_, xs...); });
}


void Coordinator::reserve(int rank, const std::string& owner, const std::string& tag, uint64_t bytes) {
  ask<uint64_t>(workers_[size_t(rank)].memory, "memory reserve", reserve_atom_v,
                MemoryRequest{owner, tag, bytes});
}

void Coordinator::release(int rank, const std::string& owner, const std::string& tag) {
  ask<uint64_t>(workers_[size_t(rank)].memory, "memory release", release_atom_v,
                MemoryRequest{owner, tag, 0});
}

MemorySnapshot Coordinator::memory(int rank) {
  return ask<MemorySnapshot>(workers_[size_t(rank)].memory, "memory sample", sample_atom_v);
}

void Coordinator::start() {
  auto engine = [](const WorkerHandles& w) { return w.engine; };
  engine_status_ = ask_all<EngineStatus>(engine, "engine status", status_atom_v);
  for (size_t r = 0; r < workers_.size(); ++r) {
    reserve(int(r), "engine", "weights", engine_status_[r].weights_bytes);
    reserve(int(r), "engine", "kv_cache", engine_status_[r].kv_cache_bytes);
  }
  // The engines start from the trainer's weights, whatever they were built with.
  ask_all<SyncReport>([](const WorkerHandles& w) { return w.syncer; }, "initial weight sync",
                      sync_atom_v, int64_t(sync_version_));
  if (plan_.offload_trainer) {
    for (size_t r = 0; r < workers_.size(); ++r)
      if (workers_[r].trainer)
        trainer_state_bytes_[r] =
            ask<uint64_t>(workers_[r].trainer, "trainer offload", offload_atom_v, false);
  }
}

void Coordinator::begin_stage(const TrainStage& stage) {
  for (auto& w : workers_)
    if (w.trainer) ask<int64_t>(w.trainer, "trainer stage", stage_atom_v, stage);
}

int64_t Coordinator::resume(const std::string& checkpoint_file) {
  int64_t steps = 0;
  for (auto& w : workers_)
    if (w.trainer) steps = ask<int64_t>(w.trainer, "trainer resume", resume_atom_v, checkpoint_file);
  ask_all<SyncReport>([](const WorkerHandles& w) { return w.syncer; }, "weight sync after resume",
                      sync_atom_v, int64_t(++sync_version_));
  return steps;
}

void Coordinator::phase(int64_t step, const std::string& name, const StepPlan& plan,
                        StepRecord& rec, const std::function<void()>& body) {
  for (auto& w : workers_)
    tracing_->record_phase(int(step), name, "worker/" + std::to_string(w.rank), plan_json(plan));
  if (on_phase_) on_phase_(step, rec.stage, name);
  auto t0 = std::chrono::steady_clock::now();
  body();
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  rec.phase_ms.emplace_back(name, ms);
  rec.step_ms += ms;
  auto m = memory(0);
  rec.phase_memory.push_back({m.device_used_bytes, m.engine_held_bytes});
  rec.device_used_peak = std::max(rec.device_used_peak, m.device_used_bytes);
}

void Coordinator::run_phases(int64_t step, const std::string& stage, StepRecord& rec,
                             const StepPlan& plan,
                             const std::function<void()>& rollout,
                             const std::function<void()>& train) {
  rec.step = step;
  rec.stage = stage;
  const size_t n = workers_.size();
  auto engine = [](const WorkerHandles& w) { return w.engine; };
  auto has_trainer = [&](size_t r) { return bool(workers_[r].trainer); };
  for (const auto& name : plan.phases()) {
    phase(step, name, plan, rec, [&] {
      if (name == "rollout") {
        rollout();
      } else if (name == "sleep") {
        engine_status_ = ask_all<EngineStatus>(engine, "engine sleep", sleep_atom_v,
                                               int32_t(plan.sleep_level));
        for (size_t r = 0; r < n; ++r) {
          release(int(r), "engine", "weights");
          release(int(r), "engine", "kv_cache");
        }
      } else if (name == "restore") {
        for (size_t r = 0; r < n; ++r)
          if (has_trainer(r)) {
            reserve(int(r), "trainer", "train_state", trainer_state_bytes_[r]);
            ask<uint64_t>(workers_[r].trainer, "trainer restore", restore_atom_v);
          }
      } else if (name == "train") {
        rec.engine_held_while_training = engine_status_[0].device_used_bytes;
        train();
      } else if (name == "offload") {
        // Optimizer state and gradients leave; the weights stay until the sync has sent them.
        for (size_t r = 0; r < n; ++r)
          if (has_trainer(r)) {
            uint64_t freed = ask<uint64_t>(workers_[r].trainer, "trainer offload", offload_atom_v, true);
            release(int(r), "trainer", "train_state");
            kept_for_sync_[r] = trainer_state_bytes_[r] - std::min(trainer_state_bytes_[r], freed);
            reserve(int(r), "trainer", "sync_weights", kept_for_sync_[r]);
          }
      } else if (name == "wake_weights" || name == "wake_all" || name == "wake_kv") {
        std::vector<std::string> tags;
        for (size_t r = 0; r < n; ++r) {
          if (name != "wake_kv") reserve(int(r), "engine", "weights", engine_status_[r].weights_bytes);
          if (name != "wake_weights")
            reserve(int(r), "engine", "kv_cache", engine_status_[r].kv_cache_bytes);
        }
        if (name == "wake_weights") tags = {"weights"};
        if (name == "wake_kv") tags = {"kv_cache"};
        engine_status_ = ask_all<EngineStatus>(engine, "engine wake", wake_atom_v, tags);
      } else if (name == "sync") {
        auto reps = ask_all<SyncReport>([](const WorkerHandles& w) { return w.syncer; },
                                        "weight sync", sync_atom_v, int64_t(++sync_version_));
        if (reps[0].seconds > 0) rec.sync_gbps = double(reps[0].bytes) / reps[0].seconds / 1e9;
        if (plan.offload_trainer)
          for (size_t r = 0; r < n; ++r)
            if (has_trainer(r)) {
              ask<uint64_t>(workers_[r].trainer, "trainer offload", offload_atom_v, false);
              release(int(r), "trainer", "sync_weights");
            }
      }
    });
  }
}

StepRecord Coordinator::grpo_step(int64_t step, const RolloutOptions& ro) {
  StepRecord rec;
  RolloutBatch batch;
  std::vector<train::TaskExample> examples;
  auto rollout = [&] {
    RolloutRequest req;
    req.step = step;
    req.n = ro.group_size;
    req.temperature = ro.temperature;
    req.top_p = ro.top_p;
    req.max_new_tokens = ro.max_new_tokens;
    for (int i = 0; i < ro.prompts_per_step; ++i)
      examples.push_back(task_.train_example(uint64_t(step) * uint64_t(ro.prompts_per_step) + uint64_t(i)));
    // Prompt i goes to engine i % workers; every engine generates its share at once.
    const size_t n = workers_.size();
    std::vector<RolloutRequest> reqs(n, req);
    for (size_t w = 0; w < n; ++w) reqs[w].seed = (ro.seed * 1000003ull + uint64_t(step)) * 7919ull + w;
    for (size_t i = 0; i < examples.size(); ++i) reqs[i % n].prompts.push_back(examples[i].prompt);
    auto parts = gather<RolloutBatch>("engine generate", [&](size_t w) {
      return self_->request(workers_[w].engine, timeout_, generate_atom_v, reqs[w]);
    });
    batch = RolloutBatch{};
    batch.step = step;
    for (size_t w = 0; w < n; ++w) {
      for (auto& r : parts[w].rollouts) {
        r.prompt_index = int32_t(size_t(r.prompt_index) * n + w);
        batch.rollouts.push_back(std::move(r));
      }
      batch.generated_tokens += parts[w].generated_tokens;
      batch.seconds = std::max(batch.seconds, parts[w].seconds);
    }
    double sum = 0;
    for (auto& r : batch.rollouts) {
      r.reward = float(task_.reward(examples.at(size_t(r.prompt_index)), r.text));
      sum += r.reward;
    }
    rec.reward_mean = batch.rollouts.empty() ? 0 : sum / double(batch.rollouts.size());
    rec.generated_tokens = batch.generated_tokens;
  };
  auto train = [&] {
    auto rep = ask<TrainReport>(workers_[0].trainer, "trainer train", train_atom_v, batch);
    rec.loss = rep.loss;
    rec.grad_norm = rep.grad_norm;
    rec.lr = rep.lr;
    rec.trained_tokens = rep.tokens;
  };
  StepPlan plan = plan_;
  plan.rollout = true;
  run_phases(step, "grpo", rec, plan, rollout, train);
  return rec;
}

StepRecord Coordinator::sft_step(int64_t step) {
  StepRecord rec;
  auto train = [&] {
    auto rep = ask<TrainReport>(workers_[0].trainer, "trainer sft", sft_atom_v, step);
    rec.loss = rep.loss;
    rec.grad_norm = rep.grad_norm;
    rec.lr = rep.lr;
    rec.trained_tokens = rep.tokens;
  };
  StepPlan plan = plan_;
  plan.rollout = false;
  run_phases(step, "sft", rec, plan, [] {}, train);
  return rec;
}

EvalRecord Coordinator::evaluate(int64_t step, int prompts, int max_new_tokens) {
  EvalRecord ev;
  ev.step = step;
  auto set = task_.eval_set(prompts);
  RolloutRequest req;
  req.step = step;
  req.n = 1;
  req.temperature = 0.f;   // greedy: the policy's best answer
  req.max_new_tokens = max_new_tokens;
  for (auto& ex : set) req.prompts.push_back(ex.prompt);
  auto batch = ask<RolloutBatch>(workers_[0].engine, "engine generate (eval)", generate_atom_v, req);
  double sum = 0, exact = 0;
  for (auto& r : batch.rollouts) {
    auto s = task_.score(set.at(size_t(r.prompt_index)), r.text);
    sum += s.total;
    exact += s.exact ? 1 : 0;
    if (ev.samples.size() < 3) ev.samples.emplace_back(set.at(size_t(r.prompt_index)).prompt, r.text);
  }
  ev.prompts = int(batch.rollouts.size());
  ev.reward_mean = ev.prompts ? sum / ev.prompts : 0;
  ev.exact_match = ev.prompts ? exact / ev.prompts : 0;
  return ev;
}

std::string Coordinator::checkpoint(const std::string& folder) {
  return ask<std::string>(workers_[0].trainer, "trainer checkpoint", ckpt_atom_v, folder);
}

}  // namespace siesta::actors
