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
  engine_status_.resize(workers_.size());
}

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

json::value Coordinator::plan_json() const {
  return json::object{{"sleep_level", plan_.sleep_level},
                      {"wake_order", plan_.wake_order == WakeOrder::All ? "all" : "weights_first"},
                      {"offload_trainer", plan_.offload_trainer},
                      {"rollout", plan_.rollout}};
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
  for (size_t r = 0; r < workers_.size(); ++r) {
    auto& w = workers_[r];
    auto st = ask<EngineStatus>(w.engine, "engine status", status_atom_v);
    engine_status_[r] = st;
    reserve(int(r), "engine", "weights", st.weights_bytes);
    reserve(int(r), "engine", "kv_cache", st.kv_cache_bytes);
    if (plan_.offload_trainer) {
      trainer_state_bytes_[r] = ask<uint64_t>(w.trainer, "trainer offload", offload_atom_v);
    }
  }
}

void Coordinator::phase(int64_t step, const std::string& name, StepRecord& rec,
                        const std::function<void()>& body) {
  for (auto& w : workers_)
    tracing_->record_phase(int(step), name, "worker/" + std::to_string(w.rank), plan_json());
  auto t0 = std::chrono::steady_clock::now();
  body();
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  rec.phase_ms.emplace_back(name, ms);
  rec.step_ms += ms;
  uint64_t used = memory(0).device_used_bytes;
  rec.device_used_peak = std::max(rec.device_used_peak, used);
}

void Coordinator::run_phases(int64_t step, const std::string& stage, StepRecord& rec,
                             const std::function<void()>& rollout,
                             const std::function<void()>& train) {
  rec.step = step;
  rec.stage = stage;
  for (const auto& name : plan_.phases()) {
    phase(step, name, rec, [&] {
      for (size_t r = 0; r < workers_.size(); ++r) {
        auto& w = workers_[r];
        int rank = int(r);
        if (name == "rollout") {
          if (r == 0) rollout();
        } else if (name == "sleep") {
          engine_status_[r] = ask<EngineStatus>(w.engine, "engine sleep", sleep_atom_v,
                                                int32_t(plan_.sleep_level));
          release(rank, "engine", "weights");
          release(rank, "engine", "kv_cache");
        } else if (name == "restore") {
          reserve(rank, "trainer", "train_state", trainer_state_bytes_[r]);
          ask<uint64_t>(w.trainer, "trainer restore", restore_atom_v);
        } else if (name == "train") {
          if (r == 0) {
            rec.engine_held_while_training = memory(0).held_bytes;
            train();
          }
        } else if (name == "offload") {
          trainer_state_bytes_[r] = ask<uint64_t>(w.trainer, "trainer offload", offload_atom_v);
          release(rank, "trainer", "train_state");
        } else if (name == "wake_weights" || name == "wake_all" || name == "wake_kv") {
          std::vector<std::string> tags;
          if (name != "wake_kv") {
            reserve(rank, "engine", "weights", engine_status_[r].weights_bytes);
            tags.push_back("weights");
          }
          if (name != "wake_weights") {
            reserve(rank, "engine", "kv_cache", engine_status_[r].kv_cache_bytes);
            tags.push_back("kv_cache");
          }
          engine_status_[r] = ask<EngineStatus>(w.engine, "engine wake", wake_atom_v,
                                                name == "wake_all" ? std::vector<std::string>{} : tags);
        } else if (name == "sync") {
          auto rep = ask<SyncReport>(w.syncer, "weight sync", sync_atom_v, ++sync_version_);
          if (r == 0 && rep.seconds > 0) rec.sync_gbps = double(rep.bytes) / rep.seconds / 1e9;
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
    req.seed = ro.seed * 1000003ull + uint64_t(step);
    for (int i = 0; i < ro.prompts_per_step; ++i) {
      examples.push_back(task_.train_example(uint64_t(step) * uint64_t(ro.prompts_per_step) + uint64_t(i)));
      req.prompts.push_back(examples.back().prompt);
    }
    batch = ask<RolloutBatch>(workers_[0].engine, "engine generate", generate_atom_v, req);
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
  StepPlan saved = plan_;
  plan_.rollout = true;
  run_phases(step, "grpo", rec, rollout, train);
  plan_ = saved;
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
  StepPlan saved = plan_;
  plan_.rollout = false;
  run_phases(step, "sft", rec, [] {}, train);
  plan_ = saved;
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
