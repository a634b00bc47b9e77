// A training application that embeds siesta: it brings its own trainer (REINFORCE with a
// leave-one-out baseline, reinforce_trainer.hpp) and lets siesta's inference engine, memory
// manager and weight syncer actors do the rest of each colocated RL step:
//
//   rollout -> engine.sleep(2) -> our trainer: restore, train, offload -> engine.wake(weights)
//   -> syncer copies our weights into the engine -> engine.wake(kv_cache)
//
// It uses only public headers (siesta/actors/embed.hpp and the model/kernels/allocator ones
// its trainer needs), prints one line per step, then checks that the engine now holds exactly
// the weights our trainer produced, and exits 0 (1 when a check fails, 2 for a bad argument).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "reinforce_trainer.hpp"
#include "siesta/actors/embed.hpp"
#include "siesta/model/weights.hpp"

using namespace siesta;

namespace {

struct Args {
  int steps = 6;
  int prompts = 8, group = 8, max_new_tokens = 5;
  double lr = 3e-3;
  uint64_t seed = 1;
  std::string model = "tiny";
  Device device = Device::cpu();
  std::string trace, checkpoint;
};

[[noreturn]] void usage_error(const std::string& what) {
  std::cerr << "embed_trainer: error: " << what << "\n"
            << "usage: embed_trainer [--steps N>=1] [--prompts N>=1] [--group N>=2] [--lr X>0] "
               "[--seed N] [--model PRESET|DIR] [--device cpu|cuda:I] [--trace FILE] "
               "[--checkpoint DIR]\n";
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage_error(k + " needs a value");
      return argv[++i];
    };
    auto integer = [&](int min) {
      std::string v = value();
      char* end = nullptr;
      long n = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end || n < min || n > 1000000)
        usage_error(k + " takes an integer in [" + std::to_string(min) + ", 1000000] (got '" + v + "')");
      return int(n);
    };
    if (k == "--steps") a.steps = integer(1);
    else if (k == "--prompts") a.prompts = integer(1);
    else if (k == "--group") a.group = integer(2);   // leave-one-out needs two samples a prompt
    else if (k == "--seed") a.seed = uint64_t(integer(0));
    else if (k == "--model") a.model = value();
    else if (k == "--trace") a.trace = value();
    else if (k == "--checkpoint") a.checkpoint = value();
    else if (k == "--lr") {
      std::string v = value();
      char* end = nullptr;
      a.lr = std::strtod(v.c_str(), &end);
      if (v.empty() || *end || !(a.lr > 0) || !std::isfinite(a.lr))
        usage_error("--lr takes a number > 0 (got '" + v + "')");
    } else if (k == "--device") {
      std::string v = value();
      if (v == "cpu") a.device = Device::cpu();
      else if (v.rfind("cuda:", 0) == 0 && v.size() > 5 && std::strspn(v.c_str() + 5, "0123456789") == v.size() - 5)
        a.device = Device::cuda(std::stoi(v.substr(5)));
      else usage_error("--device takes cpu or cuda:I (got '" + v + "')");
    } else {
      usage_error("unknown argument '" + k + "'");
    }
  }
  return a;
}

// True when the engine holds exactly our parameters, cast to its dtype.
bool engine_holds(infer::InferenceEngine& engine, const model::ModelConfig& cfg,
                  std::vector<float>& params, size_t& tensors, size_t& bytes) {
  const DType dt = engine.weight_dtype();
  tensors = bytes = 0;
  // Named: named() refers into the ModelWeights, which a temporary would not keep alive.
  const model::ModelWeights host = model::bind_weights(cfg, params.data(), DType::F32, Device::cpu());
  for (const auto& t : host.named()) {
    std::vector<std::byte> want(size_t(t.view.numel()) * dtype_size(dt));
    convert_host(t.view.data, DType::F32, want.data(), dt, size_t(t.view.numel()));
    if (engine.read_weight(t.name) != want) {
      std::cerr << "embed_trainer: engine tensor " << t.name << " differs from the trainer's\n";
      return false;
    }
    ++tensors;
    bytes += want.size();
  }
  return true;
}

