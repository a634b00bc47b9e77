// Trainer on the CPU backend: learning, accumulation, GRPO against rollouts, KL reference,
// offload/restore, checkpoint kill-and-resume, refusal of corrupt / mismatched checkpoints.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "siesta/train/error.hpp"
#include "siesta/train/naive_rollout.hpp"
#include "train_fixture.hpp"

using namespace siesta;
using namespace siesta::train;
using namespace siesta::train::testing;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("siesta_trainer_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

}  // namespace

TEST(Trainer, SftStepsReduceTheLossOnABatch) {
  CpuRig rig;
  auto t = rig.make();
  const TrainBatch b = sft_batch(0, 8);
  StepStats first = t->train_step(b), last;
  EXPECT_EQ(first.step, 1);
  EXPECT_GT(first.tokens, 0);
  EXPECT_GT(first.grad_norm, 0);
  EXPECT_DOUBLE_EQ(first.lr, t->options().lr.lr_at(0));
  // Loss of a random model is about log(vocab) per token.
  EXPECT_NEAR(first.loss, std::log(264.0), 0.5);
  for (int i = 0; i < 8; ++i) last = t->train_step(b);
  EXPECT_LT(last.loss, first.loss - 0.5);
}

TEST(Trainer, GradientAccumulationOverMicroBatchesEqualsOneBigBatch) {
  CpuRig rig;
  TrainerOptions whole = tiny_options(), split = tiny_options();
  whole.micro_batch_rows = 8;
  split.micro_batch_rows = 3;   // 3 + 3 + 2 rows
  auto a = rig.make(whole, 5);
  auto b = rig.make(split, 5);
  const TrainBatch batch = sft_batch(100, 8);
  StepStats sa = a->train_step(batch), sb = b->train_step(batch);
  EXPECT_NEAR(sa.loss, sb.loss, 1e-6);
  EXPECT_NEAR(sa.grad_norm, sb.grad_norm, 1e-5 * sa.grad_norm);
  auto wa = a->master_weights_host(), wb = b->master_weights_host();
  double max_diff = 0;
  for (size_t i = 0; i < wa.size(); ++i) max_diff = std::max(max_diff, double(std::abs(wa[i] - wb[i])));
  EXPECT_LT(max_diff, 1e-6);
}

TEST(Trainer, ClipsTheGlobalGradientNorm) {
  CpuRig rig;
  TrainerOptions o = tiny_options();
  o.max_grad_norm = 1e-3;
  auto t = rig.make(o);
  StepStats s = t->train_step(sft_batch(0, 4));
  EXPECT_GT(s.grad_norm, 1e-3);
  EXPECT_NEAR(s.clip_coef, 1e-3 / (s.grad_norm + 1e-6), 1e-12);
  // The state's gradients were scaled before the update: their norm is now the limit.
  EXPECT_NEAR(t->state().grad_norm(), 1e-3, 1e-6);
}

TEST(Trainer, GrpoFirstStepRatioIsOneAgainstNaiveRolloutLogprobs) {
  CpuRig rig;
  auto t = rig.make();
  Task task({.kind = TaskKind::Addition, .min_len = 1, .max_len = 1, .seed = 2});
  ByteTokenizer tok;
  std::vector<std::vector<int32_t>> prompts;
  std::vector<TaskExample> ex;
  for (int i = 0; i < 2; ++i) {
    ex.push_back(task.train_example(uint64_t(i)));
    prompts.push_back(tok.encode(ex.back().prompt, true));
  }
  auto rollouts = naive_rollout(*t, prompts, {.samples_per_prompt = 4, .max_new_tokens = 4,
                                              .temperature = 1.f, .seed = 7});
  ASSERT_EQ(rollouts.size(), 8u);
  std::vector<double> rewards;
  for (size_t i = 0; i < rollouts.size(); ++i) {
    EXPECT_LE(rollouts[i].completion_tokens.size(), 4u);
    rewards.push_back(task.reward(ex[i / 4], tok.decode(rollouts[i].completion_tokens)));
  }
  // Same seed, same rollouts.
  auto again = naive_rollout(*t, prompts, {.samples_per_prompt = 4, .max_new_tokens = 4,
                                           .temperature = 1.f, .seed = 7});
  for (size_t i = 0; i < rollouts.size(); ++i)
    EXPECT_EQ(again[i].completion_tokens, rollouts[i].completion_tokens);

  const TrainBatch b = make_grpo_batch(rollouts, group_advantages(rewards, 4), tok);
  const std::vector<float> lp = t->logprobs(b);
  for (size_t i = 0; i < lp.size(); ++i) {
    if (b.mask[i] != 0.f) {
      EXPECT_NEAR(lp[i], b.old_logprobs[i], 1e-4) << "token " << i;
    }
  }
  StepStats s = t->train_step(b);
  EXPECT_NEAR(s.details.mean_ratio, 1.0, 1e-4);
  EXPECT_EQ(s.details.clip_fraction, 0.0);
  EXPECT_EQ(s.tokens, b.trained_tokens());
}

