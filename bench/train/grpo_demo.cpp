// A CPU learning run on a verifiable task: SFT warm-up, then GRPO with rollouts from the naive
// sampler, evaluating greedy answers on held-out prompts. Prints the held-out reward curve;
// the last row compares the rise of the reward (first to last evaluation) with the 0.3 target,
// and also shows the part GRPO alone added after the warm-up.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "harness.hpp"
#include "siesta/allocator/pool.hpp"
#include "siesta/kernels/ops.hpp"
#include "siesta/model/presets.hpp"
#include "siesta/train.hpp"
#include "siesta/train/naive_rollout.hpp"

using namespace siesta;
using namespace siesta::train;

namespace {

struct DemoArgs {
  std::string preset = "tiny";
  std::string task = "sorting";
  int min_len = 2, max_len = 4;
  std::string alphabet;
  int sft_steps = 60, sft_batch = 32;
  double sft_lr = 3e-3;
  int grpo_steps = 60, prompts_per_step = 8, group = 8;
  double grpo_lr = 5e-4;
  float kl = 0.f;
  int eval_every = 20, eval_prompts = 64;
  uint64_t seed = 1;
};

DemoArgs parse(const std::vector<std::string>& rest) {
  DemoArgs a;
  for (size_t i = 0; i < rest.size(); ++i) {
    auto val = [&]() -> std::string {
      if (i + 1 >= rest.size()) {
        std::cerr << "grpo_demo: " << rest[i] << " needs a value\n";
        std::exit(2);
      }
      return rest[++i];
    };
    const std::string& k = rest[i];
    if (k == "--preset") a.preset = val();
    else if (k == "--task") a.task = val();
    else if (k == "--min-len") a.min_len = std::stoi(val());
    else if (k == "--max-len") a.max_len = std::stoi(val());
    else if (k == "--alphabet") a.alphabet = val();
    else if (k == "--sft-steps") a.sft_steps = std::stoi(val());
    else if (k == "--sft-batch") a.sft_batch = std::stoi(val());
    else if (k == "--sft-lr") a.sft_lr = std::stod(val());
    else if (k == "--grpo-steps") a.grpo_steps = std::stoi(val());
    else if (k == "--prompts") a.prompts_per_step = std::stoi(val());
    else if (k == "--group") a.group = std::stoi(val());
    else if (k == "--grpo-lr") a.grpo_lr = std::stod(val());
    else if (k == "--kl") a.kl = std::stof(val());
    else if (k == "--eval-every") a.eval_every = std::stoi(val());
    else if (k == "--eval-prompts") a.eval_prompts = std::stoi(val());
    else if (k == "--seed") a.seed = std::stoull(val());
    else {
      std::cerr << "grpo_demo: unknown option " << k
                << " (allowed: --preset --task --min-len --max-len --alphabet --sft-steps "
                   "--sft-batch --sft-lr --grpo-steps --prompts --group --grpo-lr --kl "
                   "--eval-every --eval-prompts --seed)\n";
      std::exit(2);
    }
  }
  return a;
}

struct EvalResult {
  double reward = 0, exact = 0;
};

EvalResult evaluate(Trainer& t, const Task& task, const std::vector<TaskExample>& set) {
  ByteTokenizer tok;
  std::vector<std::vector<int32_t>> prompts;
  for (const auto& ex : set) prompts.push_back(tok.encode(ex.prompt, true));
  auto outs = naive_rollout(t, prompts, {.samples_per_prompt = 1,
                                         .max_new_tokens = task.max_answer_chars() + 1,
                                         .temperature = 0.f, .seed = 0});
  EvalResult r;
  for (size_t i = 0; i < set.size(); ++i) {
    auto s = task.score(set[i], tok.decode(outs[i].completion_tokens));
    r.reward += s.total;
    r.exact += s.exact;
  }
  r.reward /= double(set.size());
  r.exact /= double(set.size());
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  auto opts = bench::parse_options(argc, argv, "grpo_demo",
                                   "SFT warm-up then GRPO on a toy task; held-out reward curve");
  DemoArgs a = parse(opts.rest);
  if (opts.quick) {
    a.sft_steps = std::min(a.sft_steps, 10);
    a.grpo_steps = std::min(a.grpo_steps, 6);
    a.eval_every = 5;
    a.eval_prompts = std::min(a.eval_prompts, 16);
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto secs = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };

  model::ModelConfig cfg = model::load_preset(a.preset);
  Task task({.kind = task_kind_from_name(a.task), .min_len = a.min_len, .max_len = a.max_len,
             .alphabet = a.alphabet, .seed = a.seed});
  const int max_new = task.max_answer_chars() + 1;
  TrainerOptions to;
  to.lr = {.peak_lr = a.sft_lr, .min_lr = a.sft_lr * 0.1,
           .warmup_steps = std::min(10, a.sft_steps), .total_steps = a.sft_steps};
  to.adamw = {.beta1 = 0.9f, .beta2 = 0.99f, .eps = 1e-8f, .weight_decay = 0.0f};
  to.max_grad_norm = 1.0;
  to.micro_batch_rows = std::max(a.sft_batch, a.prompts_per_step * a.group);
  to.max_seq_len = task.max_prompt_chars() + 1 + max_new + 1;
  to.grpo.kl_coef = a.kl;
  auto ops = kernels::make_cpu_ops();
  auto pool = allocator::Pool::create({.device = Device::cpu()});
  Trainer trainer(cfg, to, *ops, *pool);
  trainer.init_random(a.seed);
  const auto eval_set = task.eval_set(a.eval_prompts);
  std::printf("grpo_demo: preset %s (%lld parameters), task %s, %zu held-out prompts\n",
              a.preset.c_str(), (long long)cfg.num_parameters(), task.description().c_str(),
              eval_set.size());

  bench::Table table("grpo_demo", opts);
  std::vector<std::pair<std::string, EvalResult>> curve;
  auto eval_row = [&](const std::string& phase, int step) {
    EvalResult r = evaluate(trainer, task, eval_set);
    curve.emplace_back(phase, r);
    table.row({{"phase", phase}, {"step", int64_t(step)}, {"exact", r.exact},
               {"time_s", secs()}},
              r.reward, 1.0, "reward", r.reward >= 0 && r.reward <= 1 ? "ok" : "out of range");
    return r;
  };

  EvalResult start = eval_row("start", 0);
  ByteTokenizer tok;
  uint64_t data_pos = 0;
  for (int s = 1; s <= a.sft_steps; ++s) {
    std::vector<TaskExample> ex;
    for (int i = 0; i < a.sft_batch; ++i) ex.push_back(task.train_example(data_pos++));
    StepStats st = trainer.train_step(make_sft_batch(ex, tok));
    if (s % a.eval_every == 0 || s == a.sft_steps) {
      std::printf("  sft step %d: loss %.4f grad_norm %.3f lr %.2e\n", s, st.loss, st.grad_norm, st.lr);
      eval_row("sft", s);
    }
  }
  const EvalResult after_sft = curve.back().second;

  trainer.mutable_options().lr = {.peak_lr = a.grpo_lr, .min_lr = a.grpo_lr};
  if (a.kl > 0) trainer.snapshot_reference();
  for (int s = 1; s <= a.grpo_steps; ++s) {
    std::vector<TaskExample> ex;
    std::vector<std::vector<int32_t>> prompts;
    for (int i = 0; i < a.prompts_per_step; ++i) {
      ex.push_back(task.train_example(data_pos++));
      prompts.push_back(tok.encode(ex.back().prompt, true));
    }
    auto rollouts = naive_rollout(trainer, prompts,
                                  {.samples_per_prompt = a.group, .max_new_tokens = max_new,
                                   .temperature = 1.f, .seed = mix_seed(a.seed, uint64_t(s))});
    std::vector<double> rewards;
    double mean = 0;
    for (size_t i = 0; i < rollouts.size(); ++i) {
      rewards.push_back(task.reward(ex[i / size_t(a.group)], tok.decode(rollouts[i].completion_tokens)));
      mean += rewards.back();
    }
    mean /= double(rewards.size());
    TrainBatch b = make_grpo_batch(rollouts, group_advantages(rewards, a.group), tok);
    StepStats st = trainer.train_step(b);
    if (s % a.eval_every == 0 || s == a.grpo_steps) {
      std::printf("  grpo step %d: sample reward %.3f loss %.4f grad_norm %.3f ratio %.4f clip %.3f\n",
                  s, mean, st.loss, st.grad_norm, st.details.mean_ratio, st.details.clip_fraction);
      eval_row("grpo", s);
    }
  }
  const EvalResult end = curve.back().second;
  table.row({{"phase", std::string("rise first->last")}, {"step", int64_t(trainer.step())},
             {"exact", end.exact - start.exact}, {"time_s", secs()}},
            end.reward - start.reward, 0.3, "reward",
            end.reward - start.reward >= 0.3 ? "ok" : "below 0.3 target");
  table.row({{"phase", std::string("rise in grpo only")}, {"step", int64_t(a.grpo_steps)},
             {"exact", end.exact - after_sft.exact}, {"time_s", secs()}},
            end.reward - after_sft.reward, 0.0, "reward",
            end.reward >= after_sft.reward ? "ok" : "grpo lowered reward");
  table.note("limit of the eval rows: the maximum reward (1.0, exact match on every prompt);");
  table.note("rows: greedy answers on held-out prompts, reward with partial credit, exact rate.");
  return 0;
}