int run(const Args& a) {
  embed_example::ReinforceOptions ro;
  ro.model = a.model;
  ro.device = a.device;
  ro.seed = a.seed;
  ro.micro_batch_rows = 32;
  ro.max_seq_len = 64;
  auto trainer = std::make_shared<embed_example::ReinforceTrainer>(ro);
  std::vector<float> initial = trainer->params_host();

  actors::WorkerOptions w;
  w.model = a.model;
  w.device = a.device;
  w.task = train::TaskSpec{.kind = train::TaskKind::Sorting, .min_len = 2, .max_len = 4};
  w.engine.max_num_seqs = a.prompts * a.group;   // one step's rollouts decode together
  w.engine.max_model_len = 64;
  w.engine.kv_cache_bytes = 8ull << 20;
  w.engine.enable_cuda_graphs = false;
  w.seed = a.seed;
  w.trainer_backend = trainer;   // siesta's built-in trainer is not even constructed
  actors::RuntimeOptions opts;
  opts.trace_file = a.trace;
  actors::Runtime rt(std::move(w), opts);

  auto& c = rt.coordinator();
  c.start();   // engines take the trainer's weights; the trainer's state leaves the device
  actors::TrainStage stage;
  stage.kind = "grpo";
  stage.lr = stage.min_lr = a.lr;
  stage.group_size = a.group;
  c.begin_stage(stage);
  const int eval_prompts = 32;
  auto before = c.evaluate(0, eval_prompts, a.max_new_tokens);
  std::printf("embed_trainer: model %s on %s, task %s, REINFORCE (leave-one-out baseline) + Adam, "
              "lr %g, %d prompts x %d samples a step\n",
              a.model.c_str(), a.device.str().c_str(), rt.task().description().c_str(), a.lr,
              a.prompts, a.group);

  actors::RolloutOptions ro_step;
  ro_step.prompts_per_step = a.prompts;
  ro_step.group_size = a.group;
  ro_step.max_new_tokens = a.max_new_tokens;
  ro_step.seed = a.seed;
  std::vector<double> rewards;
  for (int s = 1; s <= a.steps; ++s) {
    auto rec = c.grpo_step(s, ro_step);
    rewards.push_back(rec.reward_mean);
    std::printf("step %d reward %.3f loss %+.4f grad_norm %.3f trained_tokens %lld step_ms %.1f "
                "sync_gbps %.3f\n",
                s, rec.reward_mean, rec.loss, rec.grad_norm, (long long)rec.trained_tokens,
                rec.step_ms, rec.sync_gbps);
    std::fflush(stdout);
  }
  auto after = c.evaluate(a.steps, eval_prompts, a.max_new_tokens);
  // Mean rollout reward of the first and the last quarter of the steps (one step at least).
  const size_t q = std::max<size_t>(1, rewards.size() / 4);
  double first = 0, last = 0;
  for (size_t i = 0; i < q; ++i) {
    first += rewards[i] / double(q);
    last += rewards[rewards.size() - 1 - i] / double(q);
  }
  std::printf("rollout reward: first %zu steps %.3f, last %zu steps %.3f\n", q, first, q, last);
  std::printf("held-out reward %.3f -> %.3f (%d greedy prompts)\n", before.reward_mean,
              after.reward_mean, after.prompts);

  // The trainer actor is idle between steps, so the application may read its trainer here.
  std::vector<float> now = trainer->params_host();
  double max_delta = 0;
  for (size_t i = 0; i < now.size(); ++i) max_delta = std::max(max_delta, double(std::fabs(now[i] - initial[i])));
  size_t tensors = 0, bytes = 0;
  const bool synced = engine_holds(rt.worker().engine(), trainer->config(), now, tensors, bytes);
  std::printf("trainer steps %lld, weights changed by max |dw| %.3g\n", (long long)trainer->steps(), max_delta);
  if (synced)
    std::printf("weights synced: engine holds the trainer's weights (%zu tensors, %zu bytes)\n", tensors, bytes);
  if (!a.checkpoint.empty()) std::printf("checkpoint: %s\n", c.checkpoint(a.checkpoint).c_str());
  if (!synced || trainer->steps() == 0 || max_delta == 0) {
    std::cerr << "embed_trainer: FAILED: " << (synced ? "" : "the engine does not hold the trainer's weights; ")
              << (max_delta == 0 ? "the trainer never changed its weights" : "") << "\n";
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a = parse(argc, argv);
  try {
    return run(a);
  } catch (const std::exception& e) {
    std::cerr << "embed_trainer: error: " << e.what() << "\n";
    return 1;
  }
}