TEST(Trainer, KlToAFrozenReferenceStartsAtZeroAndGrows) {
  CpuRig rig;
  TrainerOptions o = tiny_options();
  o.grpo.kl_coef = 0.1f;
  auto t = rig.make(o);
  TrainBatch b = sft_batch(0, 4);
  b.old_logprobs = t->logprobs(b);
  b.objective = Objective::Grpo;
  b.advantages = {1.f, -1.f, 0.5f, -0.5f};
  EXPECT_THROW(t->train_step(b), TrainError);   // no reference yet
  t->snapshot_reference();
  EXPECT_TRUE(rig.pool->is_sleeping(kTagReference));   // kept off the device between uses
  StepStats s1 = t->train_step(b);
  EXPECT_NEAR(s1.details.kl, 0.0, 1e-9);
  StepStats s2 = t->train_step(b);
  EXPECT_GT(s2.details.kl, 0.0);
  EXPECT_TRUE(rig.pool->is_sleeping(kTagReference));
}

TEST(Trainer, OffloadAndRestoreKeepTrainingBitExact) {
  CpuRig ra, rb;
  auto a = ra.make(), b = rb.make();
  for (int i = 0; i < 2; ++i) {
    a->train_step(sft_batch(uint64_t(4 * i), 4));
    b->train_step(sft_batch(uint64_t(4 * i), 4));
  }
  auto before = b->master_weights_host();
  b->offload_state();
  EXPECT_TRUE(b->state_offloaded());
  EXPECT_TRUE(rb.pool->is_sleeping(kTagActivations));
  EXPECT_THROW(b->train_step(sft_batch(8, 4)), TrainError);
  b->restore_state();
  auto after = b->master_weights_host();
  ASSERT_EQ(std::memcmp(before.data(), after.data(), before.size() * 4), 0);
  StepStats sa = a->train_step(sft_batch(8, 4)), sb = b->train_step(sft_batch(8, 4));
  EXPECT_EQ(sa.loss, sb.loss);
  EXPECT_EQ(sa.grad_norm, sb.grad_norm);
  auto wa = a->master_weights_host(), wb = b->master_weights_host();
  EXPECT_EQ(std::memcmp(wa.data(), wb.data(), wa.size() * 4), 0);
}

TEST(TrainerCheckpoint, KillAndResumeGivesTheSameNextStepLoss) {
  const fs::path dir = temp_dir("resume");
  const fs::path ckpt = dir / "step3.ckpt";
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Child: train 3 steps, checkpoint, take one more step that is never saved, then die.
    int code = 0;
    try {
      CpuRig rig;
      auto t = rig.make();
      Rng rng(11);
      for (int s = 0; s < 3; ++s) {
        rng.next();
        t->train_step(sft_batch(uint64_t(4 * s), 4));
      }
      t->save_checkpoint(ckpt, {rng.state(), 12, "child"});
      t->train_step(sft_batch(12, 4));
      ::kill(::getpid(), SIGKILL);
    } catch (...) {
      code = 3;
    }
    ::_exit(code);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exited with " << WEXITSTATUS(status);
  EXPECT_EQ(WTERMSIG(status), SIGKILL);

  // Uninterrupted run.
  CpuRig ra;
  auto a = ra.make();
  Rng rng_a(11);
  for (int s = 0; s < 3; ++s) {
    rng_a.next();
    a->train_step(sft_batch(uint64_t(4 * s), 4));
  }
  StepStats next_a = a->train_step(sft_batch(12, 4));

  // Resume into a trainer initialised differently: everything must come from the file.
  CpuRig rb;
  auto b = rb.make(tiny_options(), 999);
  TrainProgress p = b->load_checkpoint(ckpt);
  EXPECT_EQ(b->step(), 3);
  EXPECT_EQ(p.data_position, 12u);
  EXPECT_EQ(p.extra, "child");
  EXPECT_EQ(p.rng, rng_a.state());
  StepStats next_b = b->train_step(sft_batch(p.data_position, 4));
  EXPECT_EQ(next_b.step, next_a.step);
  EXPECT_EQ(next_b.lr, next_a.lr);
  EXPECT_EQ(next_b.loss, next_a.loss);
  EXPECT_EQ(next_b.grad_norm, next_a.grad_norm);
  auto wa = a->master_weights_host(), wb = b->master_weights_host();
  EXPECT_EQ(std::memcmp(wa.data(), wb.data(), wa.size() * 4), 0);
  fs::remove_all(dir);
}

TEST(TrainerCheckpoint, CorruptOrMismatchedCheckpointIsRefusedAndStateUntouched) {
  const fs::path dir = temp_dir("refuse");
  CpuRig rig;
  auto t = rig.make();
  t->train_step(sft_batch(0, 4));
  t->save_checkpoint(dir / "a.ckpt", {});
  fs::copy_file(dir / "a.ckpt", dir / "bad.ckpt");
  {
    std::fstream f(dir / "bad.ckpt", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(4096);
    char c = 0x11;
    f.write(&c, 1);
  }
  auto other = rig.make(tiny_options(), 4);
  auto before = other->master_weights_host();
  try {
    other->load_checkpoint(dir / "bad.ckpt");
    ADD_FAILURE() << "corrupt checkpoint was accepted";
  } catch (const TrainError& e) {
    EXPECT_NE(std::string(e.what()).find("checksum mismatch"), std::string::npos) << e.what();
  }
  auto after = other->master_weights_host();
  EXPECT_EQ(std::memcmp(before.data(), after.data(), before.size() * 4), 0);
  EXPECT_EQ(other->step(), 0);

  model::ModelConfig deeper = tiny_config();
  deeper.num_hidden_layers = 3;
  Trainer mismatched(deeper, tiny_options(), *rig.ops, *rig.pool);
  try {
    mismatched.load_checkpoint(dir / "a.ckpt");
    ADD_FAILURE() << "mismatched checkpoint was accepted";
  } catch (const TrainError& e) {
    EXPECT_NE(std::string(e.what()).find("configuration hash"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

TEST(Trainer, ExportedWeightsAreTheMasterWeightsInTheEngineDtype) {
  CpuRig rig;
  auto t = rig.make();
  t->train_step(sft_batch(0, 4));
  const auto master = t->master_weights_host();
  const auto exported = t->export_weights(DType::BF16);
  const auto specs = model::parameter_specs(t->config());
  ASSERT_EQ(exported.size(), specs.size());
  for (const auto& nt : exported) {
    const ParamTensor& pt = t->state().tensor(nt.name);
    EXPECT_EQ(nt.shape, pt.shape);
    for (int64_t i = 0; i < pt.numel(); i += 7) {
      uint16_t h;
      std::memcpy(&h, nt.data.data() + 2 * i, 2);
      ASSERT_EQ(h, f32_to_bf16(master[size_t(pt.offset + i)])) << nt.name << "[" << i << "]";
    }
  }
}
